"""The training recipe judged at a plateau on a hard proxy task: the paper recipe, the modern recipe,
the modern recipe without each of its ingredients (an ablation), and the modern recipe distilled
from a teacher trained on *other* clips than the student's.

The proxy is the synthetic generator made hard: 300 training clips at −5..5 dB SNR with up to 6
(often overlapping) events, a tune split and an eval split of 300 each (a fourth split of 600
clips trains the teacher). `resnet_b_att` of width 8, batch 16, lr 1e-3 (19 optimizer steps an
epoch), the same number of epochs for every arm. Every epoch is scored on the tune split (the
curves); at the end each run is scored on the eval split three ways: its last epoch's raw weights,
the epoch best on tune (the run's weights: the moving average when it keeps one), and the last
epoch's moving average; plus macro event F1 (0.2 s collar; thresholds and median kernels tuned
on the tune split) of the best-on-tune epoch. Runs are spread over `--processes` one-thread
processes (two fill 2 cores).

    python benchmarks/bench_recipe.py [--seeds 0 1] [--epochs 20] [--processes 2]
    python benchmarks/bench_recipe.py --long 60 --seeds 0   # paper and modern only, 60 epochs: where
                                                            # does the modern arm level off?
    python benchmarks/bench_recipe.py --quick   # seconds: tiny data, one arm, checks the script runs

Results: `benchmarks/results/bench_recipe.json` and the tune-mAP curves `bench_recipe.png`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"
INGREDIENTS: dict[str, dict] = {  # each ingredient of the modern recipe, as the paper recipe has it
    "input normalisation": dict(input_norm=False),
    "balanced sampling": dict(sampler="shuffle"),
    "mixup": dict(mixup_alpha=0.0),
    "SpecAugment": dict(spec_time_masks=0, spec_freq_masks=0),
    "schedule": dict(lr_schedule="constant", warmup_fraction=0.0),
    "EMA": dict(ema_decay=0.0),
}
ARMS: dict[str, dict] = {
    "paper": {},
    "modern": dict(recipe="modern"),
    **{f"modern - {name}": dict(recipe="modern", **off) for name, off in INGREDIENTS.items()},
    "modern + KD": dict(recipe="modern", kd_lambda=0.5),
}


def proxy_data(root: Path, n_clips: int) -> dict[str, Path]:
    from audioscene.data.synthetic import generate

    splits = (("train", 101, n_clips), ("tune", 102, n_clips), ("eval", 103, n_clips), ("teacher", 104, 2 * n_clips))
    return {name: generate(root / name, n_clips=n, seed=seed, snr_db=(-5.0, 5.0), max_events=6, progress=False)
            for name, seed, n in splits}


def evaluate(run: Path, data: dict[str, Path]) -> dict:
    """Eval-split scores of a finished run (see the module docstring) and its tune-mAP curve."""
    from audioscene.checkpoints import Checkpoint, Run, list_epochs
    from audioscene.data.folder import ClipDataset
    from audioscene.metrics import event_f1, summarize
    from audioscene.predictor import Predictor

    eval_set = ClipDataset.from_folder(data["eval"])
    last_path = list_epochs(run)[-1]
    last = Checkpoint.load(last_path)

    def eval_map(path: Path, state: Checkpoint, weights: str) -> float:
        model, frontend, _ = state.build(path, weights)
        return float(summarize(eval_set.targets, Predictor([model], frontend, "cpu").predict(
            eval_set, progress=False)["clipwise"])["mAP"])

    (best_path, _), = Run(run).best()
    result = {"curve": [row["mAP"] for row in last.history],
              "curve_raw": [row.get("raw_mAP", row["mAP"]) for row in last.history],
              "train_loss": [row["train_loss"] for row in last.history],
              "best_epoch": int(best_path.stem.split("_")[1]),
              "last": eval_map(last_path, last, "raw"),
              "best_on_tune": eval_map(best_path, Checkpoint.load(best_path), "auto"),
              "ema": eval_map(last_path, last, "ema") if last.ema else None}
    detected = detect_on_eval(run, best_path, data)
    result["event_F1"] = event_f1(detected.reference, detected.events, t_collar=0.2, labels=detected.labels).macro_f1
    return result


class Detected(NamedTuple):
    """A run's frame scores of the eval split (`analyses`), events with thresholds and median kernels
    tuned on the tune split (`events`, `tuning`), the eval split's reference events and the labels."""

    analyses: dict
    events: list
    tuning: object
    reference: list
    labels: tuple


def detect_on_eval(run: Path, checkpoint: Path, data: dict[str, Path]) -> Detected:
    from audioscene.events import read_events_tsv
    from audioscene.infer import Tagger, events_from_analysis
    from audioscene.sed import tune_on

    tagger = Tagger.from_run(run, checkpoint, device="cpu")
    analyses = {split: {p.name: a for p, a in tagger.analyze_many(sorted((data[split] / "audio").glob("*.flac")))}
                for split in ("tune", "eval")}
    reference = {split: read_events_tsv(data[split] / "strong.tsv") for split in ("tune", "eval")}
    tuning = tune_on(analyses["tune"], reference["tune"], tagger.frame_hop)
    events = [e for name, a in analyses["eval"].items() for e in events_from_analysis(a, name, tuning, tuning)]
    return Detected(analyses["eval"], events, tuning, reference["eval"], tagger.labels.names)


def train_teacher(job: tuple) -> dict:
    """Train the teacher on its own split, write its predictions on the training split, score it."""
    common, data, work = job
    torch.set_num_threads(1)
    from audioscene.config import TrainConfig
    from audioscene.distill import predict_to_file
    from audioscene.train import train

    run = train(TrainConfig(**{**common, "train_data": str(data["teacher"])}, out_dir=str(work / "teacher")),
                progress=False)
    predict_to_file([run], str(data["train"]), work / "teacher.npz", progress=False)
    return evaluate(run, data)


def run_arm(job: tuple) -> tuple[str, int, dict, float]:
    """Train and score one (arm, seed) in a one-thread process."""
    arm, seed, common, data, work = job
    torch.set_num_threads(1)
    from audioscene.config import TrainConfig
    from audioscene.train import train

    started = time.perf_counter()
    options = dict(ARMS[arm])
    if options.get("kd_lambda"):
        options["teacher"] = str(work / "teacher.npz")
    config = TrainConfig(**common, **options, seed=seed, out_dir=str(work / f"{arm.replace(' ', '_')}_{seed}"))
    result = evaluate(train(config, progress=False), data)
    return arm, seed, result, time.perf_counter() - started


def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for arm, runs in results.items():
        curves = np.array([r["curve"] for r in runs])
        style = "-" if arm in ("paper", "modern") else ":" if "KD" not in arm else "--"
        ax.plot(np.arange(1, curves.shape[1] + 1), curves.mean(axis=0), style, lw=2.2 if style == "-" else 1.3,
                label=arm)
    ax.set_xlabel("epoch (19 optimizer steps of 16 clips)")
    ax.set_ylabel("tune mAP (the run's weights; mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny data, the KD arm (and its teacher), 1 epoch: checks the script runs")
    parser.add_argument("--long", type=int, metavar="EPOCHS", help="only the paper and modern arms, this many epochs")
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_recipe.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n_clips, arms = (24, ["modern + KD"]) if args.quick else (300, ["paper", "modern"] if args.long else
                                                                         list(ARMS))
    epochs = 1 if args.quick else args.long or args.epochs
    if args.long and args.json == RESULTS / "bench_recipe.json":
        args.json = RESULTS / "bench_recipe_long.json"
    started = time.perf_counter()
    base = dict(model="resnet_b_att", model_args={"width": 8}, batch_size=16, lr=1e-3, epochs=epochs, device="cpu")
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        data = proxy_data(work / "data", n_clips)
        common = dict(train_data=str(data["train"]), eval_data=str(data["tune"]), **base)  # epochs watched on tune
        jobs = [(arm, seed, common, data, work) for seed in (args.seeds[:1] if args.quick else args.seeds)
                for arm in arms]
        with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
            # the teacher (the same model trained on twice as many clips the student never sees) trains beside the
            # first arms; the distilled arms start once its predictions on the student's clips exist
            distilled = [job for job in jobs if "KD" in job[0]]
            teacher_job = pool.apply_async(train_teacher, ((common, data, work),)) if distilled else None
            pending = [pool.apply_async(run_arm, (job,)) for job in jobs if job not in distilled]
            teacher_scores = teacher_job.get() if teacher_job else None
            if teacher_scores:
                print(f"teacher (width 8, paper recipe, {2 * n_clips} other clips, {epochs} epochs): eval mAP "
                      f"{teacher_scores['best_on_tune']:.3f} [{time.perf_counter() - started:.0f} s]", flush=True)
            pending += [pool.apply_async(run_arm, (job,)) for job in distilled]
            for job in pending:
                arm, seed, result, seconds = job.get()
                results[arm].append(result)
                print(f"seed {seed} {arm:30s} eval mAP last {result['last']:.3f}  best-on-tune "
                      f"{result['best_on_tune']:.3f} (epoch {result['best_epoch']})  event F1 "
                      f"{100 * result['event_F1']:5.1f} %  ({seconds:.0f} s) [{time.perf_counter() - started:.0f} s]",
                      flush=True)
    elapsed = time.perf_counter() - started
    summary = {}
    print(f"\nproxy: {n_clips} train clips, -5..5 dB, up to 6 events; resnet_b_att width 8, {epochs} epochs; "
          f"{len(args.seeds)} seeds, mean ± std; {elapsed / 60:.0f} min in all")
    print(f"{'arm':30s} {'last':>13s} {'best on tune':>13s} {'EMA':>13s} {'event F1 %':>13s} {'tune mAP by epoch (every 4th)'}")
    for arm, runs in results.items():
        table = {key: (float(np.mean([r[key] for r in runs])), float(np.std([r[key] for r in runs])))
                 for key in ("last", "best_on_tune", "event_F1")}
        emas = [r["ema"] for r in runs if r["ema"] is not None]
        table["ema"] = (float(np.mean(emas)), float(np.std(emas))) if emas else None
        table["curve"] = np.mean([r["curve"] for r in runs], axis=0).tolist()
        summary[arm] = table
        ema = f"{table['ema'][0]:.3f} ± {table['ema'][1]:.3f}" if table["ema"] else "-"
        print(f"{arm:30s} {table['last'][0]:.3f} ± {table['last'][1]:.3f} {table['best_on_tune'][0]:.3f} ± "
              f"{table['best_on_tune'][1]:.3f} {ema:>13s} {100 * table['event_F1'][0]:6.1f} ± "
              f"{100 * table['event_F1'][1]:4.1f}  " + " ".join(f"{v:.2f}" for v in table["curve"][3::4]))
    if args.quick:
        return
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"seeds": args.seeds, "epochs": epochs, "minutes": elapsed / 60,
                                     "teacher": teacher_scores, "arms": summary, "runs": results}, indent=2) + "\n")
    plot(results, args.json.with_suffix(".png"))
    print(f"figures written to {args.json} and {args.json.with_suffix('.png')}")


if __name__ == "__main__":
    main()
