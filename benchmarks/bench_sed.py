"""Event-based F1 speed: `audioscene.sed.event_f1` vs sed_eval 0.2.1's `EventBasedMetrics` on
10,000 files × ~5 reference events over 10 classes (estimates: jittered, split, relabelled and
spurious events); prints both times, the ratio and whether every number agrees exactly.

    python benchmarks/bench_sed.py [--files 10000]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from audioscene.events import Event
from audioscene.metrics import event_f1

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import sed_eval

LABELS = [f"class_{k}" for k in range(10)]


def make_events(n_files: int, seed: int = 0) -> tuple[list[Event], list[Event]]:
    rng = np.random.default_rng(seed)
    reference, estimated = [], []
    for f in range(n_files):
        name = f"clip_{f:05d}.wav"
        for _ in range(rng.poisson(5)):
            label = LABELS[rng.integers(len(LABELS))]
            onset = round(rng.uniform(0, 9), 2)
            offset = round(min(10.0, onset + rng.exponential(1.5)), 2)
            reference.append(Event(name, onset, offset, label))
            action = rng.random()
            if action < 0.6:
                jitter = rng.normal(0, 0.2, 2)
                estimated.append(Event(name, max(0.0, round(onset + jitter[0], 2)),
                                       max(0.0, round(offset + jitter[1], 2)), label))
            elif action < 0.7:
                middle = round((onset + offset) / 2, 2)
                estimated += [Event(name, onset, middle, label), Event(name, middle, offset, label)]
            elif action < 0.8:
                estimated.append(Event(name, onset, offset, LABELS[rng.integers(len(LABELS))]))
        for _ in range(rng.poisson(1)):
            onset = round(rng.uniform(0, 9), 2)
            estimated.append(Event(name, onset, round(onset + rng.uniform(0.1, 1), 2), LABELS[rng.integers(len(LABELS))]))
    return reference, [e for e in estimated if e.offset >= e.onset]


def with_sed_eval(reference: list[Event], estimated: list[Event], t_collar: float) -> dict:
    metric = sed_eval.sound_event.EventBasedMetrics(LABELS, t_collar=t_collar, percentage_of_length=0.2,
                                                    empty_system_output_handling="zero_score")
    by_file: dict[str, tuple[list, list]] = {}
    for events, side in ((reference, 0), (estimated, 1)):
        for e in events:
            by_file.setdefault(e.filename, ([], []))[side].append(
                {"filename": e.filename, "onset": e.onset, "offset": e.offset, "event_label": e.label})
    for ref, est in by_file.values():
        metric.evaluate(ref, est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return metric.results()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds): checks the script runs")
    args = parser.parse_args()
    if args.quick:
        args.files = 50
    reference, estimated = make_events(args.files)
    print(f"event-based F1, {args.files} files, {len(reference)} reference / {len(estimated)} estimated events, "
          f"{len(LABELS)} classes")
    for t_collar in (0.2, 0.4):
        ours_s = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            ours = event_f1(reference, estimated, t_collar=t_collar, labels=LABELS)
            ours_s = min(ours_s, time.perf_counter() - start)
        start = time.perf_counter()
        theirs = with_sed_eval(reference, estimated, t_collar)
        theirs_s = time.perf_counter() - start
        same = (list(ours.f1) == [theirs["class_wise"][c]["f_measure"]["f_measure"] for c in LABELS]
                and ours.micro_f1 == theirs["overall"]["f_measure"]["f_measure"]
                and ours.macro_f1 == theirs["class_wise_average"]["f_measure"]["f_measure"])
        print(f"collar {t_collar} s: audioscene {ours_s:.3f} s, sed_eval {theirs_s:.1f} s -> "
              f"{theirs_s / ours_s:.0f}x faster; macro F1 {ours.macro_f1:.4f} / {theirs['class_wise_average']['f_measure']['f_measure']:.4f}, "
              f"micro F1 {ours.micro_f1:.4f}; identical: {same}")


if __name__ == "__main__":
    main()
