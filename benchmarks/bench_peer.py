"""Inference speed against what a user would otherwise pick: `resnet_b_att` (width 64, the paper's)
beside a CNN14-shaped network (PANNs, Kong et al. 2020), randomly initialised: a speed reference
only. Both run through the same `Tagger` (decode, log-mel front end, windows, batches of 8) on the
same input, each in its own process: a batch of 10 s clips, and a 30 min recording.

CNN14 is the package's own (`models/panns.py`, the family `import-panns` loads PANNs' checkpoints
into) with PANNs' front end (`features.LogMel` of kind "panns": 32 kHz, 1024-point STFT, hop 320,
64 Slaney mel bands 50–14,000 Hz): 80,753,615 parameters.

    python benchmarks/bench_peer.py [--minutes 30] [--threads 2] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from bench_infer import make_recording, peak_rss_kb

CNN14_PARAMETERS = 80_753_615  # the count of PANNs' released Cnn14


def build(name: str):
    """(model, front end) of a case, in eval mode, seeded."""
    from audioscene import models
    from audioscene.features import LogMel
    from audioscene.pretrained import CATALOGUE

    torch.manual_seed(0)
    if name == "cnn14":
        model = models.create("cnn14", n_classes=527).eval()
        assert sum(p.numel() for p in model.parameters()) == CNN14_PARAMETERS
        return model, LogMel(CATALOGUE["panns_cnn14"].frontend)
    return models.create("resnet_b_att", n_classes=527, width=64).eval(), LogMel()


def flops_per_clip(model, frontend) -> float:
    """Model FLOPs (2 per multiply-add) for one 10 s clip, counted by torch (the front end excluded)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = frontend.config
    logmel = torch.zeros(1, cfg.n_frames(10 * cfg.sample_rate), cfg.n_mels)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(logmel)
    return counter.get_total_flops()


def run_case(name: str, recording: Path, threads: int, batch: int) -> dict:
    from audioscene.infer import Tagger
    from audioscene.labels import audioset

    torch.set_num_threads(threads)
    model, frontend = build(name)
    tagger = Tagger([model], frontend, audioset(), device="cpu", batch_size=8)
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(10 * tagger.sample_rate)).astype(np.float32) for _ in range(batch)]
    tagger.tag(clips[0])  # warm-up
    start = time.perf_counter()
    for result in tagger.analyze_many(clips):
        assert not isinstance(result[1], Exception)
    batch_s = time.perf_counter() - start
    start = time.perf_counter()
    tagger.tag(recording, top_k=5)
    recording_s = time.perf_counter() - start
    return {"name": name, "clips_per_s": batch / batch_s, "recording_s": recording_s,
            "audio_s": sf.info(str(recording)).duration, "peak_rss_mb": peak_rss_kb() / 1024,
            "parameters": sum(p.numel() for p in model.parameters()), "gflops": flops_per_clip(model, frontend) / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16, help="10 s clips in the batch case")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: NAME:RECORDING
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds): checks the script runs")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.batch = 0.2, 1
    if args.case:
        name, recording = args.case.split(":", 1)
        print(json.dumps(run_case(name, Path(recording), args.threads, args.batch)))
        return
    with tempfile.TemporaryDirectory() as work:
        recording = Path(work) / "recording.wav"
        make_recording(recording, args.minutes)
        print(f"{args.batch} random 10 s clips (at each model's rate) and a {args.minutes:g} min recording (16 kHz; CNN14 resamples to "
              f"32 kHz), {args.threads} threads, windows of ~10 s in batches of 8, 527 classes, untrained weights")
        rows = {}
        for name in ("resnet_b_att", "cnn14"):
            out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--batch", str(args.batch),
                                  "--case", f"{name}:{recording}"], capture_output=True, text=True, check=True).stdout
            rows[name] = json.loads(out.strip().splitlines()[-1])
        ours, peer = rows["resnet_b_att"], rows["cnn14"]
        print(f"| model | clips/s (10 s) | real-time factor ({args.minutes:g} min) | peak RSS | parameters | "
              "GFLOPs per 10 s clip |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in (ours, peer):
            print(f"| {r['name']} | {r['clips_per_s']:.2f} | {r['audio_s'] / r['recording_s']:.1f}× | "
                  f"{r['peak_rss_mb']:.0f} MB | {r['parameters'] / 1e6:.1f} M | {r['gflops']:.1f} |")
        print(f"resnet_b_att vs CNN14: {ours['clips_per_s'] / peer['clips_per_s']:.2f}x the clips/s, "
              f"{peer['recording_s'] / ours['recording_s']:.2f}x the real-time factor, "
              f"{peer['gflops'] / ours['gflops']:.2f}x fewer FLOPs")


if __name__ == "__main__":
    main()
