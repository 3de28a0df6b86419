"""Using a trained model: clip tags, frame scores and events for files and recordings of any length.

A recording is decoded block by block (`audio.stream`) and cut into windows of about 10 s (the
clip length the models are trained on), rounded up to a whole number of the model's output frames
so that every window's frames fall on one time grid (10 s → 10.24 s for the 0.32 s frames of
ResNet B/C/D). With `hop_s` shorter than the window, overlapping frames are averaged. Memory
stays flat in the recording's length; only the frame scores `[T', K]` are kept.

The clip-level score of a recording is the max over its windows' clip-level scores (a label is
present if it is present anywhere; for a 10 s file this is the model's own clip output).

>>> from audioscene.infer import Tagger
>>> tagger = Tagger.from_run("runs/b_att", checkpoint="best")  # doctest: +SKIP
>>> tagger.tag("street.flac", top_k=3)  # doctest: +SKIP
[('Speech', 0.91), ('Car', 0.64), ('Dog', 0.22)]
>>> times, labels, scores = tagger.framewise("street.flac")  # doctest: +SKIP
>>> events = tagger.detect("street.flac", thresholds=0.5, median=5)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import soundfile as sf
import torch

from . import audio, sed
from .checkpoints import Run, ensemble
from .errors import InputError, check_number
from .events import Event
from .features import LogMel
from .labels import LabelSet, class_columns, map_classes
from .models import AudioModel
from .predictor import Predictor

if TYPE_CHECKING:
    from .live import LiveLine
    from .export import OnnxModel

Source = str | os.PathLike | np.ndarray
PREFETCH_MAX_S = 600.0  # longer files are streamed, never decoded whole


class Framewise(NamedTuple):
    """Frame scores of one recording: `times` `[T']` (start of each frame, s), `scores` `[T', K]`."""

    times: np.ndarray
    labels: tuple[str, ...]
    scores: np.ndarray


@dataclass(frozen=True)
class Analysis:
    """Everything the model says about one recording."""

    labels: tuple[str, ...]
    clipwise: np.ndarray  # [K], max over windows
    framewise: np.ndarray  # [T', K], on one grid of `frame_hop` seconds
    frame_hop: float
    duration: float  # seconds of audio

    @property
    def times(self) -> np.ndarray:
        return np.arange(len(self.framewise)) * self.frame_hop

    def top(self, k: int) -> list[tuple[str, float]]:
        """The `k` labels with the highest clip scores, best first (ties: in label order)."""
        check_number("top_k", k, integer=True, low=1)
        order = np.argsort(-self.clipwise, kind="stable")[:k]
        return [(self.labels[i], float(self.clipwise[i])) for i in order]


@dataclass(frozen=True)
class Embeddings:
    """The vectors one model reads its outputs from, for one recording: `clip` `[D]` (the mean over
    its windows of each window's embedding) and `frames` `[T', D]` on one grid of `frame_hop`
    seconds (overlapping windows averaged, as frame scores are)."""

    clip: np.ndarray
    frames: np.ndarray
    frame_hop: float
    duration: float  # seconds of audio

    @property
    def times(self) -> np.ndarray:
        """Each frame's start in seconds (its centre is half a hop later)."""
        return np.arange(len(self.frames)) * self.frame_hop


def write_embeddings(path: str | os.PathLike, named: Iterable[tuple[str, Embeddings]]) -> tuple[Path, int]:
    """One `.npz` of many recordings' embeddings (`np.load` reads it, no pickle): `files` `[N]`,
    `clip` `[N, D]`, `frames` `[F, D]` (every recording's frames, one after another; recording i's
    are `frames[offsets[i]:offsets[i + 1]]`), `offsets` `[N + 1]`, `times` `[F]` (each frame's start
    in its recording, s), `duration` `[N]` and `frame_hop`. Frames go to a temporary file beside
    `path` as they come, so memory holds one recording's; the `.npz` is written atomically. Returns
    the path and the number of recordings."""
    import tempfile
    import zipfile

    from ._io import atomic_open

    path = Path(path)
    names, clips, offsets, durations, hop = [], [], [0], [], 0.0
    with tempfile.TemporaryFile(dir=path.parent) as frames, tempfile.TemporaryFile(dir=path.parent) as times:
        for name, result in named:
            names.append(name)
            clips.append(result.clip)
            durations.append(result.duration)
            hop = result.frame_hop
            frames.write(np.ascontiguousarray(result.frames, dtype="<f4").tobytes())
            times.write(result.times.astype("<f8").tobytes())
            offsets.append(offsets[-1] + len(result.frames))
        width = len(clips[0]) if clips else 0
        small = {"files": np.array(names, dtype=str), "clip": np.array(clips, np.float32).reshape(-1, width),
                 "offsets": np.array(offsets, np.int64), "duration": np.array(durations), "frame_hop": np.array(hop)}
        with atomic_open(path, "wb") as f, zipfile.ZipFile(f, "w") as archive:
            for key, value in small.items():
                with archive.open(f"{key}.npy", "w") as member:
                    np.lib.format.write_array(member, value, allow_pickle=False)
            for key, raw, descr, shape in (("frames", frames, "<f4", (offsets[-1], width)),
                                           ("times", times, "<f8", (offsets[-1],))):
                raw.seek(0)
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array_header_2_0(member, {"descr": descr, "fortran_order": False,
                                                                  "shape": shape})
                    for block in iter(lambda: raw.read(1 << 20), b""):
                        member.write(block)
    return path, len(names)


class Tagger:
    """A trained model (or several, whose outputs are averaged) ready to use on recordings.

    Args:
        models: models with the same label set (e.g. every checkpoint of a run, or the members of an
            ensemble), whose frame hops divide the coarsest (see `Predictor`).
        frontend: the log-mel front end they were trained with, or one per model (at one sample rate).
        labels: their output classes.
        device: "auto", "cpu", "cuda", ...
        window_s, hop_s: window length and step in seconds (hop defaults to the window).
        batch_size: windows per forward pass.
        amp: run the models in bf16 (see `predictor`; float32 by default).
    """

    def __init__(self, models: Sequence[AudioModel | OnnxModel], frontend: LogMel | Sequence[LogMel], labels: LabelSet,
                 device: str = "auto",
                 window_s: float = 10.0, hop_s: float | None = None, batch_size: int = 8, amp: bool = False):
        if not models:
            raise InputError("need at least one model")
        check_number("window_s", window_s, low=0, low_open=True)
        if hop_s is not None:
            check_number("hop_s", hop_s, low=0, low_open=True)
        check_number("batch_size", batch_size, integer=True, low=1)
        if not all(m.takes_audio for m in models):
            raise InputError("this model does not take audio (e.g. it reads AudioSet's released embeddings): score "
                             "it with `audioscene evaluate --data embeddings:DIR`")
        self.predictor = Predictor(models, frontend, device, amp=amp)
        self.device, self.models, self.frontend = self.predictor.device, self.predictor.models, self.predictor.frontend
        self.labels = labels
        self.frame_hop = self.predictor.frame_hop
        self.sample_rate = self.frontend.config.sample_rate
        self.frame_samples = int(round(self.frame_hop * self.sample_rate))
        self.window_frames = max(1, math.ceil(window_s / self.frame_hop - 1e-9))
        self.hop_frames = self.window_frames if hop_s is None else max(1, round(hop_s / self.frame_hop))
        if self.hop_frames > self.window_frames:
            raise InputError(f"hop {hop_s} s is longer than the window {self.window_s} s: audio would be skipped")
        self.batch_size = batch_size

    @classmethod
    def from_run(cls, run: str | os.PathLike | Run, checkpoint: str | os.PathLike = "best", device: str = "auto",
                 weights: str = "auto", **options) -> "Tagger":
        """Load a run's model (a run folder or an opened `checkpoints.Run`): `checkpoint` is "best",
        "last", "avg" or a checkpoint path (`Run.select`); `weights` "auto" (the run's: the moving
        average when it keeps one), "raw" or "ema"; the architecture, front end and labels come from
        the checkpoint."""
        return cls.from_runs([run], checkpoint, device, weights, **options)

    @classmethod
    def from_runs(cls, runs: Sequence[str | os.PathLike | Run], checkpoint: str | os.PathLike = "best",
                  device: str = "auto", weights: str = "auto", **options) -> "Tagger":
        """An ensemble: the outputs of several runs (each its `checkpoint`, with its own front end,
        computed from the same audio) averaged, as the paper's "Avg" across runs and EfficientAT's
        ensembles. The members share their labels and sample rate; their frame hops divide the
        coarsest (CED's 0.16 s beside CNN14's 0.32 s)."""
        members = ensemble(runs, checkpoint, weights)
        return cls([m.model for m in members], [m.frontend for m in members], members[0].labels, device=device,
                   **options)

    @classmethod
    def from_pretrained(cls, name: str, device: str = "auto", **options) -> "Tagger":
        """A model of the zoo by its catalogue name (`audioscene pretrained list`), e.g.
        `Tagger.from_pretrained("efficientat_mn10_as")`: fetched into the cache on first use."""
        return cls.from_run(f"pretrained:{name}", device=device, **options)

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, threads: int | None = None, **options) -> "Tagger":
        """Run an `audioscene export-onnx` file with ONNX Runtime (CPU); labels, frame hop and front
        end come from the file's metadata."""
        from .export import OnnxModel

        model = OnnxModel(path, threads=threads)
        return cls([model], LogMel(model.frontend_config), model.labels, device="cpu", **options)

    @property
    def window_s(self) -> float:
        return self.window_frames * self.frame_hop

    @property
    def hop_s(self) -> float:
        return self.hop_frames * self.frame_hop

    def _blocks(self, source: Source) -> Iterable[np.ndarray]:
        if isinstance(source, np.ndarray):
            if source.ndim != 1 or not np.isfinite(source).all() or len(source) == 0:
                raise InputError("expected a non-empty 1-D float waveform at 16 kHz without NaN/Inf")
            return [source.astype(np.float32, copy=False)]
        return audio.stream(source, sr=self.sample_rate)

    def _windows(self, source: Source) -> Iterator[tuple[int, np.ndarray]]:
        """(first output frame, samples) of each window; the last one may be shorter."""
        window, hop = self.window_frames * self.frame_samples, self.hop_frames * self.frame_samples
        buffer, start, covered = np.zeros(0, np.float32), 0, 0  # covered: samples seen by a window
        for block in self._blocks(source):
            buffer = np.concatenate([buffer, block])
            while len(buffer) >= window:
                yield start // self.frame_samples, buffer[:window]
                covered = start + window
                buffer, start = buffer[hop:], start + hop
        if len(buffer) and (covered == 0 or start + len(buffer) > covered):
            yield start // self.frame_samples, buffer

    def analyze(self, source: Source) -> Analysis:
        """Clip scores (max over windows) and frame scores (windows stitched) of a file or waveform."""
        _, result = next(self.analyze_many([source]))
        if isinstance(result, Exception):
            raise result
        return result

    def embed(self, source: Source) -> Embeddings:
        """The clip and frame embeddings of a file or waveform (one model; see `Embeddings`)."""
        _, result = next(self.analyze_many([source], embeddings=True))
        if isinstance(result, Exception):
            raise result
        return result

    def analyze_many(self, sources: Iterable[Source], progress: bool = False, workers: int = 0,
                     embeddings: bool = False,
                     ) -> Iterator[tuple[Source, Analysis | Embeddings | audio.AudioError | ValueError]]:
        """`(source, Analysis)` (with `embeddings`: `Embeddings`) for each source in order, with
        windows of consecutive files batched together. A source that cannot be decoded yields
        `(source, error)` and the others go on. With `workers` > 0, that many threads decode the next
        files while the model runs (files longer than `PREFETCH_MAX_S` are still streamed block by
        block, to keep memory flat)."""
        from tqdm.auto import tqdm

        sources = list(sources)
        queue: list[tuple[Source, _Stitcher]] = []  # sources read, in order, not yet returned
        batch: list[tuple[_Stitcher, int, np.ndarray]] = []
        bar = tqdm(total=len(sources), desc="analyse", unit="file", disable=not progress or len(sources) < 2)
        for source, windows in self._read_ahead(sources, workers):
            bar.update()
            stitcher = _Stitcher(self.frame_samples, self.sample_rate, embeddings)
            queue.append((source, stitcher))
            try:
                for first, wave in windows:
                    if batch and (len(batch) == self.batch_size or len(wave) != len(batch[0][2])):
                        self._run_batch(batch, embeddings)
                    batch.append((stitcher, first, wave))
            except (audio.AudioError, ValueError) as exc:
                stitcher.error = exc
            in_batch = {id(item[0]) for item in batch}
            while queue and id(queue[0][1]) not in in_batch:
                done_source, done = queue.pop(0)
                yield done_source, done.result(self.labels.names, self.frame_hop)
        bar.close()
        if batch:
            self._run_batch(batch, embeddings)
        for done_source, done in queue:
            yield done_source, done.result(self.labels.names, self.frame_hop)

    def analyze_files(self, paths: Iterable[str | os.PathLike], classes: str | Mapping[str, Sequence[str]] = "all",
                      progress: bool = False, workers: int = 0, embeddings: bool = False,
                      ) -> Iterator[tuple[Path, str, Analysis | Embeddings | audio.AudioError | InputError | ValueError]]:
        """`(path, name, Analysis or error)` for each audio file named (folders expand to the audio
        files below them, named relative to the folder). A name with a tab, line break or other
        control character is refused (it would break line-based outputs such as DCASE TSVs).
        `classes`: "all" (the model's labels), a name in `labels.CLASS_GROUPS`, or a mapping for
        `to_classes`; with `embeddings`, `Embeddings` instead of `Analysis` (classes do not apply)."""
        from .events import UNSTORABLE
        from .labels import CLASS_GROUPS

        if isinstance(classes, str):
            groups = None if classes == "all" else CLASS_GROUPS[classes]
        else:
            groups = classes
        readable, names = [], {}
        for path, name in audio.expand_paths(paths):
            if UNSTORABLE.search(name):
                yield path, name, InputError(f"{name!r}: the file name contains a tab, line break or other control "
                                             "character; rename the file")
            else:
                readable.append(path)
                names[path] = name
        for path, result in self.analyze_many(readable, progress=progress, workers=workers, embeddings=embeddings):
            if groups is not None and not embeddings and not isinstance(result, Exception):
                result = to_classes(result, groups)
            yield path, names[path], result

    def _read_ahead(self, sources: list[Source], workers: int) -> Iterator[tuple[Source, Iterable]]:
        """`(source, its windows)` in order; with workers, short files are decoded in threads ahead."""
        if workers <= 0:
            yield from ((source, self._windows(source)) for source in sources)
            return
        with ThreadPoolExecutor(workers) as pool:
            pending = deque(pool.submit(self._decode_short, source) for source in sources[:2 * workers])
            for i, source in enumerate(sources):
                windows = pending.popleft().result()
                if i + 2 * workers < len(sources):
                    pending.append(pool.submit(self._decode_short, sources[i + 2 * workers]))
                yield source, windows

    def _decode_short(self, source: Source) -> Iterable:
        """All windows of a short source (decoded now), or a lazy stream of a long one."""
        if not isinstance(source, np.ndarray) and _seconds(source) > PREFETCH_MAX_S:
            return self._windows(source)
        try:
            return list(self._windows(source))
        except (audio.AudioError, ValueError) as exc:
            return _Failing(exc)

    def _run_batch(self, batch: list[tuple["_Stitcher", int, np.ndarray]], embeddings: bool = False) -> None:
        waves = torch.from_numpy(np.stack([wave for _, _, wave in batch]))
        clipwise, framewise = (out.numpy() for out in (self.predictor.embed if embeddings else self.predictor)(waves))
        for (stitcher, first, wave), clip, frames in zip(batch, clipwise, framewise):
            stitcher.add(first, wave, clip, frames)
        batch.clear()

    def stream(self, chunks: Iterable[np.ndarray], **options) -> Iterator["LiveLine"]:
        """The lines of a live stream (`live.LiveLine`: events when they close, with `onsets=True`
        also when they open, tags with `tag_every`) as they are decided, from an iterator of mono
        sample blocks at the tagger's rate; the end of the iterator closes the stream. `options`:
        those of `live.LiveStream` (thresholds, median, upsample, classes, onsets, tag_every)."""
        from .live import LiveStream

        stream = LiveStream(self, **options)
        for chunk in chunks:
            yield from stream.feed(chunk)
        yield from stream.close()

    def framewise(self, source: Source) -> Framewise:
        """Frame scores of a recording on one timeline: `(times, labels, scores [T', K])`."""
        result = self.analyze(source)
        return Framewise(result.times, result.labels, result.framewise)

    def tag(self, source: Source, top_k: int = 5) -> list[tuple[str, float]]:
        """The `top_k` labels with the highest clip-level scores, best first."""
        check_number("top_k", top_k, integer=True, low=1)  # before the work
        return self.analyze(source).top(top_k)

    def detect(self, source: Source, thresholds: float | Sequence[float] | sed.Tuning = 0.5,
               median: int | Sequence[int] | sed.Tuning = 1, filename: str | None = None) -> list[Event]:
        """Events in a recording: frame scores → median filter → thresholds → events (see `sed`).
        `thresholds`/`median` take one value, one per class, or a `sed.Tuning` (from `sed-tune`)."""
        result = self.analyze(source)
        name = filename or (Path(source).name if not isinstance(source, np.ndarray) else "waveform")
        return events_from_analysis(result, name, thresholds, median)


def to_classes(result: Analysis, groups: Mapping[str, Sequence[str]]) -> Analysis:
    """Scores for coarser classes, each the max over a group of the model's labels (by name, the
    class's own name included, so a model trained on the coarse classes keeps its scores). Use
    `labels.DCASE2018_AUDIOSET_NAMES` to score a 527-label AudioSet model on the DCASE classes."""
    columns = class_columns(result.labels, groups)
    framewise, labels = map_classes(result.framewise, columns)
    clipwise, _ = map_classes(result.clipwise, columns)
    return replace(result, labels=labels, framewise=framewise, clipwise=clipwise)


def events_from_analysis(result: Analysis, filename: str, thresholds: float | Sequence[float] | sed.Tuning = 0.5,
                         median: int | Sequence[int] | sed.Tuning = 1, upsample: int | None = None) -> list[Event]:
    """The SED chain on an `Analysis`, with per-class settings taken from a `sed.Tuning` if given;
    `upsample` (default: the tuning's, else 1) interpolates the frame scores onto a finer grid."""
    thresholds, median, upsample = sed.chain_settings(result.labels, thresholds, median, upsample)
    return sed.events_from_frames({filename: result.framewise}, result.frame_hop, result.labels, thresholds, median,
                                  {filename: result.duration}, upsample)


def _seconds(path: str | os.PathLike) -> float:
    """A file's duration from its header; 0 when unreadable or not a regular file (decoding then
    says why; opening a FIFO here would block)."""
    if not Path(path).is_file():
        return 0.0
    try:
        return sf.info(str(path)).duration
    except (RuntimeError, TypeError):
        return 0.0


class _Failing:
    """Windows of a source that failed while read ahead: iterating raises its error."""

    def __init__(self, error: Exception):
        self.error = error

    def __iter__(self):
        raise self.error


class _Stitcher:
    """Collects one recording's window outputs and puts them on one timeline: frame vectors averaged
    where windows overlap; clip vectors the max over windows (scores) or their mean (`mean_clip`:
    embeddings)."""

    def __init__(self, frame_samples: int, sample_rate: int, mean_clip: bool = False):
        self.clip: np.ndarray | None = None
        self.windows, self.mean_clip = 0, mean_clip
        self.pieces: list[tuple[int, np.ndarray]] = []
        self.frame_samples, self.sample_rate = frame_samples, sample_rate
        self.n_samples = 0
        self.error: Exception | None = None

    def add(self, first: int, wave: np.ndarray, clip: np.ndarray, frames: np.ndarray) -> None:
        if self.clip is None:
            self.clip = clip.astype(np.float64) if self.mean_clip else clip.copy()
        else:
            self.clip = self.clip + clip if self.mean_clip else np.maximum(self.clip, clip)
        self.windows += 1
        # keep the frames that start inside the window's audio (the model pads the rest)
        self.pieces.append((first, frames[:math.ceil(len(wave) / self.frame_samples)]))
        self.n_samples = max(self.n_samples, first * self.frame_samples + len(wave))

    def result(self, labels: tuple[str, ...], frame_hop: float) -> Analysis | Embeddings | Exception:
        if self.error is not None:
            return self.error
        n_frames = max(first + len(frames) for first, frames in self.pieces)
        total = np.zeros((n_frames, self.pieces[0][1].shape[1]), np.float64)
        count = np.zeros(n_frames, np.int64)
        for first, frames in self.pieces:
            total[first:first + len(frames)] += frames
            count[first:first + len(frames)] += 1
        frames = (total / count[:, None]).astype(np.float32)
        if self.mean_clip:
            return Embeddings((self.clip / self.windows).astype(np.float32), frames, frame_hop,
                              self.n_samples / self.sample_rate)
        return Analysis(labels, self.clip, frames, frame_hop, self.n_samples / self.sample_rate)
