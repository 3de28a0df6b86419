"""Detection scores: the numbers that summarise a system's sound events on a split with strong
labels, in one table (`DETECTION_SCORES`) that every reader takes its columns from: the report's
detection summary (and `evaluate --sed-tune`, which prints the same blocks), Table 3 and Table 4
for the scores that ask to be there, and `sed-eval`. A new score is a `DetectionScore` and one
`register_detection_score` call; its function reads what it needs from `Detections`.

>>> from audioscene.events import Event
>>> found = Detections([Event("a.wav", 1.0, 2.0, "Dog")], [Event("a.wav", 1.1, 2.1, "Dog")], ("Dog",))
>>> DETECTION_SCORES["event_f1"].of(found), DETECTION_SCORES["event_f1_04"].of(found)
(1.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..events import Event
from ..registries import register
from .events import event_f1, segment_f1
from .psds import PSDS1, PSDS2, psds

PSDS_THRESHOLDS = tuple(np.linspace(0.01, 0.99, 50))  # PSDS's operating points: one threshold for every class


@dataclass
class Detections:
    """A system's events on one split, as the scores read them: the reference events, the events at
    its chosen operating point (for the report: tuned thresholds and median kernels), the labels
    scored, and for the scores over operating points (PSDS) the files' durations and `sweep`, the
    events at one threshold for every class (`operating_points`: at each of `PSDS_THRESHOLDS`,
    computed when first asked)."""

    reference: Sequence[Event]
    events: Sequence[Event]
    labels: tuple[str, ...]
    durations: Mapping[str, float] | None = None  # file name → seconds
    sweep: Callable[[float], list[Event]] | None = None

    @cached_property
    def operating_points(self) -> list[list[Event]]:
        if self.sweep is None or self.durations is None:
            raise InputError("this score needs the events at several thresholds and the files' durations "
                             "(frame outputs), which these detections do not have")
        return [self.sweep(threshold) for threshold in PSDS_THRESHOLDS]


@dataclass(frozen=True)
class DetectionScore:
    """One detection score: `of(detections)` → a float (a share in [0, 1], shown as % when
    `percent`; tables print it with `report.tables.score_cell`); `per_class(detections)` → one value per label, for a Table-4 column; `needs_sweep`:
    it reads `operating_points` (so `sed-eval`, which has one event list, leaves it out);
    `in_table3`: a Table-3 column, one value per post-processing setting."""

    name: str
    header: str
    of: Callable[[Detections], float]
    per_class: Callable[[Detections], np.ndarray] | None = None
    percent: bool = True
    needs_sweep: bool = False
    in_table3: bool = False


DETECTION_SCORES: dict[str, DetectionScore] = {}


def register_detection_score(score: DetectionScore) -> DetectionScore:
    """Add a score to the table (a column of the detection summary, and of `sed-eval`'s output)."""
    return register(DETECTION_SCORES, score.name, score, "detection score")


def _psds(setting: dict) -> Callable[[Detections], float]:
    def score(found: Detections) -> float:
        reference = [e for e in found.reference if e.filename in found.durations]  # the files analysed
        return psds(reference, found.operating_points, found.durations, found.labels, **setting)
    return score


for _score in (
    DetectionScore("event_f1", "event F1 % 0.2 s",
                   lambda d: event_f1(d.reference, d.events, t_collar=0.2, labels=d.labels).macro_f1),
    DetectionScore("event_f1_04", "event F1 % 0.4 s",
                   lambda d: event_f1(d.reference, d.events, t_collar=0.4, labels=d.labels).macro_f1),
    DetectionScore("segment_f1_macro", "segment F1 % macro",
                   lambda d: segment_f1(d.reference, d.events, 1.0, d.labels).macro_f1),
    DetectionScore("segment_f1_micro", "segment F1 % micro",
                   lambda d: segment_f1(d.reference, d.events, 1.0, d.labels).micro_f1),
    DetectionScore("psds1", "PSDS1", _psds(PSDS1), percent=False, needs_sweep=True),
    DetectionScore("psds2", "PSDS2", _psds(PSDS2), percent=False, needs_sweep=True),
):
    register_detection_score(_score)
