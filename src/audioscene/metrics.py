"""Clip-level tagging metrics of Table 2: average precision, ROC AUC, d′ (SPEC §5).

Pure functions over `[n_clips, n_classes]` arrays, vectorised over classes, equal to scikit-learn's
`average_precision_score` and `roc_auc_score` per class (ties included).

>>> import numpy as np
>>> y_true = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
>>> y_score = np.array([[0.9, 0.2], [0.3, 0.8], [0.6, 0.4], [0.1, 0.5]])
>>> round(summarize(y_true, y_score)["mAP"], 4)   # class 0: AP 1, class 1: AP (1 + 2/3) / 2
0.9167
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from scipy.stats import norm

from .errors import InputError


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
    if not np.isin(y_true, (0, 1)).all():
        raise InputError("y_true must contain only 0 and 1")
    return y_true.astype(bool), y_score


class _Steps(NamedTuple):
    """Per class (rows), clips sorted by descending score: cumulative true/false positives after
    each clip, the same at the end of the previous threshold step, and where each step ends
    (tied scores form one step). All `[n_classes, n_clips]`."""

    tp: np.ndarray
    fp: np.ndarray
    tp_before: np.ndarray
    fp_before: np.ndarray
    step_end: np.ndarray


def _threshold_steps(y_true: np.ndarray, y_score: np.ndarray) -> _Steps:
    y_true, y_score = _validate(y_true, y_score)
    # torch's multi-threaded sort is the bulk of the work; ties need no stable order (one step)
    sorted_scores, order = torch.sort(torch.from_numpy(np.ascontiguousarray(y_score.T)), dim=1, descending=True)
    sorted_scores, order = sorted_scores.numpy(), order.numpy()
    hits = np.take_along_axis(np.ascontiguousarray(y_true.T), order, axis=1)
    tp = np.cumsum(hits, axis=1, dtype=np.int32)
    fp = np.arange(1, tp.shape[1] + 1, dtype=np.int32) - tp
    step_end = np.ones_like(sorted_scores, dtype=bool)
    step_end[:, :-1] = sorted_scores[:, :-1] != sorted_scores[:, 1:]

    def before(counts):  # counts are non-decreasing, so the running max over step ends is the last one
        at_ends = np.maximum.accumulate(np.where(step_end, counts, 0), axis=1)
        return np.concatenate([np.zeros((len(counts), 1), dtype=counts.dtype), at_ends[:, :-1]], axis=1)

    return _Steps(tp, fp, before(tp), before(fp), step_end)


def _ap(steps: _Steps) -> np.ndarray:
    ranks = np.arange(1, steps.tp.shape[1] + 1, dtype=np.float64)
    n_positive = steps.tp[:, -1].astype(np.float64)
    gained = np.where(steps.step_end, steps.tp - steps.tp_before, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_positive > 0, (gained * (steps.tp / ranks)).sum(axis=1) / n_positive, np.nan)


def _auc(steps: _Steps) -> np.ndarray:
    n_positive, n_negative = steps.tp[:, -1].astype(np.float64), steps.fp[:, -1].astype(np.float64)
    # trapezoids between consecutive steps of the ROC curve (a tie counts 1/2); twice the area in int64
    doubled = np.where(steps.step_end, (steps.fp - steps.fp_before).astype(np.int64) * (steps.tp + steps.tp_before), 0)
    area = doubled.sum(axis=1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_positive > 0) & (n_negative > 0), area / (n_positive * n_negative), np.nan)


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """Per-class AP `Σ_k (R_k − R_{k−1}) P_k` over distinct score thresholds (tied scores form one step).

    Returns `[n_classes]`; NaN for a class without positives. Same as sklearn
    `average_precision_score(y_true[:, c], y_score[:, c])`.
    """
    return _ap(_threshold_steps(y_true, y_score))


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """Per-class area under the ROC curve, `P(score_pos > score_neg) + ½ P(score_pos = score_neg)`.

    Trapezoidal area over the distinct thresholds. Returns `[n_classes]`; NaN for a class without
    positives or without negatives. Same as sklearn `roc_auc_score(y_true[:, c], y_score[:, c])`.
    """
    return _auc(_threshold_steps(y_true, y_score))


def d_prime(auc: float | np.ndarray) -> float | np.ndarray:
    """Sensitivity index `d′ = √2 · Φ⁻¹(AUC)` (Φ⁻¹: standard normal quantile)."""
    return np.sqrt(2.0) * norm.ppf(auc)


def summarize(y_true: np.ndarray, y_score: np.ndarray) -> dict:
    """Table-2 metrics over the classes that have both positives and negatives.

    Returns `mAP`, `mAUC`, `d_prime` (of the mean AUC), `n_classes_scored`, `n_classes_skipped`
    and `per_class` = `{"ap": [K], "auc": [K]}` with NaN for skipped classes.
    """
    steps = _threshold_steps(y_true, y_score)
    ap, auc = _ap(steps), _auc(steps)
    scored = np.isfinite(auc)
    ap = np.where(scored, ap, np.nan)
    if not scored.any():
        raise InputError("no class has both positive and negative clips; nothing to score")
    mean_auc = float(auc[scored].mean())
    return {
        "mAP": float(ap[scored].mean()),
        "mAUC": mean_auc,
        "d_prime": float(d_prime(mean_auc)),
        "n_classes_scored": int(scored.sum()),
        "n_classes_skipped": int((~scored).sum()),
        "per_class": {"ap": ap, "auc": auc},
    }
