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

import numpy as np
from scipy.stats import norm, rankdata


def _validate(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=np.float64)
    if y_true.ndim == 1:
        y_true, y_score = y_true[:, None], y_score[:, None] if y_score.ndim == 1 else y_score
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"y_true and y_score must both be [n_clips, n_classes]; got {y_true.shape} and {y_score.shape}")
    if not np.isfinite(y_score).all():
        raise ValueError("y_score contains NaN or Inf")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true must contain only 0 and 1")
    return y_true.astype(bool), y_score


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """Per-class AP `Σ_k (R_k − R_{k−1}) P_k` over distinct score thresholds (tied scores form one step).

    Returns `[n_classes]`; NaN for a class without positives. Same as sklearn
    `average_precision_score(y_true[:, c], y_score[:, c])`.
    """
    y_true, y_score = _validate(y_true, y_score)
    order = np.argsort(-y_score, axis=0, kind="stable")
    scores = np.take_along_axis(y_score, order, axis=0)
    true_positives = np.cumsum(np.take_along_axis(y_true, order, axis=0), axis=0, dtype=np.float64)
    ranks = np.arange(1, len(scores) + 1, dtype=np.float64)[:, None]
    # a threshold step ends where the next (lower) score differs, and at the last clip
    step_end = np.ones_like(scores, dtype=bool)
    step_end[:-1] = scores[:-1] != scores[1:]
    tp_at_ends = np.where(step_end, true_positives, 0.0)
    tp_before = np.vstack([np.zeros((1, scores.shape[1])), np.maximum.accumulate(tp_at_ends, axis=0)[:-1]])
    gained = np.where(step_end, true_positives - tp_before, 0.0)
    n_positive = true_positives[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (gained * true_positives / ranks).sum(axis=0) / n_positive * np.where(n_positive > 0, 1.0, np.nan)


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """Per-class area under the ROC curve, `P(score_pos > score_neg) + ½ P(score_pos = score_neg)`.

    Computed from average ranks (Mann–Whitney U). Returns `[n_classes]`; NaN for a class without
    positives or without negatives. Same as sklearn `roc_auc_score(y_true[:, c], y_score[:, c])`.
    """
    y_true, y_score = _validate(y_true, y_score)
    ranks = rankdata(y_score, method="average", axis=0)
    n_positive = y_true.sum(axis=0).astype(np.float64)
    n_negative = len(y_true) - n_positive
    rank_sum = np.where(y_true, ranks, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)
    return np.where((n_positive > 0) & (n_negative > 0), auc, np.nan)


def d_prime(auc: float | np.ndarray) -> float | np.ndarray:
    """Sensitivity index `d′ = √2 · Φ⁻¹(AUC)` (Φ⁻¹: standard normal quantile)."""
    return np.sqrt(2.0) * norm.ppf(auc)


def summarize(y_true: np.ndarray, y_score: np.ndarray) -> dict:
    """Table-2 metrics over the classes that have both positives and negatives.

    Returns `mAP`, `mAUC`, `d_prime` (of the mean AUC), `n_classes_scored`, `n_classes_skipped`
    and `per_class` = `{"ap": [K], "auc": [K]}` with NaN for skipped classes.
    """
    ap, auc = average_precision(y_true, y_score), roc_auc(y_true, y_score)
    scored = np.isfinite(auc)
    ap = np.where(scored, ap, np.nan)
    if not scored.any():
        raise ValueError("no class has both positive and negative clips; nothing to score")
    mean_auc = float(auc[scored].mean())
    return {
        "mAP": float(ap[scored].mean()),
        "mAUC": mean_auc,
        "d_prime": float(d_prime(mean_auc)),
        "n_classes_scored": int(scored.sum()),
        "n_classes_skipped": int((~scored).sum()),
        "per_class": {"ap": ap, "auc": auc},
    }
