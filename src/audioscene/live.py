"""Live detection: tags and events from an audio stream as it plays (`Tagger.stream`, `audioscene
listen`, `audioscene detect --stream`).

A `LiveStream` is fed blocks of samples and gives back lines. It cuts the stream into the tagger's
windows (its clip length, advanced by its hop) exactly as `Tagger.analyze` cuts a file, averages the
frame scores of overlapping windows onto one time line, and runs the detection chain of `sed`
(upsampling, median filter, thresholds) on the frames no later window can change. Upsampling and
the median filter only look a few frames around each frame, so the chain runs on a short trailing
buffer: on a recording fed as a stream, the events equal `detect`'s on the file, and memory stays
flat however long the stream.

Latency. A frame's score is final once the last window that covers it has run: a window's length
after the frame. An event's line ("event") comes when its end is final; with `onsets`, an "onset"
line comes as soon as the windows so far put a class over its threshold: one hop plus the window's
compute plus half the median kernel after the sound starts. An onset line is provisional (the
final scores average later windows too); its event line follows unless the final scores stay under
the threshold. Each event is reported once.
"""

from __future__ import annotations

import json
import math
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import IO, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from . import sed
from .errors import InputError, StreamError
from .labels import CLASS_GROUPS, class_columns, map_classes

PCM_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
QUIET_S = 10.0  # seconds of digital silence or clipping before a stream is said to be so


@dataclass(frozen=True)
class LiveLine:
    """One line of a live stream's output. `kind`: "event" (a closed event: `onset`, `offset`, its
    peak `score`), "onset" (a class crossed its threshold at `onset`; provisional), "tags" (the
    latest window's top labels, `tags`). `stream_s`: the stream time it was decided at; `wall`:
    the clock time it was printed (Unix seconds)."""

    kind: str
    stream_s: float
    label: str = ""
    onset: float | None = None
    offset: float | None = None
    score: float | None = None
    tags: tuple[tuple[str, float], ...] = ()
    wall: float = field(default_factory=time.time)

    def tsv(self) -> str:
        """kind, stream time, wall time (ISO), label, onset, offset, score; tags as label:score pairs."""
        clock = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.wall)) + f".{int(self.wall % 1 * 1000):03d}"
        if self.kind == "tags":
            return "\t".join(["tags", f"{self.stream_s:.3f}", clock, " ".join(f"{k}:{v:.3f}" for k, v in self.tags)])
        cells = [self.kind, f"{self.stream_s:.3f}", clock, self.label, f"{self.onset:.3f}",
                 "" if self.offset is None else f"{self.offset:.3f}", f"{self.score:.3f}"]
        return "\t".join(cells)

    def json(self) -> str:
        return json.dumps({key: value for key, value in asdict(self).items()
                           if not (value is None or (isinstance(value, (str, tuple)) and not value))})


class _Events:
    """The detection chain (`sed.events_from_frames`) run on final frames as they come: frames are
    decided once every frame their upsampled, median-filtered value depends on is known, runs of
    active frames become events when they end, and only the frames later ones depend on are kept."""

    def __init__(self, labels: Sequence[str], hop: float, thresholds, kernels, factor: int):
        self.labels, self.factor, self.hop = tuple(labels), factor, hop / factor
        n = len(self.labels)
        self.kernels = sed._finer_kernels(sed._per_class(kernels, n, "median kernel", np.int64), factor)
        sed.median_filter(np.zeros((1, n), np.float32), self.kernels)  # checks the kernels once
        self.thresholds = sed._per_class(thresholds, n, "threshold", np.float32)
        self.context = -(-int(self.kernels.max()) // 2 // factor) + 2  # original frames a decided frame looks at
        self.frames = np.zeros((0, n), np.float32)  # final frames from `first` on
        self.first = 0
        self.decided = 0  # fine frames decided
        self.since = np.full(n, -1)  # fine frame where a class's open run began (-1: none)
        self.peak = np.zeros(n)

    def chain(self, frames: np.ndarray) -> np.ndarray:
        return sed.median_filter(sed.upsample(frames, self.factor), self.kernels)

    def add(self, frames: np.ndarray, end: bool = False, duration: float = math.inf) -> list[tuple]:
        """Append final frames; `(label index, onset, offset, score)` of each event that ended
        (with `end`: the stream ended, every run closes at `duration`)."""
        self.frames = np.concatenate([self.frames, frames.astype(np.float32, copy=False)])
        n = self.first + len(self.frames)
        limit = n * self.factor if end else (n - self.context) * self.factor
        closed = []
        if limit > self.decided:
            scores = self.chain(self.frames)[self.decided - self.first * self.factor:limit - self.first * self.factor]
            active = scores > self.thresholds
            for c in range(len(self.labels)):
                column, was_open = active[:, c], bool(self.since[c] >= 0)
                before = np.concatenate([[was_open], column[:-1]])
                starts = [None] * was_open + list(np.flatnonzero(column & ~before))  # None: the run open before
                stops = list(np.flatnonzero(~column & before))
                if end and (column[-1] if len(column) else was_open):
                    stops.append(len(column))
                for k, start in enumerate(starts):
                    first = 0 if start is None else start
                    if start is not None:
                        self.since[c], self.peak[c] = self.decided + start, 0.0
                    stop = stops[k] if k < len(stops) else len(column)
                    self.peak[c] = max(self.peak[c], float(scores[first:stop, c].max(initial=0.0)))
                    if k < len(stops):
                        closed.append(self._event(c, self.since[c], self.decided + stop, self.peak[c], duration))
                        self.since[c] = -1
            self.decided = limit
        keep = max(self.first, self.decided // self.factor - self.context)
        self.frames, self.first = self.frames[keep - self.first:], keep
        return sorted((event for event in closed if event is not None), key=lambda e: (e[2], e[0]))

    def _event(self, c: int, start: int, end: int, score: float, duration: float):
        """As `sed.to_events` times a run: µs-rounded, clipped to the duration, empty runs dropped."""
        onset = min(float(np.round(start * self.hop, 6)), duration)
        offset = min(float(np.round(end * self.hop, 6)), duration)
        return (c, onset, offset, float(score)) if offset > onset else None

    def provisional(self, pending: np.ndarray) -> np.ndarray:
        """Scores of the fine frames past the decided ones, from the final frames and the `pending`
        ones (averaged over the windows so far), as if the stream ended there."""
        scores = self.chain(np.concatenate([self.frames, pending]))
        return scores[self.decided - self.first * self.factor:]


class LiveStream:
    """Feed blocks of samples (`feed`), then `close`; each returns the lines decided (see the
    module docstring).

    Args:
        tagger: an `infer.Tagger`: the model(s), windows (`window_s`, `hop_s`) and front end.
        thresholds, median, upsample: as `Tagger.detect` / `audioscene detect` (a `sed.Tuning` gives
            per-class values; `upsample` defaults to the tuning's, else 1).
        classes: "all" (the model's labels), a name in `labels.CLASS_GROUPS`, or a mapping.
        onsets: also report each event when it opens (provisional).
        tag_every: report the latest window's top `top_k` labels at most every so many seconds.
    """

    def __init__(self, tagger, thresholds=0.5, median=1, upsample: int | None = None,
                 classes: str | Mapping[str, Sequence[str]] = "all", onsets: bool = False,
                 tag_every: float | None = None, top_k: int = 5):
        self.tagger = tagger
        self.columns = None  # "all": the model's labels as they are
        if classes != "all":
            self.columns = class_columns(tagger.labels.names,
                                         CLASS_GROUPS[classes] if isinstance(classes, str) else classes)
        self.labels = labels = tuple(self.columns) if self.columns is not None else tagger.labels.names
        self.events = _Events(labels, tagger.frame_hop, *sed.chain_settings(labels, thresholds, median, upsample))
        self.onsets, self.tag_every, self.top_k = onsets, tag_every, top_k
        self.frame_samples = tagger.frame_samples
        self.window = tagger.window_frames * self.frame_samples
        self.hop = tagger.hop_frames * self.frame_samples
        self.buffer = np.zeros(0, np.float32)
        self.start = self.covered = self.n_samples = 0  # samples: window start, covered by a window, seen
        self.total = np.zeros((0, len(labels)))  # pending frames (from `final`): sums and window counts
        self.count = np.zeros(0, np.int64)
        self.final = 0  # frames final so far
        self.frames_end = 0  # frames the windows so far gave (a short last window may give fewer than it spans)
        self.announced = np.full(len(labels), -1)  # fine frame of each class's open onset line
        self.last_tags = -math.inf
        self.dropped = 0
        self.closed = False
        # called after each window with (stream, start sample, samples, clip scores, frame scores): the live page
        self.watchers: list = []

    @property
    def stream_s(self) -> float:
        return self.n_samples / self.tagger.sample_rate

    def feed(self, block: np.ndarray, skip: bool = False) -> list[LiveLine]:
        """Lines decided by one more block (mono float32 at the tagger's rate). With `skip` (the
        caller is behind real time), the windows this block completes are dropped but the newest
        (their frames keep the other windows' scores; a frame no window covered scores 0)."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        if not np.isfinite(block).all():
            raise StreamError(f"the stream holds NaN or Inf at {self.stream_s:.2f} s")
        self.n_samples += len(block)
        self.buffer = np.concatenate([self.buffer, block])
        starts = []
        while self.n_samples - self.start >= self.window:
            starts.append(self.start)
            self.start += self.hop
        lines = []
        for i, start in enumerate(starts):
            if skip and i < len(starts) - 1:
                self.dropped += 1
                lines += self._advance(start + self.hop)
                continue
            lines += self._run(start, self._slice(start, start + self.window))
        self._trim()
        return lines

    def close(self) -> list[LiveLine]:
        """The end of the stream: the last, shorter window (as `Tagger.analyze` runs it), then every
        open event closed at the stream's end."""
        if self.closed:
            return []
        self.closed = True
        lines = []
        rest = self.n_samples - self.start
        if rest > 0 and (self.covered == 0 or self.n_samples > self.covered):
            lines += self._run(self.start, self._slice(self.start, self.n_samples), last=True)
        frames = self._take_final(self.frames_end)
        return lines + self._event_lines(self.events.add(frames, end=True, duration=self.stream_s))

    # --- internals ---------------------------------------------------------------------------------

    @property
    def _buffer_start(self) -> int:
        return self.n_samples - len(self.buffer)

    def _slice(self, start: int, stop: int) -> np.ndarray:
        return self.buffer[start - self._buffer_start:stop - self._buffer_start]

    def _trim(self) -> None:
        self.buffer = self.buffer[max(self.start - self._buffer_start, 0):]

    def _advance(self, final_to: int) -> list[LiveLine]:
        """Frames before sample `final_to` are final (a skipped window leaves its frames to others)."""
        return self._event_lines(self.events.add(self._take_final(final_to // self.frame_samples)))

    def _run(self, start: int, wave: np.ndarray, last: bool = False) -> list[LiveLine]:
        clipwise, framewise = self.tagger.predictor(torch.from_numpy(np.ascontiguousarray(wave))[None])
        clip, frames = clipwise[0].numpy(), framewise[0].numpy()[:math.ceil(len(wave) / self.frame_samples)]
        if self.columns is not None:
            clip, _ = map_classes(clip, self.columns)
            frames, _ = map_classes(frames, self.columns)
        first = start // self.frame_samples
        self.covered = start + len(wave)
        end = first + len(frames)
        self.frames_end = max(self.frames_end, end)
        self._pending_to(end)
        self.total[first - self.final:end - self.final] += frames
        self.count[first - self.final:end - self.final] += 1
        for watcher in self.watchers:
            watcher(self, start, wave, clip, frames)
        lines = []
        if not last:
            ended = self.events.add(self._take_final((start + self.hop) // self.frame_samples))
            lines += self._event_lines(ended)
            if self.onsets:
                lines += self._onset_lines()
        if self.tag_every is not None and (self.stream_s - self.last_tags >= self.tag_every or last):
            self.last_tags = self.stream_s
            order = np.argsort(-clip, kind="stable")[:self.top_k]
            lines.append(LiveLine("tags", self.stream_s, tags=tuple((self.labels[k], float(clip[k])) for k in order)))
        return lines

    def _pending_to(self, end: int) -> None:
        """Grow the pending sums and counts (no window yet: zeros) to reach frame `end`."""
        grow = end - self.final - len(self.count)
        if grow > 0:
            self.total = np.concatenate([self.total, np.zeros((grow, self.total.shape[1]))])
            self.count = np.concatenate([self.count, np.zeros(grow, np.int64)])

    def _take_final(self, final_to: int) -> np.ndarray:
        """The frames before `final_to` that became final, each the mean of the windows that covered
        it (no window: scored 0), removed from the pending ones."""
        n = max(final_to - self.final, 0)
        self._pending_to(final_to)
        frames = (self.total[:n] / np.maximum(self.count[:n], 1)[:, None]).astype(np.float32)
        self.total, self.count, self.final = self.total[n:], self.count[n:], self.final + n
        return frames

    def _event_lines(self, ended: list[tuple]) -> list[LiveLine]:
        lines = []
        for c, onset, offset, score in ended:
            if 0 <= self.announced[c] * self.events.hop <= offset:  # its onset line was this event's
                self.announced[c] = -1
            lines.append(LiveLine("event", self.stream_s, self.labels[c], onset, offset, score))
        return lines

    def _onset_lines(self) -> list[LiveLine]:
        """An onset line for each class whose provisional scores begin a run after the end of the
        run it last announced (so a run is announced once, however its provisional start moves)."""
        pending = (self.total / np.maximum(self.count, 1)[:, None]).astype(np.float32)[:np.count_nonzero(self.count)]
        scores = self.events.provisional(pending)
        active = scores > self.events.thresholds
        base, lines = self.events.decided, []
        for c in range(len(self.labels)):
            column, since = active[:, c], int(self.events.since[c])
            if 0 <= self.announced[c] < base and not 0 <= since <= self.announced[c]:
                self.announced[c] = -1  # its run ended among the decided frames
            before = np.concatenate([[since >= 0], column[:-1]])
            starts = [since] * (since >= 0) + list(base + np.flatnonzero(column & ~before))
            if self.announced[c] >= 0:
                offset = max(self.announced[c] - base, 0)
                gaps = np.flatnonzero(~column[offset:])
                end = base + offset + gaps[0] if len(gaps) else math.inf
                starts = [start for start in starts if start > end]
            if starts:
                onset = starts[0]
                self.announced[c] = onset
                run = column[max(onset - base, 0):]
                length = np.flatnonzero(~run)[0] if (~run).any() else len(run)
                score = max(float(scores[max(onset - base, 0):max(onset - base, 0) + length, c].max(initial=0.0)),
                            self.events.peak[c] if onset == since else 0.0)
                lines.append(LiveLine("onset", self.stream_s, self.labels[c],
                                      float(np.round(onset * self.events.hop, 6)), None, score))
        return lines


# --- sources: blocks of mono float32 samples at a given rate -------------------------------------------------

def pcm_blocks(stream: IO[bytes], name: str, fmt: str, rate: int, channels: int, target_rate: int,
               block_s: float = 0.1) -> Iterator[np.ndarray]:
    """Raw interleaved PCM from a byte stream (e.g. standard input), mixed to mono and resampled to
    `target_rate`; a stream that ends inside a sample frame is an error after the whole frames."""
    import soxr

    if fmt not in PCM_FORMATS:
        raise StreamError(f"{name}: PCM format {fmt!r}: choose {' or '.join(PCM_FORMATS)}")
    dtype = PCM_FORMATS[fmt]
    frame_bytes = dtype.itemsize * channels
    size = max(1, int(block_s * rate)) * frame_bytes
    resampler = soxr.ResampleStream(rate, target_rate, 1, dtype="float32") if rate != target_rate else None
    rest = b""
    while True:
        data = stream.read(size)
        if not data:
            break
        data = rest + data
        whole = len(data) // frame_bytes * frame_bytes
        data, rest = data[:whole], data[whole:]
        if not data:
            continue
        samples = np.frombuffer(data, dtype=dtype).reshape(-1, channels).astype(np.float32)
        if dtype.kind == "i":
            samples /= 32768.0
        mono = samples.mean(axis=1)
        yield resampler.resample_chunk(mono) if resampler else mono
    if resampler:
        yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)
    if rest:
        raise StreamError(f"{name}: the stream ended inside a sample ({len(rest)} of {frame_bytes} bytes of a "
                          f"{channels}-channel {fmt} frame)")


class FfmpegSource:
    """Anything ffmpeg decodes (a file, an HTTP or RTSP URL), as mono float32 at `rate`, read from
    its standard output; with `realtime`, at the input's own pace (`-re`). ffmpeg runs without a
    shell, the source one argument after `-i`."""

    def __init__(self, source: str, rate: int, realtime: bool = False, timeout_s: float = 10.0):
        self.source, self.rate = source, rate
        binary = shutil.which("ffmpeg")
        if binary is None:
            raise StreamError(f"{source}: ffmpeg is not installed (install it, or pipe raw PCM to `--stream -` with "
                              "--format/--rate/--channels)")
        network = "://" in source
        command = [binary, "-nostdin", "-hide_banner", "-loglevel", "error", *(["-re"] if realtime else []),
                   *(["-rw_timeout", str(int(timeout_s * 1e6))] if network else []), "-i", source,
                   "-vn", "-ac", "1", "-ar", str(rate), "-f", "f32le", "pipe:1"]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
        self.errors: list[bytes] = []
        self._reader = threading.Thread(target=lambda: self.errors.append(self.process.stderr.read()), daemon=True)
        self._reader.start()

    def blocks(self) -> Iterator[np.ndarray]:
        try:
            yield from pcm_blocks(self.process.stdout, self.source, "f32le", self.rate, 1, self.rate)
        finally:
            self.stop()
        if self.process.returncode not in (0, None):
            self._reader.join(timeout=2)
            message = b"".join(self.errors).decode(errors="replace").strip().splitlines()
            raise StreamError(f"{self.source}: ffmpeg failed (exit {self.process.returncode}): "
                              f"{message[-1] if message else 'no message'}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def microphone_blocks(device: int | str | None, rate: int, block_s: float = 0.1,
                      backlog: "queue.Queue | None" = None) -> Iterator[np.ndarray]:
    """The sound card's input (`sounddevice`, the `[live]` extra) as mono float32 blocks at `rate`."""
    sd = _sounddevice()
    blocks: queue.Queue = backlog if backlog is not None else queue.Queue()
    failure: list[str] = []

    def callback(data, frames, when, status):  # noqa: ARG001 - PortAudio's signature
        blocks.put(data.mean(axis=1).copy())

    try:
        stream = sd.InputStream(samplerate=rate, channels=1, dtype="float32", device=device,
                                blocksize=max(1, int(block_s * rate)), callback=callback,
                                finished_callback=lambda: failure.append("the input stopped"))
        stream.start()
    except Exception as exc:  # PortAudio raises its own error type for a missing or busy device
        raise StreamError(f"input device {device if device is not None else '(default)'}: {exc}") from None
    with stream:
        while True:
            try:
                yield blocks.get(timeout=1.0)
            except queue.Empty:
                if failure or not stream.active:
                    raise StreamError(f"input device {device if device is not None else '(default)'}: "
                                      f"{failure[0] if failure else 'no audio for 1 s'} (was it unplugged?)") from None


def list_devices() -> str:
    return str(_sounddevice().query_devices())


def _sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library is missing
        raise StreamError(f"listening needs sounddevice and PortAudio: pip install 'audioscene[live]' ({exc})") from None
    return sounddevice


def run_live(stream: LiveStream, blocks: Iterable[np.ndarray], write, realtime: bool = False,
             source: str = "the stream") -> int:
    """Feed `blocks` to `stream`, `write` each line as it is decided; the end of the blocks, an error
    of the source or Ctrl-C closes the stream and writes its last lines first. With `realtime`,
    falling behind the source drops windows (counted, said once). A stream silent or clipped for
    `QUIET_S` is said once each on stderr. Returns the windows dropped."""
    import logging

    log = logging.getLogger(__name__)
    rate, said = stream.tagger.sample_rate, set()
    silent = clipped = 0  # consecutive samples so far
    try:
        for block in (_gathered(blocks) if realtime else blocks):
            behind = realtime and len(block) > stream.hop  # more than a hop of audio waited for the model
            try:
                lines = stream.feed(block, skip=behind)
            except InputError as exc:
                raise StreamError(f"{source}: {exc}") from None
            for line in lines:
                write(line)
            loud = np.abs(block)
            silent = silent + len(block) if loud.max(initial=0.0) == 0.0 else 0
            clipped = clipped + len(block) if len(block) and (loud >= 0.999).mean() > 0.01 else 0
            for problem, samples in (("digital silence", silent), ("clipped (over 1 % of samples at full scale)",
                                                                     clipped)):
                if samples >= QUIET_S * rate and problem not in said:
                    said.add(problem)
                    log.warning("%s: %g s of %s", source, QUIET_S, problem)
            if stream.dropped and "dropped" not in said:
                said.add("dropped")
                log.warning("%s: the model cannot keep up with real time on this machine: dropping windows (counted "
                            "at the end)", source)
    except KeyboardInterrupt:
        pass
    finally:
        for line in stream.close():
            write(line)
    return stream.dropped


def _gathered(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The blocks of a live source, read by a thread as they come; each item is all the audio that
    arrived since the last one (so a model that fell behind sees how far, and catches up at once)."""
    arrived: queue.Queue = queue.Queue()
    end = object()

    def read() -> None:
        try:
            for block in blocks:
                arrived.put(block)
            arrived.put(end)
        except BaseException as exc:  # the source's error, raised again in the reading thread's caller
            arrived.put(exc)

    threading.Thread(target=read, daemon=True).start()
    while True:
        try:
            items = [arrived.get(timeout=0.5)]  # a timeout: Ctrl-C is delivered between waits
        except queue.Empty:
            continue
        while not arrived.empty():
            items.append(arrived.get_nowait())
        done = [item for item in items if item is end or isinstance(item, BaseException)]
        audio = [item for item in items if isinstance(item, np.ndarray)]
        if audio:
            yield np.concatenate(audio)
        if done:
            if isinstance(done[0], BaseException):
                raise done[0]
            return


def writer(fmt: str, out: IO[str] | None = None):
    """A function writing one `LiveLine` as TSV or a JSON line to `out` (default: standard output),
    flushed."""
    def write(line: LiveLine) -> None:
        stream = out or sys.stdout
        stream.write((line.tsv() if fmt == "tsv" else line.json()) + "\n")
        stream.flush()
    return write
