"""A report as a list of blocks (headings, paragraphs, tables, figures), written out twice: as
Markdown (`report.md`, what the CLI prints) and as one self-contained HTML page (`index.html`, every
table a `<table>`, every figure inline), so the two never say different things."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    """`header` and `rows` of cells (floats print with 3 decimals); `align`: one `l` or `r` per
    column (default: the first left, the others right); `legend`: a line under the table that
    spells out short column headers."""

    header: Sequence[str]
    rows: Sequence[Sequence]
    align: str | None = None
    legend: str = ""

    def cells(self) -> list[list[str]]:
        return [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in self.rows]

    def alignment(self) -> str:
        return self.align or "l" + "r" * (len(self.header) - 1)


@dataclass(frozen=True)
class Figure:
    path: Path  # a PNG, embedded in the page; Markdown names it relative to the report folder
    caption: str


Block = Union[Heading, Paragraph, Table, Figure]


def markdown_cell(text: str) -> str:
    """`text` as the literal content of a Markdown table cell (no HTML, no column break)."""
    text = " ".join(text.split())
    for raw, escaped in (("\\", "\\\\"), ("|", "\\|"), ("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(raw, escaped)
    return text


def markdown_table(table: Table) -> str:
    """A GitHub-style Markdown table; every cell is escaped (`|`, `\\`, `<`, `>`, `&`, line breaks),
    so a run or file name stays the text of its cell."""
    align = table.alignment()
    cells = [[markdown_cell(v) for v in row] for row in table.cells()]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(table.header)]

    def line(values):
        return "| " + " | ".join(v.ljust(w) if a == "l" else v.rjust(w)
                                 for v, w, a in zip(values, widths, align)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(list(map(str, table.header))), rule, *map(line, cells)])


def to_markdown(blocks: Sequence[Block], root: Path | None = None) -> str:
    """The blocks as Markdown; figures as image links relative to `root` (the report folder)."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            parts.append(markdown_table(block) + (f"\n\n{block.legend}" if block.legend else ""))
        else:
            where = block.path.relative_to(root) if root is not None and block.path.is_relative_to(root) else block.path
            parts.append(f"![{block.caption}]({where.as_posix()})")
    return "\n\n".join(parts) + "\n"


_STYLE = ("body{font-family:sans-serif;margin:1.5em auto;max-width:80em;padding:0 1em;line-height:1.4}"
          "table{border-collapse:collapse;margin:0.5em 0 1em;font-size:0.85em;max-width:100%}"
          "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td.r{white-space:nowrap}"
          "td.l,th{overflow-wrap:anywhere}th{background:#f3f3f3}td.l,th.l{text-align:left}"
          "p.legend{font-size:0.85em;color:#444;margin-top:-0.5em}img{max-width:100%;height:auto}"
          "figure{margin:1em 0}figcaption{font-size:0.85em;color:#444}")


def _html_table(table: Table) -> str:
    align = table.alignment()
    head = "".join(f"<th class='{a}'>{html.escape(str(h))}</th>" for h, a in zip(table.header, align))
    body = "".join("<tr>" + "".join(f"<td class='{a}'>{html.escape(c)}</td>" for c, a in zip(row, align)) + "</tr>"
                   for row in table.cells())
    legend = f"<p class='legend'>{html.escape(table.legend)}</p>" if table.legend else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{legend}"


def to_html(blocks: Sequence[Block], title: str) -> str:
    """One self-contained page: headings, paragraphs, `<table>`s and inline PNG figures."""
    parts = [f"<!doctype html><html lang='en'><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<title>{html.escape(title)}</title><style>{_STYLE}</style><body>"]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            parts.append(_html_table(block))
        else:
            data = base64.b64encode(block.path.read_bytes()).decode()
            parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(block.caption)}'>"
                         f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
    return "".join(parts) + "</body></html>\n"
