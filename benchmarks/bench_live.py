"""Live detection's latency on this CPU: a synthetic stream with known event times (loud noise bursts
in quiet noise) fed at real-time pace, in 0.1 s blocks, through `live.run_live` as `listen` runs it.
The scores come from `tests/helpers.py`'s `LoudnessDetector` (known answers: each 0.32 s frame's
loudness), which also runs a real model of the zoo on every window and ignores its output, so each
window costs that model's compute (seeded weights: their scores would decide nothing).

Per arm: the onset lines' latency (clock time of the line − clock time the burst's first sample was
played), the event lines' latency after each burst's end, the windows dropped, the mean compute per
window; beside the bound of `live.py` (hop + the frame the onset falls in + the window's incomplete
last frame + a block). The last arm steps windows faster than the model can run them, to show that
windows are dropped and counted instead of the stream falling behind.

    python benchmarks/bench_live.py [--seconds 60] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from helpers import LoudnessDetector, noise_bursts  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BLOCK_S = 0.1


def bursts_for(seconds: float) -> list[tuple[float, float]]:
    """A burst of 0.8–3 s every ~9 s, starting at 11.3 s (after the first window)."""
    rng = np.random.default_rng(5)
    out, t = [], 11.3
    while t + 3.5 < seconds:
        length = float(rng.uniform(0.8, 3.0))
        out.append((round(t, 2), round(t + length, 2)))
        t += length + float(rng.uniform(5.0, 8.0))
    return out


def arm(name: str, burn: str | None, hop_s: float, seconds: float, pace: float = 1.0) -> dict:
    """One arm, its stream played `pace` times faster than real time (1: real time)."""
    from audioscene import models
    from audioscene.features import LogMel
    from audioscene.infer import Tagger
    from audioscene.labels import LabelSet
    from audioscene.live import LiveStream, run_live

    burner = None
    if burn:
        torch.manual_seed(0)
        burner = models.create(burn).eval()
    detector = LoudnessDetector(burn=burner)
    tagger = Tagger([detector], LogMel(), LabelSet(("burst",)), device="cpu", hop_s=hop_s)
    bursts = bursts_for(seconds)
    wave = noise_bursts(seconds, bursts)
    stream = LiveStream(tagger, median=3, onsets=True)
    computes = []
    stream.watchers.append(lambda *args: computes.append(time.perf_counter()))
    lines: list = []
    block = int(BLOCK_S * 16000)
    began = time.time()

    def played():  # the blocks at the pace a sound card delivers them
        for i, start in enumerate(range(0, len(wave), block)):
            delay = began + (i + 1) * BLOCK_S / pace - time.time()
            if delay > 0:
                time.sleep(delay)
            yield wave[start:start + block]

    run_live(stream, played(), lines.append, realtime=True, source=name)
    onsets = [line for line in lines if line.kind == "onset"]
    events = [line for line in lines if line.kind == "event"]
    onset_latency, event_latency = [], []
    for onset, offset in bursts:
        said = [line for line in onsets if abs(line.onset - onset) <= 0.64]
        closed = [line for line in events if abs(line.onset - onset) <= 0.64]
        if said:
            onset_latency.append((said[0].wall - began) * pace - onset)
        if closed:
            event_latency.append((closed[0].wall - began) * pace - offset)
    hop = tagger.hop_s
    return {"arm": name, "burn_model": burn, "hop_s": hop, "bursts": len(bursts), "onset_lines": len(onsets),
            "event_lines": len(events), "dropped_windows": stream.dropped, "windows": len(computes),
            "onset_latency_mean_s": float(np.mean(onset_latency)) if onset_latency else None,
            "onset_latency_max_s": float(np.max(onset_latency)) if onset_latency else None,
            "bound_s": hop + 2 * tagger.frame_hop + BLOCK_S,
            "event_latency_after_offset_mean_s": float(np.mean(event_latency)) if event_latency else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="15.5 s played 8x faster, the stand-in model alone (a check "
                                                             "that it runs)")
    parser.add_argument("--arms", type=int, nargs="+", help="run only these arms (0, 1, 2)")
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_live.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    arms = [("stand-in alone, hop 1 s", None, 1.0)] if args.quick else [
        ("stand-in alone, hop 1 s", None, 1.0),
        ("+ CED-Tiny compute, hop 1 s", "ced_tiny", 1.0),
        ("+ CED-Base compute, hop 0.32 s (too fast for it)", "ced_base", 0.32)]
    if args.arms:
        arms = [arms[i] for i in args.arms]
    seconds = 15.5 if args.quick else args.seconds
    rows = []
    for name, burn, hop in arms:
        rows.append(arm(name, burn, hop, seconds, pace=8.0 if args.quick else 1.0))
        row = rows[-1]
        print(f"{name:50} onsets {row['onset_lines']}/{row['bursts']}, latency mean "
              f"{row['onset_latency_mean_s'] or float('nan'):.2f} s, max {row['onset_latency_max_s'] or float('nan'):.2f} s "
              f"(bound {row['bound_s']:.2f} s + compute); event lines {row['event_lines']}, "
              f"{row['event_latency_after_offset_mean_s'] or float('nan'):.1f} s after the offset; dropped "
              f"{row['dropped_windows']} of {row['dropped_windows'] + row['windows']} windows", flush=True)
    if not args.quick:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seconds": seconds, "threads": args.threads, "arms": rows}, indent=2) + "\n")
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
