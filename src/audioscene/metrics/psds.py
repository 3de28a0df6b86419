"""Polyphonic Sound Detection Score (PSDS; Bilen et al., "A Framework for the Robust Evaluation of
Sound Event Detection", ICASSP 2020), the threshold-independent SED metric of DCASE 2021+.

The numbers of the reference `psds_eval` 0.5.3 (`PSDSEval(dtc, gtc, cttc).psds(alpha_ct, alpha_st,
max_efpr)`, staircase PSD-ROC, rates per hour), vectorised with numpy. For each operating point (one
set of detections, e.g. one threshold):

- a detection passes the detection tolerance criterion (DTC) when at least `dtc` of its length lies
  inside reference events of its class;
- a reference event is a true positive when detections of its class that pass the DTC cover at
  least `gtc` of it (GTC); TPR per class = true positives / reference events;
- a detection failing the DTC is a false positive (counted against the whole audio: FPR per class =
  count per hour of audio), and a cross-trigger on class k when at least `cttc` of it lies in class-k
  references (CTR per class pair = count per hour of class-k reference time);
- eFPR = FPR + `alpha_ct` × the mean CTR over the other classes.

Each class's (eFPR, TPR) points, with (0, 0) added, make a non-decreasing staircase on the union of
all classes' eFPR values; the PSD-ROC is their mean minus `alpha_st` × their standard deviation, and
PSDS is its area up to `max_efpr` divided by `max_efpr`. DCASE 2021's two settings are `PSDS1` and
`PSDS2`. A class of `labels` without reference events has no TPR at any operating point (nor at the
added origin): it is left out of the mean and the spread, and out of the other classes' CTR mean,
as `psds_eval` does by taking its classes from the reference events. Events of zero (or negative)
length, reference or detected, are dropped, as `psds_eval` drops them.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..events import Event

PSDS1 = dict(dtc=0.7, gtc=0.7, cttc=0.3, alpha_ct=0.0, alpha_st=1.0, max_efpr=100.0)
PSDS2 = dict(dtc=0.1, gtc=0.1, cttc=0.3, alpha_ct=0.5, alpha_st=1.0, max_efpr=100.0)
SECONDS_PER_HOUR = 3600.0


def _arrays(events: Sequence[Event], files: dict[str, int], labels: dict[str, int], what: str):
    unknown = [e for e in events if e.label not in labels or e.filename not in files]
    if unknown:
        raise InputError(f"{what} event {unknown[0]} has a label or file outside the evaluation")
    events = [e for e in events if e.offset > e.onset]
    return (np.array([files[e.filename] for e in events], np.int64), np.array([e.onset for e in events], float),
            np.array([e.offset for e in events], float), np.array([labels[e.label] for e in events], np.int64))


def _pairs(det_file: np.ndarray, gt_file: np.ndarray, n_files: int) -> tuple[np.ndarray, np.ndarray]:
    """All (detection, reference) index pairs of the same file; references sorted by file."""
    gt_start = np.searchsorted(gt_file, np.arange(n_files))
    gt_count = np.bincount(gt_file, minlength=n_files)
    repeat = gt_count[det_file]
    det_index = np.repeat(np.arange(len(det_file)), repeat)
    within = np.arange(repeat.sum()) - np.repeat(np.cumsum(repeat) - repeat, repeat)
    return det_index, gt_start[det_file][det_index] + within


def operating_point(reference: Sequence[Event], detections: Sequence[Event], durations: Mapping[str, float],
                    labels: Sequence[str], dtc: float, gtc: float, cttc: float) -> dict[str, np.ndarray]:
    """TPR `[K]`, FPR `[K]` (per hour) and CTR `[K, K]` (per hour of the other class's reference time;
    NaN on the diagonal) of one set of detections."""
    files = {name: i for i, name in enumerate(durations)}
    label_index = {label: k for k, label in enumerate(labels)}
    n_classes, world = len(labels), len(labels)
    g_file, g_on, g_off, g_cls = _arrays(reference, files, label_index, "reference")
    # every file is also one reference event of the pseudo-class WORLD, spanning the whole file
    g_file = np.concatenate([g_file, np.arange(len(files))])
    g_on = np.concatenate([g_on, np.zeros(len(files))])
    g_off = np.concatenate([g_off, np.array(list(durations.values()), float)])
    g_cls = np.concatenate([g_cls, np.full(len(files), world)])
    order = np.argsort(g_file, kind="stable")
    g_file, g_on, g_off, g_cls = g_file[order], g_on[order], g_off[order], g_cls[order]
    d_file, d_on, d_off, d_cls = _arrays(detections, files, label_index, "detected")
    det, gt = _pairs(d_file, g_file, len(files))
    overlap = (d_on[det] < g_off[gt]) & (g_on[gt] < d_off[det])
    det, gt = det[overlap], gt[overlap]
    inter = np.minimum(d_off[det], g_off[gt]) - np.maximum(d_on[det], g_on[gt])
    det_share, gt_share = inter / (d_off - d_on)[det], inter / (g_off - g_on)[gt]
    same = d_cls[det] == g_cls[gt]
    passes_dtc = np.bincount(det[same], weights=det_share[same], minlength=len(d_on)) >= dtc
    covered = same & passes_dtc[det]
    true_gt = np.bincount(gt[covered], weights=gt_share[covered], minlength=len(g_on)) >= gtc
    n_ref = np.bincount(g_cls[g_cls < world], minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.bincount(g_cls[true_gt], minlength=n_classes + 1)[:n_classes] / n_ref
    # cross-triggers: detections failing the DTC, summed by (detection, reference class)
    other = ~same & ~passes_dtc[det]
    key = det[other] * (n_classes + 1) + g_cls[gt[other]]
    keys, index = np.unique(key, return_inverse=True)
    share = np.bincount(index, weights=det_share[other], minlength=len(keys))
    hit_cls = keys % (n_classes + 1)
    counted = (share >= cttc) | (hit_cls == world)
    counts = np.zeros((n_classes, n_classes + 1))
    np.add.at(counts, (d_cls[keys[counted] // (n_classes + 1)], hit_cls[counted]), 1)
    total_s = float(sum(durations.values()))
    class_s = np.bincount(g_cls[g_cls < world], weights=(g_off - g_on)[g_cls < world], minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        ctr = np.where(class_s > 0, counts[:, :n_classes] * SECONDS_PER_HOUR / class_s, np.nan)
    np.fill_diagonal(ctr, np.nan)
    return {"tpr": tpr, "fpr": counts[:, world] * SECONDS_PER_HOUR / total_s, "ctr": ctr}


def _staircase(grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A class's ROC points as a non-decreasing step function on `grid` (the best TPR at each eFPR,
    then the running maximum; 0 left of the first point); NaN throughout for a class without
    reference events (NaN TPR everywhere)."""
    if np.isnan(y).all():
        return np.full(len(grid), np.nan)
    xs, inverse = np.unique(x, return_inverse=True)
    best = np.full(len(xs), -np.inf)
    np.maximum.at(best, inverse, np.where(np.isnan(y), -np.inf, y))
    best = np.maximum.accumulate(np.where(np.isinf(best), np.nan, best)) if np.isfinite(best).any() else \
        np.full(len(xs), np.nan)
    position = np.searchsorted(xs, grid, side="right") - 1
    return np.where(position >= 0, best[np.clip(position, 0, None)], 0.0)


def psds_from_points(points: Sequence[dict], alpha_ct: float, alpha_st: float, max_efpr: float) -> float:
    """PSDS of operating points from `operating_point`."""
    if not points:
        raise InputError("PSDS needs at least one operating point")
    origin = np.where(np.isnan(points[0]["tpr"]), np.nan, 0.0)  # a class without references stays NaN
    tpr = np.stack([p["tpr"] for p in points] + [origin], axis=1)  # (classes, points)
    fpr = np.stack([p["fpr"] for p in points] + [np.zeros_like(points[0]["fpr"])], axis=1)
    ctr = np.stack([p["ctr"] for p in points] + [np.zeros_like(points[0]["ctr"])], axis=2)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a class without references is NaN throughout
        efpr = fpr + alpha_ct * np.nanmean(ctr, axis=1)
        grid = np.unique(efpr)
        curves = np.stack([_staircase(grid, efpr[c], tpr[c]) for c in range(len(tpr))])
        etpr = np.nanmean(curves, axis=0) - alpha_st * np.nanstd(curves, axis=0)
    etpr = np.clip(np.nan_to_num(etpr, nan=0.0), 0.0, None)
    if max_efpr not in grid:
        i = int(np.searchsorted(grid, max_efpr))
        grid, etpr = np.insert(grid, i, max_efpr), np.insert(etpr, i, etpr[i - 1])
    keep = grid <= max_efpr
    return float(np.sum(np.diff(grid[keep]) * etpr[keep][:-1]) / max_efpr)


def psds(reference: Sequence[Event], operating_points: Sequence[Sequence[Event]], durations: Mapping[str, float],
         labels: Sequence[str], dtc: float, gtc: float, cttc: float, alpha_ct: float = 0.0, alpha_st: float = 0.0,
         max_efpr: float = 100.0) -> float:
    """PSDS of a system given as detections at several operating points (e.g. thresholds);
    `durations` names every file of the evaluation with its length in seconds. `psds(..., **PSDS1)`
    and `psds(..., **PSDS2)` are DCASE 2021's scenarios."""
    points = [operating_point(reference, detections, durations, labels, dtc, gtc, cttc)
              for detections in operating_points]
    return psds_from_points(points, alpha_ct, alpha_st, max_efpr)
