"""Tables 2–4 (and the tuning and event summaries) as `document.Table` blocks, from typed results;
the paper's numbers come from `paper.py`, the scores' columns from `metrics.SCORES`."""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .._io import atomic_open
from ..events import Event
from ..metrics import SCORES, EventScores
from ..metrics.detection import DETECTION_SCORES, DetectionScore, Detections
from ..metrics.tagging import Summary
from . import paper
from .document import Table

if TYPE_CHECKING:
    from ..sed import Tuning

VARIANTS = {"peak": "peak", "avg": "Avg", "ema": "EMA weights", "member": "ensemble member",
            "ensemble": "mean of the members"}


@dataclass(frozen=True)
class Table2Row:
    """One row of Table 2: a run's `variant` (peak epoch, Avg of its checkpoints, its EMA weights,
    or a member of an ensemble and the ensemble: `evaluate.evaluate_ensemble`) scored on `n_clips` clips, with bootstrap `intervals` per score if computed and the
    name of the paper's row for the same model, if the paper has one."""

    run: str
    variant: str  # a key of VARIANTS
    epoch: int | None
    summary: Summary
    n_clips: int
    intervals: dict[str, tuple[float, float]] | None = None
    paper: str | None = None
    labels: tuple[str, ...] = ()  # the run's labels, in the order of `summary.per_class`

    @property
    def label(self) -> str:
        return f"{self.run} ({VARIANTS[self.variant]}" + (f", epoch {self.epoch})" if self.epoch else ")")


def _percent(value: float | None) -> str:
    return "–" if value is None or np.isnan(value) else f"{100 * value:.2f}"


def score_cell(score: DetectionScore, value: float | None) -> str:
    """A detection score's value as a table prints it: % with 2 decimals, or 3 decimals (PSDS)."""
    if score.percent or value is None or np.isnan(value):
        return _percent(value)
    return f"{value:.3f}"


def table2(rows: Sequence[Table2Row]) -> Table:
    """Table 2: every score of `metrics.SCORES` (with its interval, where computed), the clips and
    classes scored, then the paper's row for the model and its value of each score ("–" where the
    paper does not report one)."""
    with_intervals = any(row.intervals for row in rows)
    header = ["run", *(f"{s.display} [95 % CI]" if with_intervals else s.display for s in SCORES.values()), "clips",
              "classes scored", "paper row", *(f"paper {s.display}" for s in SCORES.values())]
    cells = []
    for row in rows:
        scores = [f"{row.summary[name]:.3f}" + (f" [{row.intervals[name][0]:.3f}, {row.intervals[name][1]:.3f}]"
                                                if row.intervals else "") for name in SCORES]
        published = paper.TABLE2.get(row.paper, {})
        cells.append([row.label, *scores, row.n_clips, row.summary.classes, row.paper or "–",
                      *(f"{published[name]:.3f}" if name in published else "–" for name in SCORES)])
    return Table(header, cells)


def table3(results: Sequence[tuple[str, EventScores] | tuple[str, EventScores, Detections]],
           with_paper: bool = True) -> Table:
    """Table 3: macro (and micro) event F1 in % for each named post-processing setting, a column per
    `DETECTION_SCORES` entry with `in_table3` (of each setting's `Detections`, where given), then
    the paper's rows with both of its columns: DCASE 2018 test and eval sets (macro F1)."""
    extra = [score for score in DETECTION_SCORES.values() if score.in_table3]
    rows = [(name, _percent(r.macro_f1), _percent(r.micro_f1),
             *(score_cell(score, score.of(found[0])) if found else "–" for score in extra), "", "")
            for name, r, *found in results]
    if with_paper:
        published = lambda value: "–" if value is None else f"{value:.2f}"  # noqa: E731
        rows += [(f"paper: {name}", "", "", *("" for _ in extra), published(test), published(eval_))
                 for name, (test, eval_) in paper.TABLE3.items()]
    return Table(("post-processing", "macro F1 %", "micro F1 %", *(score.header for score in extra),
                  "paper test macro F1 %", "paper eval macro F1 %"), rows)


SHORT_HEADER = 16  # a result name longer than this heads its column as a number, spelled out in the legend


def table4(results: Sequence[tuple[str, EventScores] | tuple[str, EventScores, Detections]],
           with_paper: bool = True) -> Table:
    """Table 4: per-class event F1 in % (one column per named result), counts of the first, a column
    per `DETECTION_SCORES` entry with `per_class` (of the first result's `Detections`, where given),
    and the paper's columns when the classes are DCASE 2018's. Long result names (a run and a
    post-processing setting) head their columns as (1), (2), ... with the names in the legend, so
    the numeric columns keep their width."""
    first, found = results[0][1], results[0][2] if len(results[0]) > 2 else None
    extra = [score for score in DETECTION_SCORES.values() if score.per_class and found is not None]
    per_class = [score.per_class(found) for score in extra]
    beside = with_paper and set(first.labels) <= set(paper.TABLE4)
    numbered = any(len(name) > SHORT_HEADER for name, *_ in results)
    names = [f"({i})" if numbered else name for i, (name, *_) in enumerate(results, start=1)]
    legend = "; ".join(f"({i}) {name}" for i, (name, *_) in enumerate(results, start=1)) if numbered else ""
    if numbered and len(results) > 1:
        legend += f"; P %, R %, N ref, N sys{''.join(', ' + score.header for score in extra)}: of (1)"
    header = ["class", *(f"F1 % {name}" for name in names), "P %", "R %", "N ref", "N sys",
              *(score.header for score in extra)]
    header += ["paper F1 %", "DCASE baseline F1 %"] if beside else []
    rows = []
    for k, label in enumerate(first.labels):
        row = [label, *(_percent(r.f1[k]) for _, r, *_ in results), _percent(first.precision[k]),
               _percent(first.recall[k]), int(first.n_ref[k]), int(first.n_sys[k]),
               *(score_cell(score, values[k]) for score, values in zip(extra, per_class))]
        rows.append(row + ([f"{v:.1f}" for v in paper.TABLE4[label]] if beside else []))
    macro = [f"{paper.TABLE3[name][0]:.2f}" for name in (paper.BEST_SETTING, paper.DCASE_BASELINE)]
    rows.append(["macro", *(_percent(r.macro_f1) for _, r, *_ in results), _percent(first.macro_precision),
                 _percent(first.macro_recall), int(first.n_ref.sum()), int(first.n_sys.sum()),
                 *(score_cell(score, score.of(found)) for score in extra)] + (macro if beside else []))
    return Table(header, rows, legend=legend)


def tuning_table(tuning: Tuning) -> Table:
    """Per-class threshold, median kernel and event F1 (untuned at 0.5, tuned) of a `sed.Tuning`."""
    return Table(("class", "threshold", "median kernel", "F1 % at 0.5", "F1 % tuned"),
                 [(label, f"{t:.2f}", k, _percent(u), _percent(f)) for label, t, k, f, u in
                  zip(tuning.labels, tuning.thresholds, tuning.kernels, tuning.f1, tuning.f1_untuned)])


def event_summary(events: Sequence[Event]) -> Table:
    """Per-label event count, clips containing the label, and mean/min/max duration."""
    by_label: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_label[event.label].append(event)
    rows = []
    for label in sorted(by_label):
        durations = np.array([e.offset - e.onset for e in by_label[label]])
        clips = len({e.filename for e in by_label[label]})
        rows.append((label, len(durations), clips, float(durations.mean()), float(durations.min()), float(durations.max())))
    return Table(("label", "events", "clips", "mean s", "min s", "max s"), rows)


def write_per_class_csv(path: str | os.PathLike, labels: Sequence[str], results: Sequence[tuple[str, Summary]]) -> None:
    """Per-class AP and AUC for each named result (empty cells for classes that were skipped)."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["label"] + [f"{metric}_{name}" for name, _ in results for metric in ("ap", "auc")])
        for index, label in enumerate(labels):
            cells = []
            for _, result in results:
                for metric in ("ap", "auc"):
                    value = result.per_class[metric][index]
                    cells.append("" if np.isnan(value) else f"{value:.6f}")
            writer.writerow([label] + cells)
