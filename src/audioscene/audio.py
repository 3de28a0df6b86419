"""Audio input: decode any file libsndfile reads, downmix to mono and resample with soxr.

>>> from audioscene.audio import load
>>> wave = load("clip.flac")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError, InputError

SAMPLE_RATE = 16000
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")


def _check_file(path: Path) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise AudioError(path, "no such file") from None
    except OSError as exc:
        raise AudioError(path, f"cannot read it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):  # reading a FIFO or device would block forever
        raise AudioError(path, "not a regular file (a folder, FIFO or device); give an audio file")
    if info.st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")


def load(path: str | os.PathLike, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as float32 mono at `sr` Hz with values in [-1, 1].

    Channels are averaged; other sample rates are converted with soxr. Silence is valid.

    Raises:
        AudioError: missing or empty file, undecodable bytes, zero samples, NaN or Inf samples.
    """
    path = Path(path)
    _check_file(path)
    return _read(path, path, sr)


def decode(data: bytes, name: str, sr: int = SAMPLE_RATE) -> np.ndarray:
    """`load` for encoded audio held in memory (e.g. a shard member); errors name `name`."""
    return _read(io.BytesIO(data), name, sr)


def _read(source, name: str | os.PathLike, sr: int) -> np.ndarray:
    try:
        samples, orig_sr = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(name, f"cannot decode audio ({exc})") from None
    if samples.shape[0] == 0:
        raise AudioError(name, "contains 0 samples")
    if not np.isfinite(samples).all():
        raise AudioError(name, "contains NaN or Inf samples")
    mono = samples.mean(axis=1, dtype=np.float32)
    if orig_sr != sr:
        mono = soxr.resample(mono, orig_sr, sr, quality="HQ").astype(np.float32, copy=False)
    # Float files may exceed full scale and resampling can overshoot it slightly.
    return np.clip(mono, -1.0, 1.0, out=mono)


def stream(path: str | os.PathLike, sr: int = SAMPLE_RATE, block_seconds: float = 60.0) -> Iterator[np.ndarray]:
    """Decode a file of any length block by block: float32 mono blocks at `sr` Hz (about
    `block_seconds` each), so memory stays flat however long the recording is. The blocks joined
    are `load(path, sr)` (exactly when no resampling is needed; soxr's streaming resampler otherwise).

    Raises:
        AudioError: as `load`; a NaN/Inf or undecodable block names the time where it starts.
    """
    path = Path(path)
    _check_file(path)
    try:
        audio_file = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(path, f"cannot decode audio ({exc})") from None
    with audio_file:
        orig_sr = audio_file.samplerate
        resampler = None if orig_sr == sr else soxr.ResampleStream(orig_sr, sr, 1, dtype="float32", quality="HQ")
        block_frames = max(1, int(block_seconds * orig_sr))
        position, yielded = 0, 0
        while True:
            try:
                block = audio_file.read(block_frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(path, f"cannot decode audio after {position / orig_sr:.1f} s ({exc})") from None
            if not np.isfinite(block).all():
                raise AudioError(path, f"contains NaN or Inf samples (in the block from {position / orig_sr:.1f} s)")
            last = len(block) < block_frames
            mono = block.mean(axis=1, dtype=np.float32)
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            position += len(block)
            if len(mono):
                yielded += len(mono)
                yield np.clip(mono, -1.0, 1.0, out=mono)
            if last:
                break
        if yielded == 0:
            raise AudioError(path, "contains 0 samples")


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, str]]:
    """`(path, name)` of each audio file named: a file stands for itself (name: its file name), a
    folder for the audio files below it (name: the path relative to the folder), sorted.
    Paths that do not exist are kept, so that reading them reports the problem.

    Raises:
        InputError: a folder without audio files.
    """
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not files:
                raise InputError(f"{path}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder")
            found += [(p, p.relative_to(path).as_posix()) for p in files]
        else:
            found.append((path, path.name))
    return found
