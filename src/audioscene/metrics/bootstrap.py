"""Bootstrap confidence intervals of the Table-2 scores over clips (Efron & Tibshirani 1993, the
percentile interval).

A resample draws `n_clips` clips with replacement; rather than building it, each resample is a
vector of counts (how often each clip was drawn, multinomial), and every score is computed from
weighted sums over each class's clips in score order (one sort per class, shared by all resamples;
20,000 clips × 527 classes take ~0.19 s per resample on 2 cores, `benchmarks/bench_metrics.py`). With counts `w`, for a class sorted by descending score (tied scores form one group):

    precision at a positive = Σ w·y over clips scoring ≥ it / Σ w over clips scoring ≥ it
    AP  = Σ_positives w_i · precision_i / Σ_positives w_i
    AUC = Σ_positives w_i · (Σ w over negatives below it + ½ Σ w over tied negatives) / (W_pos · W_neg)

which is exactly what `tagging.summarize` gives on the resampled clips (a clip drawn twice is a tie
with itself). A class enters a resample's means only when the resample holds both its positives and
negatives, as in `summarize`.
"""

from __future__ import annotations

import numpy as np

from ..errors import check_number
from .tagging import SCORES, _validate

MIN_RESAMPLES, MAX_RESAMPLES = 100, 100_000


def _class_scores(hits: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AP, AUC) of one class `[B]` for count vectors `counts` `[B, N]` (NaN where undefined)."""
    order = np.argsort(-scores, kind="stable")
    ordered_scores, positive = scores[order], hits[order]
    weights = counts[:, order].astype(np.float64)  # (resamples, clips in score order)
    group_end = np.r_[ordered_scores[1:] != ordered_scores[:-1], True]  # last clip of each tie group
    group_id = np.cumsum(group_end) - group_end  # tie group of each clip
    last_of_group = np.flatnonzero(group_end)
    all_cum = np.cumsum(weights, axis=1)[:, last_of_group]  # weight scoring ≥ each group
    pos_weights = weights * positive
    pos_cum = np.cumsum(pos_weights, axis=1)[:, last_of_group]
    w_pos = pos_cum[:, -1]
    w_neg = all_cum[:, -1] - w_pos
    at_positives = group_id[positive]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = pos_cum[:, at_positives] / all_cum[:, at_positives]
        ap = np.nansum(pos_weights[:, positive] * precision, axis=1) / w_pos
        neg_cum = all_cum - pos_cum  # negative weight scoring ≥ each group
        group_neg = np.diff(np.c_[np.zeros(len(weights)), neg_cum], axis=1)  # negative weight in each group
        neg_below = w_neg[:, None] - neg_cum[:, at_positives]
        auc = (pos_weights[:, positive] * (neg_below + 0.5 * group_neg[:, at_positives])).sum(axis=1) / (w_pos * w_neg)
    defined = (w_pos > 0) & (w_neg > 0)
    return np.where(defined, ap, np.nan), np.where(defined, auc, np.nan)


def weighted_per_class(y_true: np.ndarray, y_score: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class AP and AUC `[B, K]` of the clips weighted by `counts` `[B, n_clips]` (how often each
    is drawn); NaN for a class a resample cannot score (AP too, as in `summarize`)."""
    hits, scores = _validate(y_true, y_score)
    counts = np.atleast_2d(counts)
    ap = np.full((len(counts), scores.shape[1]), np.nan)
    auc = np.full_like(ap, np.nan)
    for c in np.flatnonzero(hits.any(axis=0) & ~hits.all(axis=0)):
        ap[:, c], auc[:, c] = _class_scores(hits[:, c], scores[:, c], counts)
    return {"ap": np.where(np.isfinite(auc), ap, np.nan), "auc": auc}


def bootstrap_scores(y_true: np.ndarray, y_score: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                     chunk: int = 100) -> dict[str, np.ndarray]:
    """Every score of `SCORES` on `n_resamples` bootstrap resamples of the clips, `[n_resamples]`
    each (`chunk` resamples at a time bound the memory: chunk × n_clips weights per class)."""
    n_clips = np.shape(y_score)[0]
    rng = np.random.default_rng(seed)
    parts = [weighted_per_class(y_true, y_score, rng.multinomial(n_clips, np.full(n_clips, 1 / n_clips),
                                                                 size=min(chunk, n_resamples - start)))
             for start in range(0, n_resamples, chunk)]
    per_class = {key: np.concatenate([part[key] for part in parts]) for key in ("ap", "auc")}
    return {name: score.of_classes(per_class) for name, score in SCORES.items()}


def confidence_intervals(y_true: np.ndarray, y_score: np.ndarray, n_resamples: int = 1000, level: float = 0.95,
                         seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals `(low, high)` of every score of `SCORES` at `level`, from
    `MIN_RESAMPLES` to `MAX_RESAMPLES` resamples (fewer make the tails meaningless; more take hours
    on AudioSet's eval set for no visible change)."""
    check_number("n_resamples", n_resamples, integer=True, low=MIN_RESAMPLES, high=MAX_RESAMPLES)
    resampled = bootstrap_scores(y_true, y_score, n_resamples, seed)
    tail = 100 * (1 - level) / 2
    # the empirical quantiles themselves (no interpolation: d′ is infinite where a resample's AUC is 1)
    return {key: tuple(float(v) for v in np.nanpercentile(values, (tail, 100 - tail), method="inverted_cdf"))
            for key, values in resampled.items()}
