"""Detection beyond weak labels, on the hard proxy of `bench_recipe.py` (300 training clips at −5..5
dB, up to 6 overlapping events; tune and eval splits of 300): weak labels only; + strong labels on
20 % and on 100 % of the training clips; a mean teacher with 80 % of the clips unlabelled (the other
20 % weakly labelled; half of each batch unlabelled) beside the same 20 % alone; each on the paper's
0.32 s output grid and on a 0.08 s grid (`time_stride` 8). `resnet_b_att` width 8, paper recipe,
batch 16, lr 1e-3; `--epochs` for the arms on all clips, `--labelled-epochs` for the two arms on
20 % of them (an epoch passes once over the labelled clips: 60 clips need more passes to plateau).

Each run is scored on the eval split at its epoch best on tune (its weights: the teacher for the
mean-teacher arms): tagging mAP, macro event F1 at 0.2 s and 0.4 s collars (thresholds and median
kernels tuned on tune), PSDS1 and PSDS2. Runs are spread over `--processes` one-thread processes.
Results accumulate in the JSON by (arm, grid, seed): a later call with `--arms`/`--grids`/`--seeds`
adds or replaces those runs only, and the table shows every run stored.

    python benchmarks/bench_detection.py [--seeds 0 1] [--epochs 15] [--labelled-epochs 60] [--processes 2]
    python benchmarks/bench_detection.py --arms "mean teacher, 80% unlabelled" --grids "0.08 s" --seeds 1
    python benchmarks/bench_detection.py --quick   # tiny data, one arm: checks the script runs

Results: `benchmarks/results/bench_detection.json` and the tune-mAP curves `bench_detection.png`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_recipe import RESULTS, detect_on_eval, proxy_data

SUPERVISION = ("weak", "strong 20%", "strong 100%", "weak, 20% labelled only", "mean teacher, 80% unlabelled")
LABELLED_20 = SUPERVISION[3:]  # the arms trained on the labelled fifth: `--labelled-epochs`
GRIDS = {"0.32 s": 32, "0.08 s": 8}


def subsets(data: dict[str, Path], work: Path) -> dict[str, Path]:
    """A fifth of the training clips (every class among them: the labelled part defines the label
    set) as strongly labelled clips (a TSV) and as weakly labelled data, with the other 80 % of the
    audio as unlabelled data."""
    train = data["train"]
    rows = (train / "weak.csv").read_text().splitlines()
    labels = {row.split(",")[0]: set(row.split(",", 1)[1].split(";")) - {""} for row in rows[1:]}
    names, chosen, covered = list(labels), set(), set()
    for name in names:  # first a clip for each class not yet covered, then the first clips
        if labels[name] - covered:
            chosen.add(name)
            covered |= labels[name]
    chosen |= set([n for n in names if n not in chosen][:max(0, len(names) // 5 - len(chosen))])
    strong = (train / "strong.tsv").read_text().splitlines()
    (work / "strong20.tsv").write_text("\n".join([strong[0], *(s for s in strong[1:] if s.split("\t")[0] in chosen)])
                                       + "\n")
    labelled, unlabelled = work / "train20", work / "unlabelled80"
    for folder in (labelled / "audio", unlabelled / "audio"):
        folder.mkdir(parents=True)
    for name in names:
        (labelled if name in chosen else unlabelled).joinpath("audio", name).symlink_to(train / "audio" / name)
    (labelled / "weak.csv").write_text("\n".join([rows[0], *(r for r in rows[1:] if r.split(",")[0] in chosen)]) + "\n")
    return {"strong20": work / "strong20.tsv", "train20": labelled, "unlabelled80": unlabelled}


def arm_options(supervision: str, data: dict[str, Path], parts: dict[str, Path]) -> dict:
    return {"weak": {},
            "strong 20%": dict(strong_labels=str(parts["strong20"])),
            "strong 100%": dict(strong_labels=str(data["train"] / "strong.tsv")),
            "weak, 20% labelled only": dict(train_data=str(parts["train20"])),  # the mean teacher's fair baseline
            "mean teacher, 80% unlabelled": dict(train_data=str(parts["train20"]),
                                                 unlabelled_data=str(parts["unlabelled80"]), consistency_weight=2.0,
                                                 ema_decay=0.99)}[supervision]


def evaluate(run: Path, data: dict[str, Path]) -> dict:
    from audioscene.checkpoints import Checkpoint, Run, list_epochs
    from audioscene.data.folder import ClipDataset
    from audioscene.infer import events_from_analysis
    from audioscene.metrics import event_f1, summarize
    from audioscene.metrics.psds import PSDS1, PSDS2, psds
    from audioscene.predictor import Predictor
    from audioscene.metrics.detection import PSDS_THRESHOLDS

    (best_path, _), = Run(run).best()
    model, frontend, _ = Checkpoint.load(best_path).build(best_path)
    eval_set = ClipDataset.from_folder(data["eval"])
    history = Checkpoint.load(list_epochs(run)[-1]).history
    result = {"curve": [row["mAP"] for row in history], "best_epoch": int(best_path.stem.split("_")[1]),
              "mAP": float(summarize(eval_set.targets, Predictor([model], frontend, "cpu").predict(
                  eval_set, progress=False)["clipwise"])["mAP"])}
    detected = detect_on_eval(run, best_path, data)
    for collar in (0.2, 0.4):
        result[f"event_F1_{collar}"] = event_f1(detected.reference, detected.events, t_collar=collar,
                                                labels=detected.labels).macro_f1
    points = [[e for name, a in detected.analyses.items() for e in events_from_analysis(a, name, t, detected.tuning)]
              for t in PSDS_THRESHOLDS]
    durations = {name: a.duration for name, a in detected.analyses.items()}
    result["PSDS1"], result["PSDS2"] = (psds(detected.reference, points, durations, detected.labels, **setting)
                                        for setting in (PSDS1, PSDS2))
    return result


def run_arm(job: tuple) -> tuple[str, str, int, dict, float]:
    supervision, grid, seed, common, data, parts, work = job
    torch.set_num_threads(1)
    from audioscene.config import TrainConfig
    from audioscene.train import train

    started = time.perf_counter()
    name = f"{supervision}_{grid}_{seed}".replace(" ", "_").replace(",", "").replace("%", "")
    values = {**common, **arm_options(supervision, data, parts), "seed": seed, "out_dir": str(work / name),
              "model_args": {**common["model_args"], "time_stride": GRIDS[grid]}}
    labelled_epochs = values.pop("labelled_epochs")
    if supervision in LABELLED_20:
        values["epochs"] = labelled_epochs
    config = TrainConfig(**values)
    result = {"epochs": config.epochs, **evaluate(train(config, progress=False), data)}
    return supervision, grid, seed, result, time.perf_counter() - started


def stored_results() -> dict[str, list[dict]]:
    path = RESULTS / "bench_detection.json"
    return json.loads(path.read_text())["results"] if path.is_file() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--labelled-epochs", type=int, default=60)
    parser.add_argument("--arms", nargs="+", default=list(SUPERVISION), choices=SUPERVISION, metavar="ARM",
                        help=f"arms to run, of: {'; '.join(SUPERVISION)}")
    parser.add_argument("--grids", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    supervisions = [s for s in SUPERVISION if s in args.arms]
    if args.quick:
        args.seeds, args.epochs, args.labelled_epochs, args.clips, args.processes = [0], 1, 1, 30, 1
        supervisions, args.grids = ("mean teacher, 80% unlabelled",), ["0.08 s"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        data = proxy_data(work / "data", args.clips)
        shutil.rmtree(data.pop("teacher"))
        parts = subsets(data, work)
        common = dict(train_data=str(data["train"]), eval_data=str(data["tune"]), model="resnet_b_att",
                      model_args={"width": 8}, batch_size=16, lr=1e-3, epochs=args.epochs,
                      labelled_epochs=args.labelled_epochs, device="cpu")
        jobs = [(s, g, seed, common, data, parts, work) for seed in args.seeds for s in supervisions for g in args.grids]
        jobs.sort(key=lambda job: job[0] not in LABELLED_20)  # the longest runs first
        with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
            done = pool.map(run_arm, jobs, chunksize=1)
    results = {} if args.quick else stored_results()
    for supervision, grid, seed, result, seconds in done:
        runs = results.setdefault(f"{supervision} @ {grid}", [])
        runs[:] = [r for r in runs if r["seed"] != seed] + [{"seed": seed, "seconds": seconds, **result}]
    print(f"proxy: {args.clips} clips; eval split, epoch best on tune; this call "
          f"{(time.perf_counter() - started) / 60:.1f} min")
    print("| arm | epochs | seeds | mAP | event F1 % 0.2 s | event F1 % 0.4 s | PSDS1 | PSDS2 | best epochs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for arm in sorted(results, key=lambda a: (SUPERVISION.index(a.split(" @ ")[0]), a)):
        runs = sorted(results[arm], key=lambda r: r["seed"])
        cell = lambda key, scale=1: f"{scale * np.mean([r[key] for r in runs]):.3f}" + (  # noqa: E731
            f" ± {scale * np.std([r[key] for r in runs]):.3f}" if len(runs) > 1 else "")
        epochs = sorted({r.get("epochs", len(r["curve"])) for r in runs})
        print(f"| {arm} | {', '.join(map(str, epochs))} | {len(runs)} | {cell('mAP')} | {cell('event_F1_0.2', 100)} | "
              f"{cell('event_F1_0.4', 100)} | {cell('PSDS1')} | {cell('PSDS2')} | "
              f"{', '.join(str(r['best_epoch']) for r in runs)} |")
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "bench_detection.json").write_text(json.dumps({"clips": args.clips, "results": results}, indent=1)
                                                      + "\n")
        plot(results)


def plot(results: dict[str, list[dict]]) -> None:
    """Tune-mAP curves, mean over seeds, each arm against its epochs (passes over its labelled clips)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for arm, runs in sorted(results.items()):
        length = min(len(r["curve"]) for r in runs)
        curve = np.mean([r["curve"][:length] for r in runs], axis=0)
        ax.plot(np.arange(1, length + 1), curve, "-" if "0.32" in arm else "--", label=f"{arm} ({len(runs)} seeds)")
    ax.set_xscale("log")
    ax.set_xlabel("epoch (passes over the labelled clips)")
    ax.set_ylabel("tune mAP (mean over seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "bench_detection.png", dpi=100)


if __name__ == "__main__":
    main()
