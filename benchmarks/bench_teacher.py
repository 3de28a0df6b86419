"""Teacher stores at AudioSet scale on this machine (`teacher_store.py`):

1. a synthetic teacher of `--keys` (default 2 M) clips × 527 labels written as `predict` writes one
   (parts of 8192 clips, then the merge): size on disk, write time;
2. per-batch lookup time (32 random keys → float32 targets) against a training step of the paper's
   ResNet (`resnet_b_att`, width 64, batch 32 of 10 s clips, measured here on the CPU), and the
   resident memory of a process holding the store open after 2000 lookups, for 200 k and for 2 M
   clips (each in its own process): private (anonymous) memory and mapped file pages apart;
3. the distillation loss with float16 targets against float32 ones, on targets shaped like
   AudioSet's (mostly near 0);
4. `predict`'s clips/s into a store on 1 process vs 2 (as torchrun starts them: RANK, WORLD_SIZE;
   no process group needed), the same data, one thread each.

    python benchmarks/bench_teacher.py [--keys 2000000] [--quick]
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

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"
LABELS = 527
PART = 8192


def audioset_like(rng: np.random.Generator, n: int) -> np.ndarray:
    """Probabilities shaped like an AudioSet tagger's: most near 0, a few confident labels per clip."""
    probs = rng.random((n, LABELS), dtype=np.float32) ** 12  # median 0.003, 5 % above 0.65
    hits = rng.random((n, LABELS), dtype=np.float32) < 3 / LABELS
    probs[hits] = 0.6 + 0.4 * rng.random(int(hits.sum()), dtype=np.float32)
    return probs


def write_store(folder: Path, n: int) -> dict:
    from audioscene.teacher_store import merge, write_part

    rng = np.random.default_rng(0)
    started = time.perf_counter()
    parts = -(-n // PART)
    for i in range(parts):
        lo, hi = i * PART, min((i + 1) * PART, n)
        write_part(folder, i, [f"Y{k:011d}_{k % 997:03d}" for k in range(lo, hi)], audioset_like(rng, hi - lo))
    written = time.perf_counter() - started
    merge(folder, parts, [f"label {k}" for k in range(LABELS)], data="synthetic")
    size = sum(f.stat().st_size for f in folder.iterdir())
    return {"keys": n, "bytes": size, "gb": size / 1e9, "parts_s": written, "total_s": time.perf_counter() - started}


def memory() -> dict:
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("RssAnon", "RssFile", "VmRSS")):
                name, value = line.split(":")
                fields[name] = int(value.split()[0]) / 1024
    return fields


def lookups(folder: str, n_batches: int) -> dict:
    """In this process: open the store (checked), look up random batches; time and memory."""
    from audioscene.distill import Teacher
    from audioscene.labels import LabelSet

    before = memory()
    started = time.perf_counter()
    teacher = Teacher(folder, LabelSet(tuple(f"label {k}" for k in range(LABELS))))
    opened = time.perf_counter() - started
    n = teacher.store.n
    rng = np.random.default_rng(1)
    batches = [[f"Y{k:011d}_{k % 997:03d}" for k in rng.integers(0, n, 32)] for _ in range(n_batches)]
    started = time.perf_counter()
    for keys in batches:
        teacher.targets(keys)
    per_batch = (time.perf_counter() - started) / n_batches
    return {"keys": n, "open_and_verify_s": opened, "lookup_ms": 1000 * per_batch, "before_mb": before,
            "after_mb": memory()}


def training_step_s() -> float:
    """One optimizer step of resnet_b_att (width 64), batch 32 of 10 s clips, on this CPU."""
    from audioscene.config import TrainConfig
    from audioscene.labels import audioset
    from audioscene.batches import MicroBatch
    from audioscene.train import build_learner, train_step

    torch.manual_seed(0)
    learner = build_learner(TrainConfig(model="resnet_b_att", device="cpu", amp=False), audioset())
    batch = MicroBatch(0.1 * torch.randn(32, 160000), (torch.rand(32, LABELS) < 0.01).float(), 1.0)
    train_step(learner, batch)  # warm-up
    started = time.perf_counter()
    train_step(learner, batch)
    return time.perf_counter() - started


def loss_change(n: int = 20000) -> dict:
    """BCE(student, float16 targets) − BCE(student, float32 targets), per 32-clip batch."""
    rng = np.random.default_rng(2)
    targets = audioset_like(rng, n)
    student = np.clip(targets + rng.normal(0, 0.05, targets.shape), 1e-4, 1 - 1e-4).astype(np.float32)
    full, half = torch.from_numpy(targets), torch.from_numpy(targets.astype(np.float16).astype(np.float32))
    p = torch.from_numpy(student)
    bce = torch.nn.functional.binary_cross_entropy
    per_batch = [(float(bce(p[i:i + 32], half[i:i + 32])), float(bce(p[i:i + 32], full[i:i + 32])))
                 for i in range(0, n, 32)]
    diffs = np.array([a - b for a, b in per_batch])
    losses = np.array([b for _, b in per_batch])
    return {"max_abs_target_error": float((half - full).abs().max()), "loss_mean": float(losses.mean()),
            "loss_change_max_abs": float(np.abs(diffs).max()), "loss_change_mean_abs": float(np.abs(diffs).mean()),
            "relative": float(np.abs(diffs).max() / losses.mean())}


def predict_speed(work: Path, n_clips: int, counts: tuple[int, ...] = (1, 2)) -> dict:
    """clips/s of `predict` into a store on 1 process vs 2, the same data, one thread each."""
    from audioscene import models
    from audioscene.data.synthetic import generate
    from audioscene.pretrained import import_release

    clips = generate(work / "clips", n_clips=n_clips, seed=3, progress=False) / "audio"
    labels = work / "labels.csv"  # AudioSet's names, as the 527-label teacher reads them
    labels.write_text("filename,labels\n" + "".join(f"{p.name},Speech\n" for p in sorted(clips.glob("*.flac"))))
    torch.manual_seed(0)
    torch.save(models.create("efficientat_mn04").state_dict(), work / "mn04.pt")
    run = import_release(work / "mn04.pt", "efficientat_mn04_as", work / "run").parent
    result = {}
    for processes in counts:
        out = work / f"teacher_{processes}"
        command = [sys.executable, "-m", "audioscene", "predict", "--run", str(run), "--data", f"folder:{clips}",
                   "--labels", str(labels), "-o", str(out), "--part-clips", "16", "--device", "cpu", "--batch-size", "8"]
        started = time.perf_counter()
        ranks = [subprocess.Popen(command, env={**os.environ, "RANK": str(r), "WORLD_SIZE": str(processes),
                                                "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for r in range(processes)]
        for rank in ranks:
            _, err = rank.communicate(timeout=1800)
            assert rank.returncode == 0, err[-2000:]
        result[f"{processes}_processes_clips_per_s"] = n_clips / (time.perf_counter() - started)
    if len(counts) == 2:
        result["speedup"] = result["2_processes_clips_per_s"] / result["1_processes_clips_per_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=2_000_000)
    parser.add_argument("--quick", action="store_true", help="20 k keys, 8 clips: checks the script runs")
    parser.add_argument("--lookup", help=argparse.SUPPRESS)  # a store to open in this process (JSON out)
    parser.add_argument("--predict-only", action="store_true", help="only part 4 (merged into the JSON)")
    parser.add_argument("--skip-predict", action="store_true", help="parts 1-3 only")
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_teacher.json")
    args = parser.parse_args()
    if args.lookup:
        print(json.dumps(lookups(args.lookup, 2000)))
        return
    torch.set_num_threads(2)
    sizes = [] if args.predict_only else [20_000] if args.quick else [200_000, args.keys]
    result = json.loads(args.json.read_text()) if args.predict_only and args.json.is_file() else {"stores": [],
                                                                                                 "lookups": []}
    with tempfile.TemporaryDirectory(dir=Path.home() if not args.quick else None) as work:
        work = Path(work)
        for n in sizes:
            written = write_store(work / f"store_{n}", n)
            result["stores"].append(written)
            print(f"store of {n} clips: {written['gb']:.2f} GB, written in {written['total_s']:.1f} s "
                  f"(parts {written['parts_s']:.1f} s, merge {written['total_s'] - written['parts_s']:.1f} s)", flush=True)
            out = subprocess.run([sys.executable, __file__, "--lookup", str(work / f"store_{n}")], capture_output=True,
                                 text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            result["lookups"].append(row)
            print(f"  opened and checked in {row['open_and_verify_s']:.1f} s; lookup of 32 keys {row['lookup_ms']:.2f} ms;"
                  f" private memory {row['before_mb']['RssAnon']:.0f} -> {row['after_mb']['RssAnon']:.0f} MB, mapped "
                  f"file pages {row['after_mb']['RssFile']:.0f} MB", flush=True)
            for name in ("probs.npy", "keys.npy", "order.npy"):
                (work / f"store_{n}" / name).unlink()
        if not args.predict_only:
            step = training_step_s() if not args.quick else float("nan")
            result["training_step_s"] = step
            lookup_s = result["lookups"][-1]["lookup_ms"] / 1000
            print(f"training step of resnet_b_att (width 64, batch 32) on this CPU: {step:.2f} s; a lookup is "
                  f"{100 * lookup_s / step:.4f} % of it ({100 * lookup_s / 0.1:.2f} % of a 0.1 s GPU step)", flush=True)
            result["loss_change"] = loss_change(2000 if args.quick else 20000)
            print("float16 targets vs float32: " + json.dumps(result["loss_change"]), flush=True)
        if not args.skip_predict:
            result["predict"] = predict_speed(work, 8, (2,)) if args.quick else predict_speed(work, 96)
            print("predict into a store: " + json.dumps(result["predict"]), flush=True)
    if not args.quick:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
