"""Event-based scores of sound event detection: sed_eval's `EventBasedMetrics` F1, vectorised.

An estimated event matches a reference event of the same file and label when its onset lies within
`t_collar` of the reference onset and its offset within max(`t_collar`, `percentage_of_length` ×
the reference length) of the reference offset; each event matches at most one other (a maximum
bipartite matching, as sed_eval's Hopcroft–Karp). Precision, recall and F1 per class, micro and
macro (Mesaros et al. 2016, "Metrics for polyphonic sound event detection").
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from ..errors import InputError
from ..events import Event


@dataclass(frozen=True)
class EventScores:
    """Event-based precision, recall and F1 per class, micro (pooled counts) and macro (mean of the
    classes' F1, classes with an undefined F1 left out, as sed_eval's class-wise average)."""

    labels: tuple[str, ...]
    n_ref: np.ndarray
    n_sys: np.ndarray
    n_tp: np.ndarray
    precision: np.ndarray  # per class; NaN where undefined (see event_f1)
    recall: np.ndarray
    f1: np.ndarray
    micro_precision: float
    micro_recall: float
    micro_f1: float
    macro_precision: float
    macro_recall: float
    macro_f1: float


def precision_recall_f1(n_tp, n_sys, n_ref, zero_score: bool):
    """sed_eval's precision, recall and F1 (metric.precision/recall/f_measure), elementwise."""
    n_tp, n_sys, n_ref = (np.asarray(v, dtype=np.float64) for v in (n_tp, n_sys, n_ref))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_sys == 0, 0.0 if zero_score else np.nan, n_tp / n_sys)
        recall = np.where(n_ref == 0, np.nan, n_tp / n_ref)
        f1 = np.where((precision == 0) & (recall == 0), 0.0, 2 * precision * recall / (precision + recall))
    return precision, recall, f1


class EventArrays(NamedTuple):  # shared with `sed.tune`, which scores many settings at once
    key: np.ndarray  # file index × n_labels + label index
    onset: np.ndarray
    offset: np.ndarray


def encode_events(events: Sequence[Event], files: dict[str, int], labels: dict[str, int], role: str) -> EventArrays:
    label_ids = np.empty(len(events), dtype=np.int64)
    file_ids = np.empty(len(events), dtype=np.int64)
    for i, event in enumerate(events):
        if event.label not in labels:
            raise InputError(f"{role} event label {event.label!r} (file {event.filename}) is not one of "
                             f"the labels scored: {sorted(labels)}")
        label_ids[i] = labels[event.label]
        file_ids[i] = files.setdefault(event.filename, len(files))
    onset = np.fromiter((e.onset for e in events), np.float64, len(events))
    offset = np.fromiter((e.offset for e in events), np.float64, len(events))
    return EventArrays(file_ids * len(labels) + label_ids, onset, offset)


def _max_matching(edges_ref: np.ndarray, edges_est: np.ndarray) -> int:
    """Size of a maximum matching in a bipartite graph (augmenting paths by breadth-first search)."""
    neighbours: dict[int, list[int]] = defaultdict(list)
    for r, e in zip(edges_ref.tolist(), edges_est.tolist()):
        neighbours[r].append(e)
    ref_of_est: dict[int, int] = {}
    est_of_ref: dict[int, int] = {}
    for root in neighbours:
        reached_from: dict[int, int] = {}  # est → the ref whose edge reached it
        queue, seen, free = deque([root]), {root}, None
        while queue and free is None:
            ref = queue.popleft()
            for est in neighbours[ref]:
                if est in reached_from:
                    continue
                reached_from[est] = ref
                if est not in ref_of_est:
                    free = est
                    break
                if ref_of_est[est] not in seen:
                    seen.add(ref_of_est[est])
                    queue.append(ref_of_est[est])
        while free is not None:  # flip the alternating path root → … → free
            ref = reached_from[free]
            previous = est_of_ref.get(ref)
            ref_of_est[free], est_of_ref[ref] = ref, free
            free = None if ref == root else previous
    return len(est_of_ref)


def true_positives(ref: EventArrays, est: EventArrays, n_keys: int, t_collar: float,
                    percentage_of_length: float) -> np.ndarray:
    """Matched events per key: size of a maximum one-to-one matching between the key's reference and
    estimated events, an edge joining two events whose onsets and offsets are within the collars."""
    ref_order, est_order = np.argsort(ref.key, kind="stable"), np.argsort(est.key, kind="stable")
    ref_key, est_key = ref.key[ref_order], est.key[est_order]
    first = np.searchsorted(est_key, ref_key, "left")
    count = np.searchsorted(est_key, ref_key, "right") - first
    pair_ref = np.repeat(np.arange(len(ref_key)), count)  # every (ref, est) pair sharing file and label
    pair_est = np.repeat(first - np.cumsum(count) + count, count) + np.arange(count.sum())
    r, e = ref_order[pair_ref], est_order[pair_est]
    # The same float64 expressions as sed_eval's validate_onset / validate_offset.
    offset_collar = np.maximum(t_collar, percentage_of_length * (ref.offset[r] - ref.onset[r]))
    hit = (np.abs(ref.onset[r] - est.onset[e]) <= t_collar) & (np.abs(ref.offset[r] - est.offset[e]) <= offset_collar)
    r, e = r[hit], e[hit]
    # An edge whose two events have no other candidate is matched as it is; the rest need a search.
    alone = (np.bincount(r, minlength=len(ref.key))[r] == 1) & (np.bincount(e, minlength=len(est.key))[e] == 1)
    tp = np.bincount(ref.key[r[alone]], minlength=n_keys)
    tangled_keys = ref.key[r[~alone]]
    for key in np.unique(tangled_keys):
        inside = tangled_keys == key
        tp[key] += _max_matching(r[~alone][inside], e[~alone][inside])
    return tp


def event_f1(reference: Sequence[Event], estimated: Sequence[Event], t_collar: float = 0.2,
             percentage_of_length: float = 0.2, labels: Sequence[str] | None = None,
             zero_score: bool = True) -> EventScores:
    """Event-based precision, recall and F1 — the numbers of sed_eval 0.2.1's
    `EventBasedMetrics(labels, t_collar, percentage_of_length, empty_system_output_handling=
    "zero_score" if zero_score else None)` fed file by file (Mesaros et al., "Metrics for Polyphonic
    Sound Event Detection", Applied Sciences 2016).

    An estimated event matches a reference event of the same file and label when
    |onset_ref − onset_est| ≤ `t_collar` and |offset_ref − offset_est| ≤ max(`t_collar`,
    `percentage_of_length` × (offset_ref − onset_ref)); each event matches at most one other, and
    the number of true positives TP is the size of a maximum matching. Per class, P = TP/N_sys,
    R = TP/N_ref, F1 = 2PR/(P+R) (0 when P = R = 0). Undefined values are NaN, except that with
    `zero_score` a class with no estimated events gets P = 0 (so a class the system never detects
    scores F1 = 0 instead of dropping out of the macro average, as in the DCASE baselines). Micro
    scores pool the counts; macro scores average the classes' values, ignoring NaN.

    Files are the union of those named in either list; `labels` defaults to the sorted union of the
    labels in both lists (an event with a label outside an explicit `labels` raises `ValueError`).
    """
    if not t_collar > 0 or not 0 <= percentage_of_length <= 1:
        raise InputError(f"need t_collar > 0 and 0 <= percentage_of_length <= 1, got {t_collar}, {percentage_of_length}")
    reference, estimated = list(reference), list(estimated)
    labels = tuple(sorted({e.label for e in reference + estimated})) if labels is None else tuple(labels)
    label_index = {label: k for k, label in enumerate(labels)}
    files: dict[str, int] = {}
    ref = encode_events(reference, files, label_index, "reference")
    est = encode_events(estimated, files, label_index, "estimated")
    n_keys = max(len(files), 1) * len(labels)
    tp = true_positives(ref, est, n_keys, t_collar, percentage_of_length)
    return _scores(labels, np.bincount(ref.key % max(len(labels), 1), minlength=len(labels)),
                   np.bincount(est.key % max(len(labels), 1), minlength=len(labels)),
                   tp.reshape(-1, len(labels)).sum(axis=0) if len(labels) else tp[:0], zero_score)


def _scores(labels: tuple[str, ...], n_ref, n_sys, n_tp, zero_score: bool) -> EventScores:
    precision, recall, f1 = precision_recall_f1(n_tp, n_sys, n_ref, zero_score)
    micro = [float(v) for v in precision_recall_f1(n_tp.sum(), n_sys.sum(), n_ref.sum(), zero_score)]
    with np.errstate(all="ignore"):
        macro = [float(np.nanmean(v)) if len(v) and not np.isnan(v).all() else float("nan")
                 for v in (precision, recall, f1)]
    return EventScores(labels, n_ref, n_sys, n_tp, precision, recall, f1, *micro, *macro)


def segment_f1(reference: Sequence[Event], estimated: Sequence[Event], resolution: float = 1.0,
               labels: Sequence[str] | None = None, zero_score: bool = False) -> EventScores:
    """Segment-based precision, recall and F1 — the numbers of sed_eval 0.2.1's
    `SegmentBasedMetrics(labels, time_resolution)` fed file by file (Mesaros et al. 2016).

    Each file is cut into segments of `resolution` seconds (as many as its latest event, reference
    or estimated, reaches); a class is active in a segment when one of its events overlaps it
    (segments `floor(onset / resolution)` to `ceil(offset / resolution)`). Counted over all segments:
    TP = active in both, N_ref, N_sys; P, R, F1 per class and micro/macro as in `event_f1` (with
    `zero_score` False: a class without estimated activity has an undefined precision).
    """
    if not resolution > 0:
        raise InputError(f"need resolution > 0, got {resolution}")
    reference, estimated = list(reference), list(estimated)
    labels = tuple(sorted({e.label for e in reference + estimated})) if labels is None else tuple(labels)
    label_index = {label: k for k, label in enumerate(labels)}
    files: dict[str, int] = {}
    rolls = []
    for events in (reference, estimated):
        arrays = encode_events(events, files, label_index, "reference" if events is reference else "estimated")
        rolls.append((arrays.key // max(len(labels), 1), arrays.key % max(len(labels), 1),
                      np.floor(arrays.onset / resolution).astype(np.int64),
                      np.ceil(arrays.offset / resolution).astype(np.int64)))
    n_segments = np.zeros(len(files), np.int64)
    for file, _, _, stop in rolls:
        np.maximum.at(n_segments, file, stop)
    offsets = np.concatenate([[0], np.cumsum(n_segments)])
    active = np.zeros((2, int(offsets[-1]), len(labels)), bool)  # (reference / estimated, segments, classes)
    for side, (file, label, start, stop) in enumerate(rolls):
        for f, k, a, b in zip(file, label, start, stop):
            active[side, offsets[f] + a:offsets[f] + b, k] = True
    ref, sys = active
    return _scores(labels, ref.sum(axis=0), sys.sum(axis=0), (ref & sys).sum(axis=0), zero_score)
