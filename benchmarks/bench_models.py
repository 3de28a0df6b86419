"""Model cost: parameters, forward FLOPs per 10 s clip, and the achieved FLOP/s of a training step
(forward + backward + Adam) as a fraction of the dense float32 matmul FLOP/s measured in the same
run on the same threads. Also compares `channels_last` with the default memory format.

    python benchmarks/bench_models.py [--widths 64 16] [--batch 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from audioscene import models
from audioscene.batches import MicroBatch
from audioscene.labels import LabelSet
from audioscene.train import TrainConfig, build_learner, train_step

FRAMES = 998  # one 10 s clip


def matmul_flops_per_second(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def count_flops(model: torch.nn.Module, batch: torch.Tensor, backward: bool) -> int:
    with FlopCounterMode(display=False) as counter:
        out = model(batch)
        if backward:
            out["clipwise"].sum().backward()
    return counter.get_total_flops()


def step_seconds(name: str, width: int, batch: torch.Tensor, target: torch.Tensor, channels_last: bool,
                 steps: int = 3) -> float:
    """Seconds per `train.train_step` of a model as `audioscene train` builds it, on log-mel input (the
    front end is left out: this measures the model)."""
    labels = LabelSet(tuple(f"class_{k}" for k in range(target.shape[1])))
    config = TrainConfig(model=name, model_args={"width": width}, channels_last=channels_last, amp=False, device="cpu")
    parts = replace(build_learner(config, labels), frontend=torch.nn.Identity())
    step = MicroBatch.whole(batch, target)
    train_step(parts, step)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        train_step(parts, step)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 16])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds): checks the script runs")
    args = parser.parse_args()
    if args.quick:
        args.widths, args.batch = [4], 1
    torch.set_num_threads(args.threads)
    peak = matmul_flops_per_second()
    print(f"dense float32 matmul: {peak / 1e9:.1f} GFLOP/s on {args.threads} threads; batch {args.batch} x 10 s")
    print(f"{'model':14s} {'width':>5s} {'params':>12s} {'fwd GFLOP/clip':>15s} {'step s':>7s} "
          f"{'clips/s':>8s} {'GFLOP/s':>8s} {'% matmul':>8s} {'channels_last':>14s}")
    torch.manual_seed(0)
    for width in args.widths:
        for name in models.available("resnet"):
            model = models.create(name, width=width).train()
            batch = torch.randn(args.batch, FRAMES, 64)
            target = (torch.rand(args.batch, 527) < 0.01).float()
            forward = count_flops(model, batch[:1], backward=False)
            train_flops = count_flops(model, batch, backward=True)
            model.zero_grad()
            seconds = step_seconds(name, width, batch, target, channels_last=False)
            seconds_cl = step_seconds(name, width, batch, target, channels_last=True)
            achieved = train_flops / seconds
            print(f"{name:14s} {width:5d} {sum(p.numel() for p in model.parameters()):12,d} {forward / 1e9:15.2f} "
                  f"{seconds:7.2f} {args.batch / seconds:8.2f} {achieved / 1e9:8.1f} {100 * achieved / peak:7.1f}% "
                  f"{seconds / seconds_cl:13.2f}x")


if __name__ == "__main__":
    main()
