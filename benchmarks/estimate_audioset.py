"""Cost model for the paper's run: 1,953,082 AudioSet clips × 50 epochs on 1, 8 and 32 devices.

Throughput on N devices = N × (measured clips/s of one device) × e^log2(N), where e is the measured
DDP scaling efficiency from 1 to 2 processes (each doubling assumed to lose the same share; on
one machine's shared cores this is an optimistic stand-in for network all-reduce). The figures come
from `bench_train.py`'s JSON, or from flags for a device measured elsewhere (e.g. a GPU).

    python benchmarks/estimate_audioset.py [--from benchmarks/results/bench_train.json]
    python benchmarks/estimate_audioset.py --clips-per-s 900 --efficiency 0.92 --device "H100 (measured elsewhere)"
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

CLIPS, EPOCHS = 1_953_082, 50
DEVICES = (1, 8, 32)


def estimate(clips_per_s: float, efficiency: float, devices: int) -> tuple[float, float]:
    """(wall-clock hours, device-hours) for CLIPS × EPOCHS."""
    throughput = devices * clips_per_s * efficiency ** math.log2(devices)
    hours = CLIPS * EPOCHS / throughput / 3600
    return hours, hours * devices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path,
                        default=Path(__file__).parent / "results" / "bench_train.json")
    parser.add_argument("--clips-per-s", type=float, help="one device's training clips/s (overrides the JSON)")
    parser.add_argument("--efficiency", type=float, help="DDP scaling efficiency 1 -> 2 devices (overrides)")
    parser.add_argument("--device", help="name of the device measured")
    args = parser.parse_args()
    measured = json.loads(args.source.read_text()) if args.source.is_file() else {}
    clips_per_s = args.clips_per_s or measured.get("clips_per_s")
    efficiency = min(1.0, args.efficiency or measured.get("ddp", {}).get("efficiency", 0.9))
    if not clips_per_s:
        raise SystemExit("no measured throughput: run benchmarks/bench_train.py or pass --clips-per-s")
    device = args.device or measured.get("device", "?")
    print(f"paper's run: {CLIPS:,} clips x {EPOCHS} epochs = {CLIPS * EPOCHS:,} clip-steps; "
          f"{measured.get('model', 'resnet_b_att')} width {measured.get('width', 64)}")
    print(f"one device ({device}): {clips_per_s:.2f} clips/s; DDP efficiency per doubling: {100 * efficiency:.0f}%\n")
    print("| devices | clips/s | wall clock | device-hours |")
    print("|---:|---:|---:|---:|")
    for n in DEVICES:
        hours, device_hours = estimate(clips_per_s, efficiency, n)
        wall = f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"
        print(f"| {n} | {n * clips_per_s * efficiency ** math.log2(n):,.1f} | {wall} | {device_hours:,.0f} |")


if __name__ == "__main__":
    main()
