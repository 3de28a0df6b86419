"""Deterministic synthetic soundscapes with the ten DCASE 2018 task 4 class names (docs/protocol.md §6).

Each 10 s clip holds 0–4 events (overlaps allowed) over coloured background noise. Every class
has its own procedural signature, concentrated in a known frequency band (`SIGNATURES[label].band`):

=========================== ========================================== ==========
class                       signature                                  duration
=========================== ========================================== ==========
Alarm_bell_ringing          repeated tonal beeps (1–2.5 kHz)           0.6–3 s
Blender                     harmonic motor whine with wobble           2–8 s
Cat                         harmonic pitch glide up then down          0.5–1.8 s
Dishes                      short damped inharmonic metallic clinks    0.3–2 s
Dog                         short harmonic barks with falling pitch    0.3–2 s
Electric_shaver_toothbrush  buzzy pulse train, band-passed             2–8 s
Frying                      random crackle over hiss, high band        2–8 s
Running_water               band noise with fast random modulation     2–8 s
Speech                      formant-shaped voiced syllables            0.6–3 s
Vacuum_cleaner              stationary band noise plus motor hum       2–8 s
=========================== ========================================== ==========

Clip `i` of seed `s` depends only on `(s, i)`, so the same seed gives byte-identical files and
a larger set extends a smaller one. Output layout::

    DIR/audio/synth_000000.flac ...   16 kHz mono FLAC (16 bit)
    DIR/weak.csv                      filename,labels   (labels ;-separated)
    DIR/strong.tsv                    DCASE TSV: filename onset offset event_label
    DIR/synth.json                    the generator's settings, written last
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
from scipy import signal
from tqdm.auto import tqdm

from .._io import atomic_open, make_folder
from ..errors import InputError
from ..events import Event, write_events_tsv

log = logging.getLogger(__name__)

SR = 16000
CLIP_SECONDS = 10.0
NYQUIST = SR / 2
DEFAULT_SNR_DB = (0.0, 15.0)  # event RMS over background RMS, drawn uniformly per event
DEFAULT_MAX_EVENTS = 4  # events per clip are drawn uniformly from 0..max_events


# --- building blocks -------------------------------------------------------------------------

def _bandpass(x: np.ndarray, low: float, high: float, order: int = 4) -> np.ndarray:
    sos = signal.butter(order, [low, min(high, NYQUIST * 0.98)], btype="bandpass", fs=SR, output="sos")
    return signal.sosfilt(sos, x)


def _harmonics(f0: np.ndarray, amplitudes: np.ndarray | Callable[[int], float], rng) -> np.ndarray:
    """Sum of harmonics k·f0(t) (k = 1, 2, ...) below Nyquist, with random start phases.

    `amplitudes` is either a function of k or an array `[n_harmonics, len(f0)]` of per-sample gains.
    """
    phase = 2 * np.pi * np.cumsum(f0) / SR
    n_harmonics = len(amplitudes) if isinstance(amplitudes, np.ndarray) else int(NYQUIST / f0.max())
    out = np.zeros_like(f0)
    for k in range(1, n_harmonics + 1):
        gain = amplitudes[k - 1] if isinstance(amplitudes, np.ndarray) else amplitudes(k)
        audible = k * f0 < NYQUIST * 0.95
        out += audible * gain * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return out


def _gate(n: int, on_range: tuple[float, float], off_range: tuple[float, float], rng) -> np.ndarray:
    """0/1 mask of random on/off bursts starting with an 'on' burst, 5 ms ramps at each edge."""
    mask = np.zeros(n)
    position = 0
    while position < n:
        length = int(rng.uniform(*on_range) * SR)
        mask[position:position + length] = 1.0
        position += length + int(rng.uniform(*off_range) * SR)
    ramp = np.hanning(int(0.01 * SR))
    return np.convolve(mask, ramp / ramp.sum(), mode="same")


def _burst_starts(n: int, count: int, burst: int, rng) -> np.ndarray:
    """Start samples of `count` bursts of about `burst` samples: one at 0, one ending at `n`."""
    last = max(n - burst, 0)
    return np.unique(np.r_[0, last, rng.integers(0, last + 1, max(count - 2, 0))])


def _slow_noise(n: int, rate_hz: float, rng) -> np.ndarray:
    """Smooth random curve in [0, 1] that changes about `rate_hz` times a second."""
    knots = rng.uniform(0, 1, int(n / SR * rate_hz) + 3)
    return np.interp(np.arange(n) / SR * rate_hz, np.arange(len(knots)), knots)


# --- class signatures: (rng, n_samples) -> signal ---------------------------------------------

def _alarm(rng, n):
    f0 = np.full(n, rng.uniform(1000, 2500))
    beep = np.sin(2 * np.pi * np.cumsum(f0) / SR) + 0.3 * np.sin(4 * np.pi * np.cumsum(f0) / SR)
    return beep * _gate(n, (0.08, 0.2), (0.05, 0.15), rng)


def _blender(rng, n):
    f0 = rng.uniform(150, 350) * (1 + 0.05 * (_slow_noise(n, 3, rng) - 0.5))
    whine = _harmonics(f0, lambda k: 1 / k, rng)
    return whine + 0.2 * _bandpass(rng.standard_normal(n), 1000, 3000)


def _cat(rng, n):
    t = np.linspace(0, 1, n)
    start, peak, end = rng.uniform(400, 550), rng.uniform(700, 1000), rng.uniform(400, 600)
    f0 = np.where(t < 0.4, start + (peak - start) * t / 0.4, peak + (end - peak) * (t - 0.4) / 0.6)
    return _harmonics(f0, lambda k: k ** -1.5 if k <= 6 else 0.0, rng) * np.sin(np.pi * t) ** 0.5


def _dishes(rng, n):
    out = np.zeros(n)
    for start in _burst_starts(n, 1 + int(n / SR * rng.uniform(1, 3)), int(0.05 * SR), rng):
        t = np.arange(n - start) / SR
        clink = sum(np.sin(2 * np.pi * rng.uniform(2000, 7000) * t) for _ in range(rng.integers(3, 6)))
        out[start:] += clink * np.exp(-t / rng.uniform(0.015, 0.06))
    return out


def _dog(rng, n):
    out = np.zeros(n)
    for start in _burst_starts(n, 1 + int(n / SR * rng.uniform(1, 3)), int(0.2 * SR), rng):
        length = min(int(rng.uniform(0.08, 0.2) * SR), n - start)
        t = np.arange(length) / SR
        f0 = rng.uniform(300, 700) * (1 - 0.3 * t / max(t[-1], 1e-3))
        bark = _harmonics(f0, lambda k: 1 / k, rng) + 0.3 * _bandpass(rng.standard_normal(length), 300, 3000)
        out[start:start + length] += bark * np.exp(-t / 0.06) * (1 - np.exp(-t / 0.005))
    return out


def _shaver(rng, n):
    period = int(SR / rng.uniform(80, 250))
    pulses = np.zeros(n)
    pulses[::period] = 1.0
    return _bandpass(np.convolve(pulses, np.hanning(9), mode="same"), 1500, 5000, order=2)


def _frying(rng, n):
    crackle = (rng.uniform(0, 1, n) < rng.uniform(30, 150) / SR) * rng.standard_normal(n) * 8
    crackle = np.convolve(crackle, np.exp(-np.arange(int(0.003 * SR)) / (0.001 * SR)), mode="same")
    return _bandpass(crackle + 0.3 * rng.standard_normal(n), 2500, 8000)


def _water(rng, n):
    modulation = 0.3 + _slow_noise(n, rng.uniform(4, 20), rng)
    return _bandpass(rng.standard_normal(n), 400, 3500) * modulation


def _speech(rng, n):
    out = np.zeros(n)
    gate = _gate(n, (0.12, 0.3), (0.03, 0.15), rng)
    # one vowel (F1, F2 formants) per syllable; harmonic gains follow Gaussian formant peaks
    f0 = rng.uniform(100, 220) * (1 + 0.1 * (_slow_noise(n, 2, rng) - 0.5))
    n_harmonics = 30
    gains = np.zeros((n_harmonics, n))
    onsets = np.flatnonzero(np.diff(np.r_[0, gate > 0.5].astype(int)) == 1)
    for begin, end in zip(onsets, np.r_[onsets[1:], n]):
        f1, f2 = rng.uniform(300, 900), rng.uniform(900, 2500)
        k = np.arange(1, n_harmonics + 1)[:, None]
        freq = k * f0[None, begin:end]
        gains[:, begin:end] = np.exp(-((freq - f1) / 150) ** 2) + 0.6 * np.exp(-((freq - f2) / 200) ** 2) + 0.02
    out += _harmonics(f0, gains, rng)
    return out * gate


def _vacuum(rng, n):
    hum = _harmonics(np.full(n, rng.uniform(100, 200)), lambda k: 0.5 / k if k <= 5 else 0.0, rng)
    return _bandpass(rng.standard_normal(n), 800, 6000) + hum


@dataclass(frozen=True)
class Signature:
    render: Callable
    duration: tuple[float, float]  # seconds, min and max
    band: tuple[float, float]  # Hz, where most of its energy lies


SIGNATURES: dict[str, Signature] = {
    "Alarm_bell_ringing": Signature(_alarm, (0.6, 3.0), (950, 2600)),
    "Blender": Signature(_blender, (2.0, 8.0), (150, 1500)),
    "Cat": Signature(_cat, (0.5, 1.8), (400, 3000)),
    "Dishes": Signature(_dishes, (0.3, 2.0), (2000, 7000)),
    "Dog": Signature(_dog, (0.3, 2.0), (300, 3000)),
    "Electric_shaver_toothbrush": Signature(_shaver, (2.0, 8.0), (1500, 5000)),
    "Frying": Signature(_frying, (2.0, 8.0), (2500, 8000)),
    "Running_water": Signature(_water, (2.0, 8.0), (400, 3500)),
    "Speech": Signature(_speech, (0.6, 3.0), (100, 2500)),
    "Vacuum_cleaner": Signature(_vacuum, (2.0, 8.0), (800, 6000)),
}


def coloured_noise(n: int, exponent: float, rng) -> np.ndarray:
    """Unit-RMS noise with power spectrum ∝ 1/f^exponent (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    spectrum[1:] /= freqs[1:] ** (exponent / 2)
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    return noise / np.sqrt(np.mean(noise**2))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)) + 1e-12)


def render_clip(seed: int, index: int, snr_db: tuple[float, float] = DEFAULT_SNR_DB,
                filename: str = "", max_events: int = DEFAULT_MAX_EVENTS) -> tuple[np.ndarray, list[Event]]:
    """One 10 s clip: float32 audio at 16 kHz and its events (sorted by onset), 0..`max_events` of them.

    Each event's RMS over its interval is `snr_db` (drawn uniformly from the range) above the
    background's RMS. The mix is scaled down if it would clip.
    """
    rng = np.random.default_rng([seed, index])
    n = int(CLIP_SECONDS * SR)
    background_rms = 10 ** (rng.uniform(-36, -26) / 20)
    mix = background_rms * coloured_noise(n, rng.uniform(0.5, 2.0), rng)
    events = []
    for _ in range(rng.integers(0, max_events + 1)):
        label = str(rng.choice(list(SIGNATURES)))
        sig = SIGNATURES[label]
        length = round(min(rng.uniform(*sig.duration), CLIP_SECONDS), 3)
        onset = round(rng.uniform(0, CLIP_SECONDS - length), 3)
        begin, end = int(round(onset * SR)), int(round((onset + length) * SR))
        source = sig.render(rng, end - begin)
        fade = np.minimum(1, np.minimum(np.arange(end - begin), np.arange(end - begin)[::-1]) / (0.005 * SR))
        source *= fade * background_rms * 10 ** (rng.uniform(*snr_db) / 20) / _rms(source)
        mix[begin:end] += source
        events.append(Event(filename, onset, round(onset + length, 3), label))
    peak = np.abs(mix).max()
    if peak > 0.95:
        mix *= 0.95 / peak
    return mix.astype(np.float32), sorted(events, key=lambda e: (e.onset, e.label))


@dataclass(frozen=True)
class SynthConfig:
    n_clips: int = 100
    seed: int = 0
    snr_db: tuple[float, float] = DEFAULT_SNR_DB
    max_events: int = DEFAULT_MAX_EVENTS


def _write_clip(job: tuple[Path, int, int, tuple[float, float], int]) -> list[Event]:
    audio_dir, seed, index, snr_db, max_events = job
    filename = f"synth_{index:06d}.flac"
    audio, events = render_clip(seed, index, snr_db, filename, max_events)
    encoded = io.BytesIO()  # encoded in memory: libsndfile reports a short write (full disk) as an assertion
    sf.write(encoded, audio, SR, format="FLAC", subtype="PCM_16")
    with atomic_open(audio_dir / filename, "wb") as f:  # a full disk: one error naming the clip, no partial file
        f.write(encoded.getbuffer())
    return events


def generate(out_dir: str | os.PathLike, n_clips: int = 100, seed: int = 0,
             snr_db: tuple[float, float] = DEFAULT_SNR_DB, progress: bool = True, workers: int | None = None,
             max_events: int = DEFAULT_MAX_EVENTS) -> Path:
    """Write a synthetic data set of `n_clips` clips to `out_dir` (layout in the module doc).

    Clips are rendered by `workers` processes (default: one per CPU); the output does not depend
    on it. Existing clip files are overwritten; the CSV and TSV are written atomically last, so a
    set is complete when `synth.json` exists.
    """
    if n_clips < 1:
        raise InputError(f"n_clips must be >= 1, got {n_clips}")
    low, high = snr_db
    if low > high:
        raise InputError(f"snr_db range must be (low, high) with low <= high, got {snr_db}")
    out_dir = Path(out_dir)
    make_folder(out_dir / "audio")
    if max_events < 0:
        raise InputError(f"max_events must be >= 0, got {max_events}")
    jobs = [(out_dir / "audio", seed, index, (low, high), max_events) for index in range(n_clips)]
    workers = min(workers or os.cpu_count() or 1, n_clips)
    # spawn, not fork: the caller may already run torch's OpenMP threads, which do not survive a fork
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else None
    with pool or nullcontext():
        clips = pool.map(_write_clip, jobs, chunksize=8) if pool else map(_write_clip, jobs)
        per_clip = list(tqdm(clips, total=n_clips, desc=f"synth {out_dir.name}", unit="clip", disable=not progress))
    strong = [event for events in per_clip for event in events]
    with atomic_open(out_dir / "weak.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("filename", "labels"))
        writer.writerows((f"synth_{index:06d}.flac", ";".join(sorted({e.label for e in events})))
                         for index, events in enumerate(per_clip))
    write_events_tsv(out_dir / "strong.tsv", strong)
    with atomic_open(out_dir / "synth.json", "w", encoding="utf-8") as f:
        json.dump(asdict(SynthConfig(n_clips, seed, (low, high), max_events)), f, indent=2)
    log.info("wrote %d clips with %d events to %s", n_clips, len(strong), out_dir)
    return out_dir
