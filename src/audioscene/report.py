"""Human-readable output: Markdown tables and figures (spectrograms with events)."""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from typing import Sequence

import numpy as np

from ._io import atomic_open
from .sed import Event

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


def markdown_table(header: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> str:
    """A GitHub-style Markdown table; floats are printed with 3 decimals.

    `align` has one character per column, `l` or `r` (default: first column left, others right).
    """
    align = align or "l" + "r" * (len(header) - 1)
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]

    def line(values):
        return "| " + " | ".join(v.ljust(w) if a == "l" else v.rjust(w)
                                 for v, w, a in zip(values, widths, align)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(list(map(str, header))), rule, *map(line, cells)])


def table2(results: Sequence[tuple[str, dict]], with_paper: bool = True) -> str:
    """Table-2 style comparison: one row per `(name, metrics.summarize result)`, then the paper's rows."""
    rows = [(name, r["mAP"], r["mAUC"], r["d_prime"], f"{r['n_classes_scored']}/{r['n_classes_scored'] + r['n_classes_skipped']}")
            for name, r in results]
    if with_paper:
        rows += [(f"paper: {name}", m, a, d, "527 (AudioSet)") for name, m, a, d in PAPER_TABLE2]
    return markdown_table(("model", "mAP", "AUC", "d′", "classes scored"), rows)


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({e.label for e in events})
    fig, (ax, ax_events) = plt.subplots(
        2, 1, figsize=(10, 4 + 0.25 * len(labels)), sharex=True,
        gridspec_kw={"height_ratios": [3, max(len(labels), 1) * 0.25 + 0.3]})
    duration = logmel.shape[0] * hop_s
    ax.imshow(logmel.T, origin="lower", aspect="auto", cmap="magma", extent=(0, duration, 0, logmel.shape[1]))
    ax.set_ylabel("mel band")
    ax.set_title(title)
    colours = plt.get_cmap("tab10")
    for event in events:
        row = labels.index(event.label)
        ax_events.barh(row, event.offset - event.onset, left=event.onset, color=colours(row % 10), height=0.8)
    ax_events.set_yticks(range(len(labels)), labels, fontsize=8)
    ax_events.set_ylim(-0.6, max(len(labels), 1) - 0.4)
    ax_events.set_xlabel("time (s)")
    ax_events.set_xlim(0, duration)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
