"""Human-readable output: Markdown tables (Tables 2–4) and figures (spectrograms, Figure 2)."""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ._io import atomic_open
from .events import Event
from .metrics import SCORES, EventScores

if TYPE_CHECKING:
    from .infer import Analysis, Tagger
    from .sed import Tuning

# Table 2 of the paper (AudioSet evaluation set): mAP, AUC, d′.
PAPER_TABLE2: tuple[tuple[str, float, float, float], ...] = (
    ("Hershey et al. (baseline)", 0.314, 0.959, 2.452),
    ("Yu et al.", 0.360, 0.970, 2.660),
    ("Kong et al.", 0.369, 0.969, 2.640),
    ("ResNet A", 0.347, 0.966, 2.582),
    ("ResNet B", 0.329, 0.966, 2.584),
    ("ResNet B + att", 0.379, 0.970, 2.657),
    ("ResNet B + att (Avg)", 0.392, 0.971, 2.682),
    ("ResNet C + att", 0.360, 0.966, 2.587),
    ("ResNet D + att", 0.380, 0.970, 2.655),
)

# Table 3 (macro event F1 %, 200 ms collar unless noted; DCASE 2018 task 4 test / eval sets).
PAPER_TABLE3: tuple[tuple[str, float | None, float | None], ...] = (
    ("DCASE baseline", 14.06, None),
    ("JiaKai", 25.9, 32.4),
    ("0.5 thresholds", 9.83, 6.70),
    ("swept thresholds", 12.41, 8.70),
    ("median filter + swept thresholds", 17.87, 11.50),
    ("median filter + swept thresholds, 0.4 s collar", 31.25, 22.26),
)
# Table 4 (per-class event F1 %, the paper's best system and the DCASE baseline).
PAPER_TABLE4: dict[str, tuple[float, float]] = {
    "Alarm_bell_ringing": (9.8, 3.9), "Blender": (3.4, 15.4), "Cat": (40.0, 0.0), "Dishes": (20.5, 0.0),
    "Dog": (21.1, 0.0), "Electric_shaver_toothbrush": (24.5, 32.4), "Frying": (12.5, 31.0),
    "Running_water": (1.9, 11.4), "Speech": (27.3, 0.0), "Vacuum_cleaner": (17.9, 46.5),
}


def _percent(value: float) -> str:
    return "–" if value is None or np.isnan(value) else f"{100 * value:.2f}"


def markdown_cell(text: str) -> str:
    """`text` as the literal content of a Markdown table cell (no HTML, no column break)."""
    text = " ".join(text.split())
    for raw, escaped in (("\\", "\\\\"), ("|", "\\|"), ("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(raw, escaped)
    return text


def markdown_table(header: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> str:
    """A GitHub-style Markdown table; floats are printed with 3 decimals, and every cell is
    escaped (`|`, `\\`, `<`, `>`, `&`, line breaks), so a run or file name stays the text of its cell.

    `align` has one character per column, `l` or `r` (default: first column left, others right).
    """
    align = align or "l" + "r" * (len(header) - 1)
    cells = [[markdown_cell(f"{v:.3f}" if isinstance(v, float) else str(v)) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]

    def line(values):
        return "| " + " | ".join(v.ljust(w) if a == "l" else v.rjust(w)
                                 for v, w, a in zip(values, widths, align)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(list(map(str, header))), rule, *map(line, cells)])


def table2(results: Sequence[tuple[str, dict]], with_paper: bool = True) -> str:
    """Table-2 style comparison: one row per `(name, metrics.summarize result)`, then the paper's rows."""
    rows = [(name, *(r[key] for key in SCORES), f"{r['n_classes_scored']}/{r['n_classes_scored'] + r['n_classes_skipped']}")
            for name, r in results]
    if with_paper:
        rows += [(f"paper: {name}", m, a, d, "527 (AudioSet)") for name, m, a, d in PAPER_TABLE2]
    return markdown_table(("model", *SCORES.values(), "classes scored"), rows)


def table3(results: Sequence[tuple[str, EventScores]], with_paper: bool = True) -> str:
    """Table-3 style: macro (and micro) event F1 in % for each named post-processing setting,
    then the paper's rows with both of its columns: DCASE 2018 test and eval sets (macro F1)."""
    rows = [(name, _percent(r.macro_f1), _percent(r.micro_f1), "", "") for name, r in results]
    if with_paper:
        paper = lambda value: "–" if value is None else f"{value:.2f}"  # noqa: E731
        rows += [(f"paper: {name}", "", "", paper(test), paper(eval_)) for name, test, eval_ in PAPER_TABLE3]
    return markdown_table(("post-processing", "macro F1 %", "micro F1 %", "paper test macro F1 %",
                           "paper eval macro F1 %"), rows)


def table4(results: Sequence[tuple[str, EventScores]], with_paper: bool = True) -> str:
    """Table-4 style: per-class event F1 in % (one column per named result), counts of the first."""
    first = results[0][1]
    paper = with_paper and set(first.labels) <= set(PAPER_TABLE4)
    header = ["class", *(f"F1 % {name}" for name, _ in results), "P %", "R %", "N ref", "N sys"]
    header += ["paper F1 %", "DCASE baseline F1 %"] if paper else []
    rows = []
    for k, label in enumerate(first.labels):
        row = [label, *(_percent(r.f1[k]) for _, r in results), _percent(first.precision[k]),
               _percent(first.recall[k]), int(first.n_ref[k]), int(first.n_sys[k])]
        rows.append(row + ([f"{v:.1f}" for v in PAPER_TABLE4[label]] if paper else []))
    rows.append(["macro", *(_percent(r.macro_f1) for _, r in results), _percent(first.macro_precision),
                 _percent(first.macro_recall), int(first.n_ref.sum()), int(first.n_sys.sum())]
                + (["17.87", "14.06"] if paper else []))
    return markdown_table(header, rows)


def write_per_class_csv(path: str | os.PathLike, labels: Sequence[str], results: Sequence[tuple[str, dict]]) -> None:
    """Per-class AP and AUC for each named result (empty cells for classes that were skipped)."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["label"] + [f"{metric}_{name}" for name, _ in results for metric in ("ap", "auc")])
        for index, label in enumerate(labels):
            cells = []
            for _, result in results:
                for metric in ("ap", "auc"):
                    value = result["per_class"][metric][index]
                    cells.append("" if np.isnan(value) else f"{value:.6f}")
            writer.writerow([label] + cells)


def event_summary(events: Sequence[Event], n_clips: int) -> str:
    """Per-label event count, clips containing the label, and mean/min/max duration."""
    by_label: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_label[event.label].append(event)
    rows = []
    for label in sorted(by_label):
        durations = np.array([e.offset - e.onset for e in by_label[label]])
        clips = len({e.filename for e in by_label[label]})
        rows.append((label, len(durations), clips, float(durations.mean()), float(durations.min()), float(durations.max())))
    table = markdown_table(("label", "events", "clips", "mean s", "min s", "max s"), rows)
    return f"{n_clips} clips, {len(events)} events\n\n{table}"


def plot_logmel(logmel: np.ndarray, path: str | os.PathLike, hop_s: float = 0.01,
                events: Sequence[Event] = (), title: str = "") -> None:
    """Save a log-mel spectrogram `[frames, mels]` as a PNG, with events drawn as labelled bars."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (e.g. a notebook's) is left alone

    labels = sorted({e.label for e in events})
    fig = Figure(figsize=(10, 4 + 0.25 * len(labels)))
    ax, ax_events = fig.subplots(
        2, 1, sharex=True,
        gridspec_kw={"height_ratios": [3, max(len(labels), 1) * 0.25 + 0.3]})
    duration = logmel.shape[0] * hop_s
    ax.imshow(logmel.T, origin="lower", aspect="auto", cmap="magma", extent=(0, duration, 0, logmel.shape[1]))
    ax.set_ylabel("mel band")
    ax.set_title(title)
    colours = colormaps["tab10"]
    for event in events:
        row = labels.index(event.label)
        ax_events.barh(row, event.offset - event.onset, left=event.onset, color=colours(row % 10), height=0.8)
    ax_events.set_yticks(range(len(labels)), labels, fontsize=8)
    ax_events.set_ylim(-0.6, max(len(labels), 1) - 0.4)
    ax_events.set_xlabel("time (s)")
    ax_events.set_xlim(0, duration)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_activations(logmel: np.ndarray, hop_s: float, times: np.ndarray, scores: np.ndarray,
                     labels: Sequence[str], path: str | os.PathLike, top: int = 2,
                     reference: Sequence[Event] = (), thresholds: Sequence[float] | None = None,
                     title: str = "") -> list[str]:
    """Figure 2 of the paper: the log-mel spectrogram above the framewise activation curves of the
    `top` classes (highest peak activation); reference events of those classes are shaded and
    per-class thresholds drawn as dashed lines. Returns the classes drawn."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    order = np.argsort(-scores.max(axis=0), kind="stable")[:top]
    chosen = [labels[k] for k in order]
    duration = logmel.shape[0] * hop_s
    fig = Figure(figsize=(10, 5.5))
    ax, ax_act = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ax.imshow(logmel.T, origin="lower", aspect="auto", cmap="magma", extent=(0, duration, 0, logmel.shape[1]))
    ax.set_ylabel("mel band")
    ax.set_title(title)
    colours = colormaps["tab10"]
    frame_hop = times[1] - times[0] if len(times) > 1 else duration
    for i, k in enumerate(order):
        colour = colours(i)
        for event in reference:
            if event.label == labels[k]:
                ax_act.axvspan(event.onset, event.offset, color=colour, alpha=0.15, lw=0)
        ax_act.step(np.append(times, times[-1] + frame_hop), np.append(scores[:, k], scores[-1, k]),
                    where="post", color=colour, label=labels[k])
        if thresholds is not None:
            ax_act.axhline(thresholds[k], color=colour, ls="--", lw=0.8)
    ax_act.set_ylim(0, 1.02)
    ax_act.set_xlim(0, duration)
    ax_act.set_ylabel("activation")
    ax_act.set_xlabel("time (s)" + ("; shaded: reference events" if len(reference) else ""))
    ax_act.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return chosen


def tuning_table(tuning: Tuning) -> str:
    """Per-class threshold, median kernel and event F1 (untuned at 0.5, tuned) of a `sed.Tuning`."""
    pct = lambda v: "–" if v != v else f"{100 * v:.2f}"  # noqa: E731  (NaN: no reference events)
    return markdown_table(("class", "threshold", "median kernel", "F1 % at 0.5", "F1 % tuned"),
                          [(label, f"{t:.2f}", k, pct(u), pct(f)) for label, t, k, f, u in
                           zip(tuning.labels, tuning.thresholds, tuning.kernels, tuning.f1, tuning.f1_untuned)])


def figure2(tagger: Tagger, path: str | os.PathLike, output: str | os.PathLike, analysis: Analysis | None = None,
            reference: Sequence[Event] = (), thresholds: Tuning | None = None, top: int = 2, classes: str = "all",
            title: str | None = None) -> list[str]:
    """Figure 2 for one audio file: its log-mel spectrogram (the tagger's front end) above the
    activations of its `top` classes (`analysis`, or the tagger's analysis of the file mapped to
    `classes`), with the file's `reference` events shaded and a tuning's thresholds dashed.
    Returns the classes drawn."""
    from .features import logmel_from_file

    path = Path(path)
    if analysis is None:
        [(_, _, analysis)] = tagger.analyze_files([path], classes=classes)
        if isinstance(analysis, Exception):
            raise analysis
    logmel = logmel_from_file(path, tagger.frontend).cpu().numpy()
    return plot_activations(logmel, tagger.frontend.config.hop_ms / 1000, analysis.times, analysis.framewise,
                            analysis.labels, output, top=top, reference=reference,
                            thresholds=None if thresholds is None else thresholds.for_labels(analysis.labels)[0],
                            title=path.name if title is None else title)
