"""Data loading vs training speed: clips/s of shard read + FLAC decode (2 DataLoader workers) +
LogMel on the batch, against forward + backward + Adam step clips/s of width-64 `resnet_b_att`,
measured in the same run. Goal: loading >= 5x training, so the model never waits for data.

    python benchmarks/bench_data.py [--clips 256] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from bench_models import step_seconds
from torch.utils.data import DataLoader

from audioscene.data.folder import ClipDataset
from audioscene.data.store import ShardDataset, pack
from audioscene.data.synthetic import generate
from audioscene.features import LogMel


def loading_rate(shards: Path, workers: int, batch_size: int, epochs: int) -> float:
    frontend = LogMel()
    dataset = ShardDataset(shards)
    start, n = time.perf_counter(), 0
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        for waves, _, _ in DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=False):
            with torch.no_grad():
                frontend(waves)
            n += len(waves)
    return n / (time.perf_counter() - start)


def training_rate(batch_size: int, steps: int) -> float:
    torch.manual_seed(0)
    logmel = torch.randn(batch_size, 998, 64)
    target = (torch.rand(batch_size, 527) < 0.01).float()
    return batch_size / step_seconds("resnet_b_att", 64, logmel, target, channels_last=True, steps=steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds): checks the script runs")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.workers, args.batch_size = 8, 0, 4
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as work:
        data = generate(Path(work) / "clips", n_clips=args.clips, seed=0, progress=False)
        dataset = ClipDataset.from_folder(data)
        shards = Path(work) / "shards"
        pack(dataset.clips, shards, dataset.label_set, shard_bytes=4 * 2**20, progress=False)
        n_shards = len(list(shards.glob("*.tar")))
        load = loading_rate(shards, args.workers, args.batch_size, epochs=2)
    train = training_rate(batch_size=2 if args.quick else 8, steps=1 if args.quick else 4)
    print(f"data vs training, {args.clips} synthetic 10 s clips in {n_shards} shards, 2 threads")
    print(f"  shard read + FLAC decode ({args.workers} workers) + LogMel: {load:7.1f} clips/s")
    print(f"  resnet_b_att width 64 forward + backward + step:     {train:7.1f} clips/s")
    print(f"  loading is {load / train:.0f}x training (goal >= 5x)")


if __name__ == "__main__":
    main()
