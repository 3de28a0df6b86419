"""Front-end throughput: LogMel (batched torch) vs librosa (per clip) vs the numpy VGGish reference.

64 ten-second clips at 16 kHz, 2 threads. Prints clips/s and the ratios, and the largest
difference from the reference. Needs the `bench` and `test` extras (librosa, torchvggish).

    python benchmarks/bench_frontend.py
"""

from __future__ import annotations

import argparse
import time

import librosa
import numpy as np
import torch
from torchvggish import mel_features

from audioscene.features import LogMel

SR, THREADS = 16000, 2


def clips_per_second(fn, n_clips: int, repeats: int = 3) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return n_clips * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds): checks the script runs")
    args = parser.parse_args()
    n_clips, repeats = (2, 1) if args.quick else (args.clips, 3)
    torch.set_num_threads(THREADS)
    clips = np.random.default_rng(0).uniform(-0.5, 0.5, (n_clips, 10 * SR)).astype(np.float32)
    batch = torch.from_numpy(clips)
    frontend = LogMel()

    def ours():
        with torch.no_grad():
            return frontend(batch)

    def with_librosa():
        return [librosa.feature.melspectrogram(
            y=clip, sr=SR, n_fft=512, hop_length=160, win_length=400, window="hann", center=False,
            power=1.0, n_mels=64, fmin=125.0, fmax=7500.0, htk=True, norm=None) for clip in clips]

    def reference():
        return [mel_features.log_mel_spectrogram(
            clip, audio_sample_rate=SR, log_offset=0.01, window_length_secs=0.025, hop_length_secs=0.010,
            num_mel_bins=64, lower_edge_hertz=125.0, upper_edge_hertz=7500.0) for clip in clips]

    rates = {"audioscene LogMel": clips_per_second(ours, n_clips, repeats),
             "librosa": clips_per_second(with_librosa, n_clips, repeats),
             "VGGish numpy reference": clips_per_second(reference, n_clips, repeats)}
    error = np.abs(ours().numpy() - np.stack(reference())).max()
    print(f"front end, {n_clips} x 10 s clips, {THREADS} threads")
    for name, rate in rates.items():
        print(f"  {name:24s} {rate:8.1f} clips/s")
    print(f"  LogMel is {rates['audioscene LogMel'] / rates['librosa']:.1f}x librosa, "
          f"{rates['audioscene LogMel'] / rates['VGGish numpy reference']:.1f}x the numpy reference; "
          f"max |LogMel - reference| = {error:.2e}")


if __name__ == "__main__":
    main()
