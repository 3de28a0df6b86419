"""Table 2's embedding baselines on CPU: how fast AudioSet's released features are read (our TFRecord
reader against the `tfrecord` package, the reference, in the same run) and how fast both models
train (`train.train_step`, the paper's batch of 500), projected to an epoch of balanced_train
(22,160 clips).

    python benchmarks/bench_embeddings.py [--clips 22160] [--steps 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import tfrecord
import torch

from audioscene.batches import MicroBatch
from audioscene.data.embeddings import EmbeddingClip, EmbeddingDataset, write_tfrecords
from audioscene.labels import audioset
from audioscene.train import TrainConfig, build_learner, train_step

BALANCED_TRAIN = 22_160


def fake_release(out: Path, n_clips: int) -> list[Path]:
    """Clips in the released layout: 10 random embeddings (a few with 9), two random labels each."""
    rng = np.random.default_rng(0)
    clips = [EmbeddingClip(f"{i:011d}", 30.0, 40.0, tuple(sorted(rng.choice(527, 2, replace=False))),
                           rng.integers(0, 256, (9 if i % 50 == 0 else 10, 128), dtype=np.uint8))
             for i in range(n_clips)]
    return write_tfrecords(clips, out, clips_per_file=1000)


def read_rates(folder: Path, files: list[Path], n_clips: int) -> tuple[float, float]:
    start = time.perf_counter()
    dataset = EmbeddingDataset.from_folder(folder, progress=False)
    ours = len(dataset) / (time.perf_counter() - start)
    start = time.perf_counter()
    n = sum(1 for path in files for _ in tfrecord.reader.sequence_loader(str(path), None))
    reference = n / (time.perf_counter() - start)
    assert len(dataset) == n == n_clips
    return ours, reference


def training_rate(name: str, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    learner = build_learner(TrainConfig(model=name, lr=1e-3, amp=False, device="cpu"), audioset())
    waves = torch.randn(batch, 10, 128)
    targets = (torch.rand(batch, 527) < 0.005).float()
    step = MicroBatch.whole(waves, targets)
    learner.model.train()
    train_step(learner, step)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        train_step(learner, step)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=BALANCED_TRAIN)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds): checks the script runs")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.steps, args.batch = 200, 1, 20
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "bal_train"
        files = fake_release(folder, args.clips)
        ours, reference = read_rates(folder, files, args.clips)
    print(f"released-embedding records ({args.clips} clips, {len(files)} files), {args.threads} threads:")
    print(f"  our reader (CRC-checked, dequantised into memory): {ours:9.0f} records/s "
          f"= {ours / reference:.1f}x the tfrecord package ({reference:.0f} records/s, parse only)")
    print(f"  reading balanced_train: {BALANCED_TRAIN / ours:.1f} s, once per run (the set is held in memory)")
    for name in ("yu_multilevel_att", "kong_att"):
        rate = training_rate(name, args.batch, args.steps)
        print(f"  {name:18s} train_step, batch {args.batch}: {rate:8.0f} clips/s -> an epoch of balanced_train "
              f"in {BALANCED_TRAIN / rate:.1f} s")


if __name__ == "__main__":
    main()
