"""Profiled training step of width-64 `resnet_b_att` on 10 s clips, fed by the real input pipeline
(synthetic shards → 2 DataLoader workers → LogMel on the batch): clips/s of forward + backward +
Adam step, the share of time spent waiting for data and in the front end, and the achieved FLOP/s
against the dense matmul FLOP/s measured in the same run; then the variants (contiguous memory,
bf16 autocast, torch.compile with --compile) and the DDP scaling from 1 to 2 processes (gloo,
torchrun, same cores in total). Writes the figures as JSON for `estimate_audioset.py`.

    python benchmarks/bench_train.py [--steps 6] [--batch 8] [--compile] [--json benchmarks/results/bench_train.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_models import count_flops, matmul_flops_per_second
from torch.utils.data import DataLoader

from audioscene import models
from audioscene.batches import MicroBatch
from audioscene.data.folder import ClipDataset
from audioscene.data.store import ShardDataset, pack
from audioscene.data.synthetic import generate
from audioscene.distributed import Context, barrier, setup, teardown
from audioscene.labels import LabelSet
from audioscene.train import Learner, TrainConfig, build_learner, train_step

MODEL, WIDTH = "resnet_b_att", 64


def make_model(channels_last: bool, n_classes: int = 10):
    torch.manual_seed(0)
    model = models.create(MODEL, n_classes=n_classes, width=WIDTH).train()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def learner(device: torch.device, n_classes: int = 10, context: Context | None = None, **config) -> Learner:
    """What `audioscene train` builds for width-64 `resnet_b_att` (`config`: TrainConfig overrides)."""
    labels = LabelSet(tuple(f"class_{k}" for k in range(n_classes)))
    config = TrainConfig(model=MODEL, model_args={"width": WIDTH}, device=str(device), **{"amp": False, **config})
    return build_learner(config, labels, context or Context(device=device))


def profile(shards: Path, steps: int, batch: int, workers: int, device: torch.device, channels_last=True,
            bf16=False, compile=False) -> dict:
    """Time of `steps` calls of `train.train_step` (after warm-up steps) and of the data wait before
    each; the front end's share is timed on the same batches in a separate pass (not in the total)."""
    parts = learner(device, channels_last=channels_last, amp=bf16, cpu_bf16=bf16, compile=compile)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    loader = _endless(DataLoader(ShardDataset(shards), batch_size=batch, num_workers=workers,
                                 prefetch_factor=4 if workers else None,
                                 persistent_workers=workers > 0))
    times = {"data": 0.0, "frontend": 0.0, "step": 0.0}
    warmup = 3 if compile else 1
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        waves, targets, _ = next(loader)
        t1 = time.perf_counter()
        train_step(parts, MicroBatch.whole(waves, targets))
        sync()
        t2 = time.perf_counter()
        with torch.no_grad():
            parts.frontend(waves.to(device))
        sync()
        if i >= warmup:
            for key, seconds in zip(times, (t1 - t0, time.perf_counter() - t2, t2 - t1)):
                times[key] += seconds
    total = times["data"] + times["step"]
    return {"clips_per_s": steps * batch / total, "data_share": times["data"] / total,
            "frontend_share": times["frontend"] / total, "step_clips_per_s": steps * batch / times["step"]}


def _endless(loader: DataLoader):
    """Batches of `loader`, epoch after epoch (as many steps as a profile asks for)."""
    while True:
        yield from loader


def cuda_matmul_flops_per_second(size: int = 8192, repeats: int = 20) -> float:
    a, b = torch.randn(size, size, device="cuda"), torch.randn(size, size, device="cuda")
    a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def ddp_worker(steps: int, batch: int) -> None:
    """One rank of the scaling test (run by torchrun): `train_step` on random waveforms, with the
    process group, DDP wrapper and micro-batch weights of `audioscene train` (global batch `batch` ×
    ranks, each rank's clips weighing 1 / global batch)."""
    context = setup(torch.device("cpu"))
    parts = learner(context.device, context=context)
    generator = torch.Generator().manual_seed(context.rank)
    waves, targets = torch.randn(batch, 160000, generator=generator) * 0.1, (torch.rand(batch, 10) < 0.2).float()
    step = MicroBatch(waves, targets, weight=1.0 / (batch * context.world_size))
    train_step(parts, step)
    barrier(context)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(parts, step)
    barrier(context)
    if context.is_main:
        print(json.dumps({"clips_per_s": steps * batch * context.world_size / (time.perf_counter() - start)}))
    teardown(context)


def ddp_rate(processes: int, threads: int, steps: int, batch: int, width: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(Path(__file__).parent)}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                          str(processes), __file__, "--ddp-worker", "--steps", str(steps), "--batch", str(batch),
                          "--width", str(width)],
                         capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["clips_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the DDP part always runs gloo on CPU)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "bench_train.json")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds): checks the script runs")
    args = parser.parse_args()
    if args.quick:  # one step of two clips of a narrow model; the figures are not written
        args.steps, args.batch, args.workers, args.width, args.json = 1, 2, 1, 8, None
    global WIDTH
    WIDTH = args.width
    if args.ddp_worker:
        ddp_worker(args.steps, args.batch)
        return
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peak = matmul_flops_per_second() if device.type == "cpu" else cuda_matmul_flops_per_second()
    flops_per_clip = count_flops(make_model(False), torch.randn(1, 998, 64), backward=True)
    with tempfile.TemporaryDirectory() as work:
        data = generate(Path(work) / "clips", n_clips=96, seed=0, progress=False)
        dataset = ClipDataset.from_folder(data)
        shards = Path(work) / "shards"
        pack(dataset.clips, shards, dataset.label_set, shard_bytes=4 * 2**20, progress=False)
        variants = {"fp32 channels_last (default)": {}, "fp32 contiguous": {"channels_last": False},
                    "bf16 autocast": {"bf16": True}}
        if args.compile:
            variants["torch.compile"] = {"compile": True}
        results = {name: profile(shards, args.steps, args.batch, args.workers, device, **options)
                   for name, options in variants.items()}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} threads"
    print(f"training step, {MODEL} width {WIDTH}, batch {args.batch} x 10 s, {name}; "
          f"dense matmul {peak / 1e9:.1f} GFLOP/s; fwd+bwd {flops_per_clip / 1e9:.1f} GFLOP/clip")
    for name, r in results.items():
        achieved = r["step_clips_per_s"] * flops_per_clip
        print(f"  {name:30s} {r['clips_per_s']:5.2f} clips/s end to end  (step alone {r['step_clips_per_s']:5.2f}); "
              f"data wait {100 * r['data_share']:4.1f}%, front end {100 * r['frontend_share']:4.1f}%; "
              f"{achieved / 1e9:5.1f} GFLOP/s = {100 * achieved / peak:4.1f}% of matmul")
    one = ddp_rate(1, args.threads, args.steps, args.batch, args.width)
    two = ddp_rate(2, max(1, args.threads // 2), args.steps, args.batch // 2, args.width)
    efficiency = two / one
    print(f"  DDP (gloo, random waveforms, same global batch {args.batch}): 1 process x {args.threads} threads "
          f"{one:.2f} clips/s, 2 processes x {max(1, args.threads // 2)} thread {two:.2f} clips/s -> "
          f"scaling efficiency {100 * efficiency:.0f}% (the same cores split over processes)")
    if args.json is None:
        return
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "device": name, "model": MODEL, "width": WIDTH, "batch": args.batch,
        "matmul_gflops": peak / 1e9, "gflop_per_clip_fwd_bwd": flops_per_clip / 1e9,
        "variants": results, "ddp": {"one_process_clips_per_s": one, "two_processes_clips_per_s": two,
                                     "efficiency": efficiency},
        "clips_per_s": results["fp32 channels_last (default)"]["clips_per_s"]}, indent=2) + "\n")
    print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
