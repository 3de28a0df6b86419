"""Does distillation from an ensemble pay off here? The paper's ResNet (`resnet_b_att`, width 8)
distilled from an ensemble of three runs of the modern recipe, against the same ResNet trained alone
(the ensemble's members), on the hard proxy of `bench_recipe.py` (300 training clips at −5..5 dB
with up to 6 overlapping events; tune and eval splits of 300), every run at a plateau.

1. Three members: the modern recipe, seeds 0, 1, 2, on the training split (epochs watched on tune).
2. Their ensemble's clip probabilities on the training split, stored once by `predict_to_file` as a
   teacher (CED's consistent ensemble distillation runs the teacher on each augmented input; with
   stored outputs the teacher saw the clean clip, mixup mixes the stored targets with the clips, and
   SpecAugment's masks are the student's alone).
3. Two students: the modern recipe plus `--teacher --kd-lambda 0.5` (seeds 10, 11), same epochs.

Each run is scored on the eval split (best-on-tune epoch, last epoch, event F1 at 0.2 s with tuned
thresholds), the ensemble too (the mean of its members' outputs). Curves: `bench_distill.png`.

    python benchmarks/bench_distill.py [--epochs 40] [--processes 2]
    python benchmarks/bench_distill.py --quick    # tiny data, 1 epoch: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_recipe import evaluate

RESULTS = Path(__file__).parent / "results"
KD_LAMBDA = 0.5


def proxy(root: Path, n_clips: int) -> dict[str, Path]:
    """The hard proxy's train, tune and eval splits (`bench_recipe.proxy_data`'s generator settings)."""
    from audioscene.data.synthetic import generate

    return {name: generate(root / name, n_clips=n_clips, seed=seed, snr_db=(-5.0, 5.0), max_events=6, progress=False)
            for name, seed in (("train", 101), ("tune", 102), ("eval", 103))}


def train_and_score(job: tuple) -> tuple[str, int, str, dict, float]:
    """Train one run in a one-thread process; its eval scores."""
    role, seed, common, options, data, work = job
    torch.set_num_threads(1)
    from audioscene.config import TrainConfig
    from audioscene.train import train

    started = time.perf_counter()
    run = train(TrainConfig(**common, **options, seed=seed, out_dir=str(work / f"{role}_{seed}")), progress=False)
    return role, seed, str(run), evaluate(run, data), time.perf_counter() - started


class InProcess:
    """A stand-in for the process pool that runs each job at once in this process (`--quick`)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def apply_async(self, function, args):
        result = function(*args)
        return type("Done", (), {"get": lambda self: result})()


def ensemble_scores(runs: list[str], data: dict[str, Path]) -> float:
    """Eval mAP of the mean of the members' outputs (each its best-on-tune checkpoint)."""
    from audioscene.checkpoints import ensemble
    from audioscene.data.folder import ClipDataset
    from audioscene.metrics import summarize
    from audioscene.predictor import Predictor

    members = ensemble(runs, "best", "auto")
    eval_set = ClipDataset.from_folder(data["eval"])
    clipwise = Predictor([m.model for m in members], [m.frontend for m in members], "cpu").predict(
        eval_set, progress=False)["clipwise"]
    return float(summarize(eval_set.targets, clipwise)["mAP"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny data, 1 epoch, 2 members, 1 student: checks the "
                                                             "script runs")
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_distill.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n_clips, epochs = (24, 1) if args.quick else (300, args.epochs)
    members_seeds, student_seeds = ((0, 1), (10,)) if args.quick else ((0, 1, 2), (10, 11))
    started = time.perf_counter()
    base = dict(model="resnet_b_att", model_args={"width": 8}, batch_size=16, lr=1e-3, epochs=epochs, device="cpu",
                recipe="modern")
    rows: dict[str, list] = {"member": [], "student": []}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        data = proxy(work / "data", n_clips)
        common = dict(train_data=str(data["train"]), eval_data=str(data["tune"]), **base)
        with (InProcess() if args.quick else multiprocessing.get_context("spawn").Pool(args.processes)) as pool:
            jobs = [pool.apply_async(train_and_score, (("member", seed, common, {}, data, work),))
                    for seed in members_seeds]
            for job in jobs:
                role, seed, run, scores, seconds = job.get()
                rows[role].append({"seed": seed, "run": run, **scores})
                print(f"member seed {seed}: eval mAP best-on-tune {scores['best_on_tune']:.3f} (epoch "
                      f"{scores['best_epoch']}), last {scores['last']:.3f}, event F1 {100 * scores['event_F1']:.1f} % "
                      f"({seconds:.0f} s) [{time.perf_counter() - started:.0f} s]", flush=True)
            from audioscene.distill import predict_to_file

            runs = [row["run"] for row in rows["member"]]
            teacher = predict_to_file(runs, str(data["train"]), work / "ensemble", progress=False)  # a store
            ensemble_map = ensemble_scores(runs, data)
            print(f"ensemble of the {len(runs)} members: eval mAP {ensemble_map:.3f}", flush=True)
            options = dict(teacher=str(teacher), kd_lambda=KD_LAMBDA)
            jobs = [pool.apply_async(train_and_score, (("student", seed, common, options, data, work),))
                    for seed in student_seeds]
            for job in jobs:
                role, seed, run, scores, seconds = job.get()
                rows[role].append({"seed": seed, **scores})
                print(f"student seed {seed}: eval mAP best-on-tune {scores['best_on_tune']:.3f} (epoch "
                      f"{scores['best_epoch']}), last {scores['last']:.3f}, event F1 {100 * scores['event_F1']:.1f} % "
                      f"({seconds:.0f} s) [{time.perf_counter() - started:.0f} s]", flush=True)
    summary = {role: {key: (float(np.mean([r[key] for r in runs])), float(np.std([r[key] for r in runs])))
                      for key in ("best_on_tune", "last", "event_F1")} for role, runs in rows.items()}
    print(f"\n{epochs} epochs, {time.perf_counter() - started:.0f} s; eval mAP best-on-tune / last, event F1 (mean ± std)")
    for role, table in summary.items():
        print(f"{role + 's':10} " + "  ".join(f"{key} {mean:.3f} ± {std:.3f}" for key, (mean, std) in table.items()))
    print(f"ensemble   best_on_tune {ensemble_map:.3f}")
    if args.quick:
        return
    args.json.parent.mkdir(parents=True, exist_ok=True)
    for row in rows["member"]:
        row.pop("run")
    args.json.write_text(json.dumps({"epochs": epochs, "kd_lambda": KD_LAMBDA, "ensemble_mAP": ensemble_map,
                                     "summary": summary, "runs": rows}, indent=2) + "\n")
    plot(rows, args.json.with_suffix(".png"))
    print(f"written to {args.json} and {args.json.with_suffix('.png')}")


def plot(rows: dict[str, list], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for role, style in (("member", "-"), ("student", "--")):
        for row in rows[role]:
            ax.plot(np.arange(1, len(row["curve"]) + 1), row["curve"], style, label=f"{role} seed {row['seed']}")
    ax.set_xlabel("epoch (19 optimizer steps of 16 clips)")
    ax.set_ylabel("tune mAP (the run's weights)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
