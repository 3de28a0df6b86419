"""Inference speed against what a user would otherwise pick: `resnet_b_att` (width 64, the paper's)
beside a CNN14-shaped network (PANNs, Kong et al. 2020), randomly initialised: a speed reference
only. Both run through the same `Tagger` (decode, log-mel front end, windows, batches of 8) on the
same input, each in its own process: a batch of 10 s clips, and a 30 min recording.

CNN14 as published: 32 kHz input, 1024-point STFT with hop 320 (10 ms), 64 mel bins (50–14,000 Hz),
batch norm over the mel bins, six blocks of two 3×3 conv + BN + ReLU (64, 128, ..., 2048 channels)
with 2×2 average pooling after the first five, mean over frequency, max + mean over time, FC 2048
+ ReLU, FC 527 + sigmoid: 80,753,615 parameters. Its frame output (for `Tagger`) is the same two FC
layers applied to each of the 32-frame (0.32 s) steps.

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
from torch import nn

CNN14_PARAMETERS = 80_753_615  # the count of PANNs' released Cnn14
CNN14_FRONTEND = dict(sample_rate=32000, window_ms=32.0, hop_ms=10.0, n_fft=1024, n_mels=64, f_min=50.0,
                      f_max=14000.0)


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, pool: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(),
            nn.AvgPool2d(pool) if pool > 1 else nn.Identity())

    def forward(self, x):
        return self.layers(x)


class Cnn14(nn.Module):
    """Log-mel `[B, T, 64]` → `{"clipwise": [B, K], "framewise": [B, T/32, K]}` (see the module doc)."""

    frame_hop = 0.32  # 2^5 pooling in time × 10 ms
    input_kind = "logmel"  # what the model protocol (models.AudioModel) asks of a family
    normalises_input = True  # bn0
    min_frames = 32

    def __init__(self, n_classes: int = 527, n_mels: int = 64):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(n_mels)
        channels = (1, 64, 128, 256, 512, 1024, 2048)
        self.blocks = nn.Sequential(*(ConvBlock(a, b, 2 if i < 5 else 1)
                                      for i, (a, b) in enumerate(zip(channels, channels[1:]))))
        self.fc1 = nn.Linear(2048, 2048)
        self.fc_audioset = nn.Linear(2048, n_classes)

    def forward(self, logmel):
        x = self.bn0(logmel[:, None].transpose(1, 3)).transpose(1, 3)  # BN over mel bins: (B, 1, T, mel)
        frames = self.blocks(x).mean(dim=3)  # (B, 2048, T/32)
        pooled = frames.max(dim=2).values + frames.mean(dim=2)
        clipwise = torch.sigmoid(self.fc_audioset(torch.relu(self.fc1(pooled))))
        framewise = torch.sigmoid(self.fc_audioset(torch.relu(self.fc1(frames.transpose(1, 2)))))
        return {"clipwise": clipwise, "framewise": framewise}


def build(name: str):
    """(model, front end) of a case, in eval mode, seeded."""
    from audioscene import models
    from audioscene.features import FrontendConfig, LogMel

    torch.manual_seed(0)
    if name == "cnn14":
        model = Cnn14(n_classes=527).eval()
        assert sum(p.numel() for p in model.parameters()) == CNN14_PARAMETERS
        return model, LogMel(FrontendConfig(**CNN14_FRONTEND))
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
