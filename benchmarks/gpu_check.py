"""The measurements of `gpu_check.sh` on one CUDA device, printed as a compact report (and JSON):

1. training steps of `resnet_b_att` width 64, batch 32, synthetic shards → 4 DataLoader workers →
   LogMel on the GPU: fp32 vs bf16 autocast (and torch.compile with --compile): clips/s, data wait,
   peak GPU memory, achieved TFLOP/s vs the card's bf16 dense matmul peak measured here;
2. the LogMel front end alone: clips/s on the GPU (batched) vs the CPU;
3. tagging a long recording on the GPU: real-time factor;
4. evaluation in fp32 vs bf16: max |Δ score| and Δ mAP on the same clips.

    python benchmarks/gpu_check.py [--steps 200] [--compile] [--json benchmarks/results/gpu_check.json]

`--device cpu --steps 2 --batch 2 --minutes 0.5` runs the same code on a CPU, to check the script
itself on a machine without a GPU (the figures then mean nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from bench_infer import make_recording
from bench_models import count_flops
from bench_train import MODEL, WIDTH, make_model, profile

from audioscene.data.folder import ClipDataset
from audioscene.data.store import pack
from audioscene.data.synthetic import generate
from audioscene.features import LogMel
from audioscene.infer import Tagger
from audioscene.labels import dcase2018
from audioscene.metrics import summarize
from audioscene.predictor import Predictor

DEVICE = torch.device("cuda")


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def matmul_tflops(dtype: torch.dtype, size: int = 8192, repeats: int = 30) -> float:
    if DEVICE.type != "cuda":
        size, repeats = 512, 3
    a, b = torch.randn(size, size, device=DEVICE, dtype=dtype), torch.randn(size, size, device=DEVICE, dtype=dtype)
    a @ b
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def training(shards: Path, steps: int, batch: int, compile: bool) -> dict:
    flops_per_clip = count_flops(make_model(False), torch.randn(1, 998, 64), backward=True)
    variants = {"fp32": {}, "bf16 autocast": {"bf16": True}}
    if compile:
        variants["bf16 + torch.compile"] = {"bf16": True, "compile": True}
    results = {}
    for name, options in variants.items():
        if DEVICE.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        r = profile(shards, steps, batch, workers=4, device=DEVICE, **options)
        r["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30 if DEVICE.type == "cuda" else float("nan")
        r["achieved_tflops"] = r["step_clips_per_s"] * flops_per_clip / 1e12
        results[name] = r
    return results


def frontend_rate(batch: int = 64, repeats: int = 10) -> dict:
    waves = torch.randn(batch, 160000) * 0.1
    rates = {}
    for name, device in (("gpu", DEVICE), ("cpu", torch.device("cpu"))):
        runs = repeats if device.type == "cuda" else 1
        frontend, x = LogMel().to(device), waves.to(device)
        with torch.no_grad():
            frontend(x)
            sync()
            start = time.perf_counter()
            for _ in range(runs):
                frontend(x)
            sync()
        rates[name] = batch * runs / (time.perf_counter() - start)
    return rates


def tagging_rtf(recording: Path) -> float:
    torch.manual_seed(0)
    model = make_model(False).eval()
    tagger = Tagger([model], LogMel(), dcase2018(), device=str(DEVICE), batch_size=32)
    tagger.tag(np.zeros(160000, np.float32))
    start = time.perf_counter()
    tagger.tag(recording)
    seconds = time.perf_counter() - start
    return sf.info(str(recording)).duration / seconds


def evaluation_precision(clips: Path) -> dict:
    dataset = ClipDataset.from_folder(clips)
    torch.manual_seed(0)
    model = make_model(False).eval()
    fp32 = Predictor([model], LogMel(), DEVICE).predict(dataset, progress=False)["clipwise"]
    bf16 = Predictor([model], LogMel(), DEVICE, amp=True).predict(dataset, progress=False)["clipwise"]
    return {"max_abs_diff": float(np.abs(fp32 - bf16).max()),
            "map_fp32": summarize(dataset.targets, fp32)["mAP"], "map_bf16": summarize(dataset.targets, bf16)["mAP"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the tagged recording")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu only checks the script itself")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "gpu_check.json")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return
    name = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu (script check only)"
    peak_bf16, peak_fp32 = matmul_tflops(torch.bfloat16), matmul_tflops(torch.float32)
    print(f"{name}: dense matmul {peak_bf16:.0f} TFLOP/s bf16, {peak_fp32:.0f} TFLOP/s fp32 (measured)", flush=True)
    report = {"device": name, "matmul_tflops": {"bf16": peak_bf16, "fp32": peak_fp32}}
    with tempfile.TemporaryDirectory() as work:
        clips = generate(Path(work) / "clips", n_clips=512 if DEVICE.type == "cuda" else 16, seed=0, progress=False)
        dataset = ClipDataset.from_folder(clips)
        shards = Path(work) / "shards"
        pack(dataset.clips, shards, dataset.label_set, shard_bytes=32 * 2**20, progress=False)
        # the shards hold 512 clips; profile() cycles through a fresh loader for as many steps as asked
        report["training"] = training(shards, args.steps, args.batch, args.compile)
        print(f"training, {MODEL} width {WIDTH}, batch {args.batch} x 10 s, {args.steps} steps:")
        for variant, r in report["training"].items():
            print(f"  {variant:22s} {r['clips_per_s']:7.1f} clips/s (step alone {r['step_clips_per_s']:7.1f}), data "
                  f"wait {100 * r['data_share']:4.1f}%, front end {100 * r['frontend_share']:4.1f}%, peak memory "
                  f"{r['peak_memory_gb']:.1f} GB, {r['achieved_tflops']:.1f} TFLOP/s = "
                  f"{100 * r['achieved_tflops'] / peak_bf16:.0f}% of bf16 matmul", flush=True)
        report["frontend_clips_per_s"] = rates = frontend_rate()
        print(f"LogMel front end: {rates['gpu']:.0f} clips/s on the GPU, {rates['cpu']:.0f} on the CPU "
              f"({rates['gpu'] / rates['cpu']:.0f}x)", flush=True)
        recording = Path(work) / "recording.wav"
        make_recording(recording, args.minutes)
        report["tagging_real_time_factor"] = rtf = tagging_rtf(recording)
        print(f"tagging a {args.minutes:g} min recording: {rtf:.0f}x real time", flush=True)
        report["evaluation"] = e = evaluation_precision(clips)
        print(f"evaluation on {len(dataset)} clips, fp32 vs bf16: max |score difference| {e['max_abs_diff']:.1e}, "
              f"mAP {e['map_fp32']:.4f} vs {e['map_bf16']:.4f} (delta {e['map_bf16'] - e['map_fp32']:+.4f})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"figures written to {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
