"""Audio input: decode any file libsndfile reads, downmix to mono and resample with soxr.

>>> from audioscene.audio import load
>>> wave = load("clip.flac")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000


class AudioError(Exception):
    """A file could not be used as audio; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def load(path: str | os.PathLike, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as float32 mono at `sr` Hz with values in [-1, 1].

    Channels are averaged; other sample rates are converted with soxr. Silence is valid.

    Raises:
        AudioError: missing or empty file, undecodable bytes, zero samples, NaN or Inf samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "no such file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        samples, orig_sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(path, f"cannot decode audio ({exc})") from None
    if samples.shape[0] == 0:
        raise AudioError(path, "contains 0 samples")
    if not np.isfinite(samples).all():
        raise AudioError(path, "contains NaN or Inf samples")
    mono = samples.mean(axis=1, dtype=np.float32)
    if orig_sr != sr:
        mono = soxr.resample(mono, orig_sr, sr, quality="HQ").astype(np.float32, copy=False)
    # Float files may exceed full scale and resampling can overshoot it slightly.
    return np.clip(mono, -1.0, 1.0, out=mono)
