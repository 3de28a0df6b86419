"""Clip-level tagging metrics of Table 2: average precision, ROC AUC, d′ (docs/protocol.md §4).

Pure functions over `[n_clips, n_classes]` arrays, equal to scikit-learn's `average_precision_score`
and `roc_auc_score` per class (ties included). One sort of each class's scores, then only the
positives are ranked against it (`searchsorted`): AP and AUC are sums over the positives of counts
of clips scoring below or tied with them, so the work past the sort grows with the positives only.

>>> import numpy as np
>>> y_true = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
>>> y_score = np.array([[0.9, 0.2], [0.3, 0.8], [0.6, 0.4], [0.1, 0.5]])
>>> round(summarize(y_true, y_score)["mAP"], 4)   # class 0: AP 1, class 1: AP (1 + 2/3) / 2
0.9167

The clip-level scores themselves (mAP, mean AUC, d′) are the table `SCORES`: each is a reduction of
the per-class AP and AUC, so the same function gives the point score (`summarize`), the score of a
bootstrap resample (`bootstrap.py`) and a column of metrics.csv, TensorBoard, the epoch log and
Table 2. A new score is one `register_score(Score(...))` call.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np
from scipy.special import ndtri  # Φ⁻¹; scipy.stats would cost every command 0.5 s of import

from ..errors import InputError
from ..registries import register

def _validate(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    if y_true.ndim == 1:
        y_true, y_score = y_true[:, None], y_score[:, None] if y_score.ndim == 1 else y_score
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise InputError(f"y_true and y_score must both be [n_clips, n_classes]; got {y_true.shape} and {y_score.shape}")
    if not np.issubdtype(y_score.dtype, np.floating):
        y_score = y_score.astype(np.float64)
    if not np.isfinite(y_score).all():
        raise InputError("y_score contains NaN or Inf")
    if y_true.dtype != bool and not ((y_true == 0) | (y_true == 1)).all():
        raise InputError("y_true must contain only 0 and 1")
    return y_true.astype(bool, copy=False), y_score


class _Ranked(NamedTuple):
    """Where each positive clip stands among all clips of its class, as counts.

    Flat arrays over the positives, grouped by class (`cls`): `below` / `tied` = clips of the class
    scoring below / equal to it, `pos_below` / `pos_tied` = the same among the class's positives.
    `n_positive` / `n_clips` per class. Everything else (AP, AUC) is arithmetic on these counts.
    """

    cls: np.ndarray
    below: np.ndarray
    tied: np.ndarray
    pos_below: np.ndarray
    pos_tied: np.ndarray
    n_positive: np.ndarray
    n_clips: int


def _rank_positives(y_true: np.ndarray, y_score: np.ndarray) -> _Ranked:
    y_true, y_score = _validate(y_true, y_score)
    n_clips, n_classes = y_score.shape
    columns = np.ascontiguousarray(y_score.T)  # one row per class
    hits = np.ascontiguousarray(y_true.T)
    ordered = np.sort(columns, axis=1)  # numpy's SIMD sort: the only O(N log N) step over all clips
    n_positive = hits.sum(axis=1)
    cls = np.repeat(np.arange(n_classes), n_positive)
    counts = np.empty((4, len(cls)), dtype=np.int64)
    start = 0
    for c in np.flatnonzero(n_positive):  # the positives are few: searching them class by class is cheap
        stop = start + n_positive[c]
        positives = np.sort(columns[c, hits[c]])
        for row, (pool, side) in enumerate(((ordered[c], "left"), (ordered[c], "right"),
                                            (positives, "left"), (positives, "right"))):
            counts[row, start:stop] = np.searchsorted(pool, positives, side)
        start = stop
    below, below_or_tied, pos_below, pos_below_or_tied = counts
    return _Ranked(cls, below, below_or_tied - below, pos_below, pos_below_or_tied - pos_below, n_positive, n_clips)


def _per_class_sum(ranked: _Ranked, values: np.ndarray) -> np.ndarray:
    return np.bincount(ranked.cls, weights=values, minlength=len(ranked.n_positive))


def _ap(ranked: _Ranked) -> np.ndarray:
    # a positive's step of the PR curve (all clips scoring at least as high) has precision
    # (positives >= s) / (clips >= s); AP is the mean of that over the positives (ties: one step)
    n_positive = ranked.n_positive.astype(np.float64)
    precision = (n_positive[ranked.cls] - ranked.pos_below) / (ranked.n_clips - ranked.below)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_positive > 0, _per_class_sum(ranked, precision) / n_positive, np.nan)


def _auc(ranked: _Ranked) -> np.ndarray:
    # Mann-Whitney: negatives below each positive, a tied negative counting 1/2 (twice, in integers)
    n_positive = ranked.n_positive.astype(np.float64)
    n_negative = ranked.n_clips - n_positive
    doubled = 2 * (ranked.below - ranked.pos_below) + (ranked.tied - ranked.pos_tied)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_positive > 0) & (n_negative > 0),
                        _per_class_sum(ranked, doubled) / (2 * n_positive * n_negative), np.nan)


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """Per-class AP `Σ_k (R_k − R_{k−1}) P_k` over distinct score thresholds (tied scores form one step).

    Returns `[n_classes]`; NaN for a class without positives. Same as sklearn
    `average_precision_score(y_true[:, c], y_score[:, c])`.
    """
    return _ap(_rank_positives(y_true, y_score))


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """Per-class area under the ROC curve, `P(score_pos > score_neg) + ½ P(score_pos = score_neg)`.

    Trapezoidal area over the distinct thresholds. Returns `[n_classes]`; NaN for a class without
    positives or without negatives. Same as sklearn `roc_auc_score(y_true[:, c], y_score[:, c])`.
    """
    return _auc(_rank_positives(y_true, y_score))


def d_prime(auc: float | np.ndarray) -> float | np.ndarray:
    """Sensitivity index `d′ = √2 · Φ⁻¹(AUC)` (Φ⁻¹: standard normal quantile)."""
    return np.sqrt(2.0) * ndtri(auc)


@dataclass(frozen=True)
class Score:
    """A clip-level score: `name` (its key in summaries and metrics.csv), `display` (Table 2's
    header) and `of_classes`, which reduces per-class statistics `{"ap": [..., K], "auc": [..., K]}`
    (NaN for classes not scored) over the last axis. Vectorised over leading axes, it serves one
    evaluation (`summarize`) and many bootstrap resamples (`bootstrap.bootstrap_scores`) alike."""

    name: str
    display: str
    of_classes: Callable[[dict[str, np.ndarray]], np.ndarray]


def _nanmean(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample may score no class: NaN
        return np.nanmean(values, axis=-1)


# The scalar scores, in report order: metrics.csv columns, TensorBoard scalars, the training log,
# Table 2 and its intervals follow this table.
SCORES: dict[str, Score] = {}


def register_score(score: Score) -> Score:
    """Add `score` to `SCORES` (after the others); refuses a name already taken."""
    return register(SCORES, score.name, score, "score")


register_score(Score("mAP", "mAP", lambda per_class: _nanmean(per_class["ap"])))
register_score(Score("mAUC", "AUC", lambda per_class: _nanmean(per_class["auc"])))
register_score(Score("d_prime", "d′", lambda per_class: d_prime(_nanmean(per_class["auc"]))))


@dataclass(frozen=True)
class Summary:
    """Table-2 scores of one set of clip outputs. `summary["mAP"]` reads a score by its name in
    `SCORES`; `per_class` holds `ap` and `auc` `[K]` (NaN for classes not scored)."""

    scores: dict[str, float]
    n_classes_scored: int
    n_classes_skipped: int
    per_class: dict[str, np.ndarray] = field(repr=False)

    def __getitem__(self, name: str) -> float:
        return self.scores[name]

    @property
    def classes(self) -> str:
        """"scored/total", as Table 2 prints it."""
        return f"{self.n_classes_scored}/{self.n_classes_scored + self.n_classes_skipped}"


def require_scorable(y_true: np.ndarray, name: str = "the data") -> None:
    """Raise `InputError` naming `name` unless some class has both positive and negative clips."""
    positives = (np.asarray(y_true) > 0).sum(axis=0)
    if not ((positives > 0) & (positives < len(y_true))).any():
        raise InputError(f"{name}: no class has both positive and negative clips; nothing to score")


def summarize(y_true: np.ndarray, y_score: np.ndarray) -> Summary:
    """Every score of `SCORES` (mAP, mean AUC, d′ of the mean AUC, …) over the classes that have
    both positives and negatives, with the counts of classes scored and skipped."""
    ranked = _rank_positives(y_true, y_score)
    ap, auc = _ap(ranked), _auc(ranked)
    scored = np.isfinite(auc)
    ap = np.where(scored, ap, np.nan)
    if not scored.any():
        raise InputError("no class has both positive and negative clips; nothing to score")
    per_class = {"ap": ap, "auc": auc}
    return Summary({name: float(score.of_classes(per_class)) for name, score in SCORES.items()},
                   int(scored.sum()), int((~scored).sum()), per_class)
