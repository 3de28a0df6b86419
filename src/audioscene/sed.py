"""Sound event detection: frame scores → events, and event-based scores (SPEC §6, paper §5).

The post-processing chain turns framewise class scores `[T, C]` (the model's output before the
attention pool) into events::

    scores ── median_filter (odd kernel per class) ── binarize (threshold per class) ── to_events

`event_f1` scores events against a reference with sed_eval's event-based rule, `tune` sweeps
thresholds and median kernels per class, and DCASE TSV files hold events on disk: a header line
`filename<TAB>onset<TAB>offset<TAB>event_label` and one event per line, times in seconds (a file
with no events may appear as a line with only its filename, or with empty fields).

>>> import numpy as np
>>> scores = np.array([[0.1, 0.9], [0.8, 0.9], [0.9, 0.2], [0.2, 0.1]])
>>> to_events(binarize(scores, 0.5), hop=0.5, labels=["Cat", "Dog"], filename="a.wav")
[Event(filename='a.wav', onset=0.5, offset=1.5, label='Cat'), Event(filename='a.wav', onset=0.0, offset=1.0, label='Dog')]
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np
from scipy import ndimage

from ._io import atomic_open, read_text
from .errors import AudioSceneError, InputError

TSV_HEADER = ("filename", "onset", "offset", "event_label")
DEFAULT_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05, 0.10, ..., 0.95
DEFAULT_KERNELS = (1, 3, 5, 7, 9, 11)  # output frames; 1 = no filtering


class Event(NamedTuple):
    """One sound event: `label` sounds in `filename` from `onset` to `offset` seconds."""

    filename: str
    onset: float
    offset: float
    label: str


class EventFileError(AudioSceneError, ValueError):
    """A malformed event TSV; the message names the file and line."""


# --- DCASE TSV -----------------------------------------------------------------------------------

def read_events_tsv(path: str | os.PathLike) -> list[Event]:
    """Read a DCASE event TSV (header line required). Filename-only lines carry no event.

    Raises:
        EventFileError: missing file or header, missing columns, non-numeric or negative times,
            onset after offset; the message names the file and line number.
    """
    path = Path(path)
    lines = read_text(path, EventFileError).splitlines()
    if not lines or tuple(lines[0].strip().split("\t")) != TSV_HEADER:
        raise EventFileError(f"{path}:1: expected the header {' '.join(TSV_HEADER)!r} (tab-separated)")
    events = []
    for line_number, line in enumerate(lines[1:], start=2):
        fields = line.rstrip("\r\n").split("\t")
        if not line.strip() or (fields[0].strip() and not any(f.strip() for f in fields[1:])):
            continue  # blank line, or a file listed without events (DCASE writes empty fields)
        where = f"{path}:{line_number}"
        if len(fields) != 4 or not all(field.strip() for field in fields):
            raise EventFileError(f"{where}: expected 4 tab-separated columns {TSV_HEADER}, got {line!r}")
        filename, onset_text, offset_text, label = (field.strip() for field in fields)
        try:
            onset, offset = float(onset_text), float(offset_text)
        except ValueError:
            raise EventFileError(f"{where}: onset/offset must be numbers, got {onset_text!r}, {offset_text!r}") from None
        if not (np.isfinite(onset) and np.isfinite(offset)):
            raise EventFileError(f"{where}: onset/offset must be finite, got {onset_text!r}, {offset_text!r}")
        if onset < 0 or offset < 0:
            raise EventFileError(f"{where}: negative time ({onset}, {offset})")
        if onset > offset:
            raise EventFileError(f"{where}: onset {onset} is after offset {offset}")
        events.append(Event(filename, onset, offset, label))
    return events


def write_events_tsv(path: str | os.PathLike, events: Iterable[Event]) -> None:
    """Write events as a DCASE TSV (times with millisecond precision), atomically. A file name or
    label with a tab, line break or other control character cannot be stored in the format (it
    would not read back) and raises `EventFileError` naming it before anything is written."""
    events = list(events)
    for event in events:
        for text in (event.filename, event.label):
            if UNSTORABLE.search(text):
                raise EventFileError(f"{path}: cannot store {text!r} in a TSV (it contains a tab, line break or "
                                     "other control character); rename the file")
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(TSV_HEADER) + "\n")
        for event in events:
            f.write(f"{event.filename}\t{event.onset:.3f}\t{event.offset:.3f}\t{event.label}\n")


UNSTORABLE = re.compile(r"[\x00-\x1f\x7f]")


# --- frames → events -------------------------------------------------------------------------------

def _per_class(values, n_classes: int, name: str, dtype) -> np.ndarray:
    array = np.broadcast_to(np.asarray(values, dtype=dtype), (n_classes,)) if np.ndim(values) == 0 \
        else np.asarray(values, dtype=dtype)
    if array.shape != (n_classes,):
        raise InputError(f"expected one {name} or one per class ({n_classes}), got shape {array.shape}")
    return array


def median_filter(frames: np.ndarray, kernels: int | Sequence[int]) -> np.ndarray:
    """Median-filter each class's score curve over time: `frames` `[..., T, C]`, one odd kernel
    size (in frames) for all classes or one per class; 1 leaves a class unchanged.

    At the edges the first/last frame is repeated (`scipy.ndimage` mode "nearest"), so a filter
    never invents silence at a clip's borders.
    """
    frames = np.asarray(frames)
    if frames.ndim < 2:
        raise InputError(f"expected frames of shape [..., time, classes], got shape {frames.shape}")
    kernels = _per_class(kernels, frames.shape[-1], "median kernel", np.int64)
    if (kernels < 1).any() or (kernels % 2 == 0).any():
        raise InputError(f"median kernels must be odd positive sizes, got {kernels.tolist()}")
    out = frames.copy()
    for size in np.unique(kernels[kernels > 1]):
        classes = np.flatnonzero(kernels == size)
        window = (1,) * (frames.ndim - 2) + (int(size), 1)
        out[..., classes] = ndimage.median_filter(frames[..., classes], size=window, mode="nearest")
    return out


def binarize(frames: np.ndarray, thresholds: float | Sequence[float]) -> np.ndarray:
    """Active frames, `frames > threshold`, with one threshold for all classes or one per class."""
    frames = np.asarray(frames)
    return frames > _per_class(thresholds, frames.shape[-1], "threshold", frames.dtype)


def _runs(active: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of active frames in `[N, T, C]`: (clip, class, first frame, last frame + 1)."""
    n, t, c = active.shape
    padded = np.zeros((n, c, t + 2), dtype=np.int8)
    padded[:, :, 1:-1] = active.transpose(0, 2, 1)
    clip, cls, start = np.nonzero(np.diff(padded, axis=2) == 1)
    end = np.nonzero(np.diff(padded, axis=2) == -1)[2]  # same (clip, class, time) order as the starts
    return clip, cls, start, end


def to_events(active: np.ndarray, hop: float, labels: Sequence[str], filename: str,
              duration: float | None = None) -> list[Event]:
    """Events from active frames `[T, C]`: each maximal run of active frames of a class is one event
    with onset = first frame × `hop`, offset = (last frame + 1) × `hop`, clipped to `duration`.

    Events are ordered by class (in `labels` order), then by onset.
    """
    active = np.asarray(active, dtype=bool)
    if active.ndim != 2 or active.shape[1] != len(labels):
        raise InputError(f"expected active frames of shape [time, {len(labels)}], got {active.shape}")
    _, cls, onsets, offsets = _timed_runs(active[None], hop, np.array([np.inf if duration is None else duration]))
    return [Event(filename, float(on), float(off), labels[k]) for k, on, off in zip(cls, onsets, offsets)]


def _timed_runs(active: np.ndarray, hop: float, durations: np.ndarray):
    """`_runs` of `[N, T, C]` in seconds (µs-rounded, clipped to each clip's duration; empty runs dropped)."""
    clip, cls, start, end = _runs(active)
    onset = np.minimum(np.round(start * hop, 6), durations[clip])
    offset = np.minimum(np.round(end * hop, 6), durations[clip])
    keep = offset > onset
    return clip[keep], cls[keep], onset[keep], offset[keep]


def to_frames(events: Iterable[Event], hop: float, n_frames: int, labels: Sequence[str]) -> np.ndarray:
    """Active frames `[n_frames, C]` of one file's events: frame i is active for a class when
    [i·hop, (i+1)·hop) overlaps one of its events (the inverse of `to_events` at the same hop)."""
    index = {label: k for k, label in enumerate(labels)}
    active = np.zeros((n_frames, len(labels)), dtype=bool)
    for event in events:
        if event.label not in index:
            raise InputError(f"event label {event.label!r} ({event.filename}) is not one of {list(labels)}")
        first = int(np.floor(event.onset / hop + 1e-9))
        last = int(np.ceil(event.offset / hop - 1e-9))
        active[first:max(last, first + 1), index[event.label]] = True
    return active


def map_classes(frames: np.ndarray, groups: Mapping[str, Sequence[int]]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Scores of coarser classes, each the max over a group of the model's classes (SPEC §6: a DCASE
    class's score is the max over its AudioSet labels, see `labels.dcase2018_to_audioset`)."""
    frames = np.asarray(frames)
    mapped = np.stack([frames[..., list(indices)].max(axis=-1) for indices in groups.values()], axis=-1)
    return mapped, tuple(groups)


def detect_events(framewise: Mapping[str, np.ndarray], hop: float, labels: Sequence[str],
                  thresholds: float | Sequence[float] = 0.5, kernels: int | Sequence[int] = 1,
                  durations: Mapping[str, float] | None = None) -> list[Event]:
    """The whole chain for many files: `framewise` maps filename → scores `[T, C]`; each file is
    median-filtered, thresholded and turned into events clipped to its duration (if given)."""
    events = []
    for filename, frames in framewise.items():
        active = binarize(median_filter(frames, kernels), thresholds)
        events += to_events(active, hop, labels, filename, None if durations is None else durations.get(filename))
    return events


# --- event-based F1 (sed_eval's EventBasedMetrics) -----------------------------------------------

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

    def per_class(self) -> dict[str, dict[str, float]]:
        return {label: {"f1": float(self.f1[k]), "precision": float(self.precision[k]), "recall": float(self.recall[k]),
                        "n_ref": int(self.n_ref[k]), "n_sys": int(self.n_sys[k]), "n_tp": int(self.n_tp[k])}
                for k, label in enumerate(self.labels)}


def _prf(n_tp, n_sys, n_ref, zero_score: bool):
    """sed_eval's precision, recall and F1 (metric.precision/recall/f_measure), elementwise."""
    n_tp, n_sys, n_ref = (np.asarray(v, dtype=np.float64) for v in (n_tp, n_sys, n_ref))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_sys == 0, 0.0 if zero_score else np.nan, n_tp / n_sys)
        recall = np.where(n_ref == 0, np.nan, n_tp / n_ref)
        f1 = np.where((precision == 0) & (recall == 0), 0.0, 2 * precision * recall / (precision + recall))
    return precision, recall, f1


class _EventArrays(NamedTuple):
    key: np.ndarray  # file index × n_labels + label index
    onset: np.ndarray
    offset: np.ndarray


def _encode(events: Sequence[Event], files: dict[str, int], labels: dict[str, int], role: str) -> _EventArrays:
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
    return _EventArrays(file_ids * len(labels) + label_ids, onset, offset)


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


def _true_positives(ref: _EventArrays, est: _EventArrays, n_keys: int, t_collar: float,
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
    ref = _encode(reference, files, label_index, "reference")
    est = _encode(estimated, files, label_index, "estimated")
    n_keys = max(len(files), 1) * len(labels)
    tp = _true_positives(ref, est, n_keys, t_collar, percentage_of_length)
    return _scores(labels, np.bincount(ref.key % max(len(labels), 1), minlength=len(labels)),
                   np.bincount(est.key % max(len(labels), 1), minlength=len(labels)),
                   tp.reshape(-1, len(labels)).sum(axis=0) if len(labels) else tp[:0], zero_score)


def _scores(labels: tuple[str, ...], n_ref, n_sys, n_tp, zero_score: bool) -> EventScores:
    precision, recall, f1 = _prf(n_tp, n_sys, n_ref, zero_score)
    micro = [float(v) for v in _prf(n_tp.sum(), n_sys.sum(), n_ref.sum(), zero_score)]
    with np.errstate(all="ignore"):
        macro = [float(np.nanmean(v)) if len(v) and not np.isnan(v).all() else float("nan")
                 for v in (precision, recall, f1)]
    return EventScores(labels, n_ref, n_sys, n_tp, precision, recall, f1, *micro, *macro)


# --- tuning thresholds and median kernels ---------------------------------------------------------

@dataclass(frozen=True)
class Tuning:
    """Per-class post-processing found by `tune`, with the F1 it reached on the tuning data and the
    F1 of the untuned chain (threshold 0.5, no median filter) for comparison."""

    labels: tuple[str, ...]
    thresholds: tuple[float, ...]
    kernels: tuple[int, ...]
    f1: tuple[float, ...]
    f1_untuned: tuple[float, ...]

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON (atomically); `audioscene detect --thresholds/--median` read it back."""
        def number(value: float) -> float | None:  # strict JSON has no NaN: an undefined F1 is null
            return None if math.isnan(value) else value

        record = {"format": "audioscene-sed-tuning/1",
                  "classes": {label: {"threshold": t, "median_kernel": k, "f1": number(f), "f1_untuned": number(u)}
                              for label, t, k, f, u in zip(self.labels, self.thresholds, self.kernels, self.f1,
                                                           self.f1_untuned)}}
        with atomic_open(path, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2, allow_nan=False)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tuning":
        """Read a tuning JSON written by `save`; a malformed file raises `ValueError` naming it."""
        path = Path(path)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            classes = record["classes"]
            rows = [(label, float(c["threshold"]), int(c["median_kernel"]), _float_or_nan(c.get("f1")),
                     _float_or_nan(c.get("f1_untuned"))) for label, c in classes.items()]
        except FileNotFoundError:
            raise InputError(f"{path}: no such tuning file") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}: not a tuning file written by `audioscene sed-tune` ({type(exc).__name__}: {exc})") from None
        labels, thresholds, kernels, f1, untuned = zip(*rows) if rows else ((),) * 5
        return cls(tuple(labels), thresholds, kernels, f1, untuned)

    def for_labels(self, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(thresholds, kernels) in the order of `labels`; every label must have been tuned."""
        index = {label: k for k, label in enumerate(self.labels)}
        missing = [label for label in labels if label not in index]
        if missing:
            raise InputError(f"the tuning has no values for {missing}")
        order = [index[label] for label in labels]
        return np.asarray(self.thresholds)[order], np.asarray(self.kernels)[order]


def _float_or_nan(value) -> float:
    return float("nan") if value is None else float(value)


def tune(framewise: Mapping[str, np.ndarray], reference: Sequence[Event], hop: float, labels: Sequence[str],
         thresholds: Sequence[float] = DEFAULT_THRESHOLDS, kernels: Sequence[int] = DEFAULT_KERNELS,
         durations: Mapping[str, float] | None = None, t_collar: float = 0.2, percentage_of_length: float = 0.2,
         progress: bool = False) -> Tuning:
    """Per-class threshold and median kernel that maximise each class's own event F1 on the given
    files (the paper sweeps on its test set). Every (kernel, threshold) pair of the grid is scored,
    with the untuned setting (kernel 1, threshold 0.5) always included, so tuning never lowers a
    class's F1 on these files. Ties go to the smaller kernel, then the threshold nearest 0.5.

    `framewise` maps filename → scores `[T, C]` (C = len(labels)); `reference` holds the true events
    of those files (events of other files are ignored).
    """
    from tqdm.auto import tqdm

    labels = tuple(labels)
    thresholds = np.unique(np.append(np.asarray(thresholds, dtype=np.float64), 0.5))
    kernels = np.unique(np.append(np.asarray(kernels, dtype=np.int64), 1))
    if (kernels % 2 == 0).any() or (kernels < 1).any():
        raise InputError(f"median kernels must be odd positive sizes, got {kernels.tolist()}")
    files = {name: i for i, name in enumerate(framewise)}
    label_index = {label: k for k, label in enumerate(labels)}
    ref = _encode([e for e in reference if e.filename in files], dict(files), label_index, "reference")
    n_ref = np.bincount(ref.key % len(labels), minlength=len(labels))
    n_keys = len(files) * len(labels)
    # Stack files of equal length so each (kernel, threshold) step is a few array operations.
    by_length: dict[int, list[str]] = defaultdict(list)
    for name, frames in framewise.items():
        if np.shape(frames) != (np.shape(frames)[0], len(labels)):
            raise InputError(f"{name}: expected framewise scores of shape [time, {len(labels)}], got {np.shape(frames)}")
        by_length[len(frames)].append(name)
    groups = [(np.array([files[n] for n in names]), np.stack([framewise[n] for n in names]),
               np.array([np.inf if durations is None else durations.get(n, np.inf) for n in names]))
              for names in by_length.values()]
    f1 = np.zeros((len(kernels), len(thresholds), len(labels)))
    steps = tqdm(total=len(kernels) * len(thresholds), desc="tune", unit="setting", disable=not progress)
    for ki, kernel in enumerate(kernels):
        filtered = [(ids, median_filter(frames, int(kernel)), limit) for ids, frames, limit in groups]
        for ti, threshold in enumerate(thresholds):
            est = _events_from_groups([(ids, frames > threshold, limit) for ids, frames, limit in filtered],
                                      hop, len(labels))
            tp = _true_positives(ref, est, n_keys, t_collar, percentage_of_length).reshape(-1, len(labels)).sum(0)
            f1[ki, ti] = np.nan_to_num(_prf(tp, np.bincount(est.key % len(labels), minlength=len(labels)), n_ref,
                                            zero_score=True)[2], nan=-1.0)
            steps.update()
    steps.close()
    # Lexicographic choice: highest F1, then smallest kernel, then threshold nearest 0.5.
    order = [(ki, ti) for ki in range(len(kernels)) for ti in np.argsort(np.abs(thresholds - 0.5), kind="stable")]
    flat = np.stack([f1[ki, ti] for ki, ti in order])  # [settings, classes], in preference order
    best = [order[i] for i in flat.argmax(axis=0)]
    untuned = f1[0, int(np.flatnonzero(thresholds == 0.5)[0])]
    as_f1 = lambda v: float("nan") if v < 0 else float(v)  # noqa: E731  (-1 marked "no reference events")
    return Tuning(labels, tuple(float(thresholds[ti]) for _, ti in best), tuple(int(kernels[ki]) for ki, _ in best),
                  tuple(as_f1(f1[ki, ti, k]) for k, (ki, ti) in enumerate(best)), tuple(map(as_f1, untuned)))


def _events_from_groups(groups, hop: float, n_labels: int) -> _EventArrays:
    """Events of stacked files `(file ids [N], active [N, T, C], durations [N])` as arrays."""
    parts = []
    for ids, active, durations in groups:
        clip, cls, onset, offset = _timed_runs(active, hop, durations)
        parts.append((ids[clip] * n_labels + cls, onset, offset))
    return _EventArrays(*(np.concatenate(v) for v in zip(*parts)))
