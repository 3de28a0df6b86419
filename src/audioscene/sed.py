"""Sound event detection: frame scores → events, and the per-class settings that do it best
(docs/protocol.md §5, paper §5).

The post-processing chain turns framewise class scores `[T, C]` (the model's output before the
attention pool) into events (`events.Event`)::

    scores ── median_filter (odd kernel per class) ── binarize (threshold per class) ── to_events

`tune` sweeps thresholds and median kernels per class for the best event F1 (`metrics.events`,
whose matching it reuses, vectorised over the whole grid); `tune_on` does it on a tagger's
analyses of files.

>>> import numpy as np
>>> scores = np.array([[0.1, 0.9], [0.8, 0.9], [0.9, 0.2], [0.2, 0.1]])
>>> to_events(binarize(scores, 0.5), hop=0.5, labels=["Cat", "Dog"], filename="a.wav")
[Event(filename='a.wav', onset=0.5, offset=1.5, label='Cat'), Event(filename='a.wav', onset=0.0, offset=1.0, label='Dog')]
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np
from scipy import ndimage

from ._io import atomic_open
from .errors import InputError, check_number
from .events import Event
from .metrics.events import EventArrays, encode_events, precision_recall_f1, true_positives


class FrameScores(Protocol):
    """What tuning needs of an analysed file (e.g. `infer.Analysis`): its frame scores `[T, C]`, its
    duration in seconds and the names of its C classes."""

    framewise: np.ndarray
    duration: float
    labels: Sequence[str]


log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05, 0.10, ..., 0.95
DEFAULT_KERNELS = (1, 3, 5, 7, 9, 11)  # output frames; 1 = no filtering
MAX_UPSAMPLE = 32  # 0.32 s frames -> 10 ms, the input's own hop; finer only costs memory


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


def upsample(frames: np.ndarray, factor: int) -> np.ndarray:
    """Frame scores `[..., T, C]` on a grid `factor` times finer, `[..., T·factor, C]`, linearly
    interpolated between the old frames' centres (held flat beyond the first and last centre).
    PANNs likewise bring their frame outputs back to the input frame rate before detection; a 0.32 s
    grid cannot place a boundary within the 0.2 s collar. `factor` is at most `MAX_UPSAMPLE`."""
    check_number("upsample factor", factor, integer=True, low=1, high=MAX_UPSAMPLE)
    if factor == 1:
        return frames
    n_frames = frames.shape[-2]
    positions = np.clip((np.arange(n_frames * factor) + 0.5) / factor - 0.5, 0, n_frames - 1)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, n_frames - 1)
    weight = (positions - low)[:, None]
    return frames[..., low, :] * (1 - weight) + frames[..., high, :] * weight


def _finer_kernels(kernels, factor: int):
    """Median kernels in original frames → odd kernels covering the same time on the finer grid."""
    scaled = np.asarray(kernels) * factor
    return np.where(np.asarray(kernels) == 1, 1, scaled + (scaled % 2 == 0))


def chain_settings(labels: Sequence[str], thresholds: float | Sequence[float] | "Tuning" = 0.5,
                   median: int | Sequence[int] | "Tuning" = 1, factor: int | None = None) -> tuple:
    """`(thresholds, kernels, factor)` of the chain for `labels`: a `Tuning` given for the
    thresholds or kernels gives its per-class values, and its upsampling factor when `factor` is
    None (else 1)."""
    if factor is None:
        factor = next((t.upsample for t in (thresholds, median) if isinstance(t, Tuning)), 1)
    if isinstance(thresholds, Tuning):
        thresholds = thresholds.for_labels(labels)[0]
    if isinstance(median, Tuning):
        median = median.for_labels(labels)[1]
    return thresholds, median, factor


def events_from_frames(framewise: Mapping[str, np.ndarray], hop: float, labels: Sequence[str],
                       thresholds: float | Sequence[float] = 0.5, kernels: int | Sequence[int] = 1,
                       durations: Mapping[str, float] | None = None, factor: int = 1) -> list[Event]:
    """The whole chain for many files: `framewise` maps filename → scores `[T, C]`; each file is
    upsampled `factor` times (kernels stay in the original frames), median-filtered, thresholded and
    turned into events clipped to its duration (if given)."""
    events, kernels = [], _finer_kernels(kernels, factor)
    for filename, frames in framewise.items():
        active = binarize(median_filter(upsample(frames, factor), kernels), thresholds)
        events += to_events(active, hop / factor, labels, filename,
                            None if durations is None else durations.get(filename))
    return events


# --- tuning thresholds and median kernels ---------------------------------------------------------

@dataclass(frozen=True)
class Tuning:
    """Per-class post-processing found by `tune`, with the F1 it reached on the tuning data and the
    F1 of the untuned chain (threshold 0.5, no median filter) for comparison. `upsample`: the frame
    scores were interpolated onto a grid that many times finer (kernels count original frames)."""

    labels: tuple[str, ...]
    thresholds: tuple[float, ...]
    kernels: tuple[int, ...]
    f1: tuple[float, ...]
    f1_untuned: tuple[float, ...]
    upsample: int = 1

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON (atomically); `audioscene detect --thresholds/--median` read it back."""
        def number(value: float) -> float | None:  # strict JSON has no NaN: an undefined F1 is null
            return None if math.isnan(value) else value

        record = {"format": "audioscene-sed-tuning/1", "upsample": self.upsample,
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
            factor = int(record.get("upsample", 1))  # files from before the option: no upsampling
        except FileNotFoundError:
            raise InputError(f"{path}: no such tuning file") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}: not a tuning file written by `audioscene sed-tune` ({type(exc).__name__}: {exc})") from None
        labels, thresholds, kernels, f1, untuned = zip(*rows) if rows else ((),) * 5
        return cls(tuple(labels), thresholds, kernels, f1, untuned, factor)

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


@dataclass(frozen=True)
class TuneGrid:
    """What `tune` sweeps and how it scores: the thresholds and odd median kernels tried (the untuned
    setting, threshold 0.5 and kernel 1, is always added), the event-F1 collars, and the factor the
    frame scores are first interpolated by (`upsample`, as `events_from_frames` then does)."""

    thresholds: Sequence[float] = DEFAULT_THRESHOLDS
    kernels: Sequence[int] = DEFAULT_KERNELS
    t_collar: float = 0.2
    percentage_of_length: float = 0.2
    upsample_factor: int = 1

    def swept(self) -> tuple[np.ndarray, np.ndarray]:
        """(thresholds, kernels) as sorted arrays with the untuned setting; bad kernels refused."""
        kernels = np.unique(np.append(np.asarray(self.kernels, dtype=np.int64), 1))
        if (kernels % 2 == 0).any() or (kernels < 1).any():
            raise InputError(f"median kernels must be odd positive sizes, got {kernels.tolist()}")
        return np.unique(np.append(np.asarray(self.thresholds, dtype=np.float64), 0.5)), kernels


def tune(framewise: Mapping[str, np.ndarray], reference: Sequence[Event], hop: float, labels: Sequence[str],
         grid: TuneGrid = TuneGrid(), durations: Mapping[str, float] | None = None, progress: bool = False) -> Tuning:
    """Per-class threshold and median kernel that maximise each class's own event F1 on the given
    files (the paper sweeps on its test set). Every (kernel, threshold) pair of `grid` is scored,
    with the untuned setting (kernel 1, threshold 0.5) always included, so tuning never lowers a
    class's F1 on these files. Ties go to the smaller kernel, then the threshold nearest 0.5.

    `framewise` maps filename → scores `[T, C]` (C = len(labels)); `reference` holds the true events
    of those files (events of other files are ignored).
    """
    labels = tuple(labels)
    thresholds, kernels = grid.swept()
    files = {name: i for i, name in enumerate(framewise)}
    ref = encode_events([e for e in reference if e.filename in files], dict(files),
                        {label: k for k, label in enumerate(labels)}, "reference")
    # Stack files of equal length so each (kernel, threshold) step is a few array operations.
    by_length: dict[int, list[str]] = defaultdict(list)
    for name, frames in framewise.items():
        if np.shape(frames) != (np.shape(frames)[0], len(labels)):
            raise InputError(f"{name}: expected framewise scores of shape [time, {len(labels)}], got {np.shape(frames)}")
        by_length[len(frames)].append(name)
    groups = [(np.array([files[n] for n in names]),
               upsample(np.stack([framewise[n] for n in names]), grid.upsample_factor),
               np.array([np.inf if durations is None else durations.get(n, np.inf) for n in names]))
              for names in by_length.values()]
    f1 = _sweep(groups, ref, len(files), len(labels), hop, thresholds, kernels, grid, progress)
    # Lexicographic choice: highest F1, then smallest kernel, then threshold nearest 0.5.
    order = [(ki, ti) for ki in range(len(kernels)) for ti in np.argsort(np.abs(thresholds - 0.5), kind="stable")]
    flat = np.stack([f1[ki, ti] for ki, ti in order])  # [settings, classes], in preference order
    best = [order[i] for i in flat.argmax(axis=0)]
    untuned = f1[0, int(np.flatnonzero(thresholds == 0.5)[0])]
    as_f1 = lambda v: float("nan") if v < 0 else float(v)  # noqa: E731  (-1 marked "no reference events")
    return Tuning(labels, tuple(float(thresholds[ti]) for _, ti in best), tuple(int(kernels[ki]) for ki, _ in best),
                  tuple(as_f1(f1[ki, ti, k]) for k, (ki, ti) in enumerate(best)), tuple(map(as_f1, untuned)),
                  grid.upsample_factor)


def _sweep(groups, ref: EventArrays, n_files: int, n_labels: int, hop: float, thresholds: np.ndarray,
           kernels: np.ndarray, grid: TuneGrid, progress: bool) -> np.ndarray:
    """Per-class event F1 `[kernels, thresholds, classes]` of every setting (-1: no reference events)."""
    from tqdm.auto import tqdm

    n_ref = np.bincount(ref.key % n_labels, minlength=n_labels)
    hop, finer = hop / grid.upsample_factor, _finer_kernels(kernels, grid.upsample_factor)
    f1 = np.zeros((len(kernels), len(thresholds), n_labels))
    steps = tqdm(total=len(kernels) * len(thresholds), desc="tune", unit="setting", disable=not progress)
    for ki in range(len(kernels)):
        filtered = [(ids, median_filter(frames, int(finer[ki])), limit) for ids, frames, limit in groups]
        for ti, threshold in enumerate(thresholds):
            est = _events_from_groups([(ids, frames > threshold, limit) for ids, frames, limit in filtered],
                                      hop, n_labels)
            tp = true_positives(ref, est, n_files * n_labels, grid.t_collar,
                                grid.percentage_of_length).reshape(-1, n_labels).sum(0)
            n_est = np.bincount(est.key % n_labels, minlength=n_labels)
            f1[ki, ti] = np.nan_to_num(precision_recall_f1(tp, n_est, n_ref, zero_score=True)[2], nan=-1.0)
            steps.update()
    steps.close()
    return f1


def tune_on(analyses: Mapping[str, FrameScores], reference: Sequence[Event], hop: float,
            grid: TuneGrid = TuneGrid(), progress: bool = False) -> Tuning:
    """`tune` on analysed files (`infer.Analysis` by file name: their frame scores, durations and
    labels). Reference events of files that are not among them are left out, with a warning."""
    if not analyses:
        raise InputError("no analysed files to tune on")
    unheard = {e.filename for e in reference} - set(analyses)
    if unheard:
        log.warning("%d files with reference events were not analysed (e.g. %s); their events are ignored",
                    len(unheard), sorted(unheard)[0])
    labels = next(iter(analyses.values())).labels
    return tune({name: a.framewise for name, a in analyses.items()}, reference, hop, labels, grid,
                durations={name: a.duration for name, a in analyses.items()}, progress=progress)


def _events_from_groups(groups, hop: float, n_labels: int) -> EventArrays:
    """Events of stacked files `(file ids [N], active [N, T, C], durations [N])` as arrays."""
    parts = []
    for ids, active, durations in groups:
        clip, cls, onset, offset = _timed_runs(active, hop, durations)
        parts.append((ids[clip] * n_labels + cls, onset, offset))
    return EventArrays(*(np.concatenate(v) for v in zip(*parts)))
