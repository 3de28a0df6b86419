"""The training recipe measured on a hard proxy task: the paper recipe, each modern piece alone, the
modern preset, and the modern preset distilled from a larger teacher — mAP and macro event F1.

The proxy is the synthetic generator made hard: 300 training clips at −5..5 dB SNR with up to 6
(often overlapping) events, a tune split and an eval split of 300 each; `resnet_b_att` of width 16,
the same optimizer steps for every arm (`--epochs` × 19 steps of 16 clips). Each arm's shipped
weights are scored (the last epoch's, or their moving average when the arm keeps one): mAP on the
eval split, and macro event F1 (0.2 s collar) on the eval split after tuning thresholds and median
kernels on the tune split, with the 0.32 s frames as they are and upsampled 4× (0.08 s).

    python benchmarks/bench_recipe.py [--seeds 0 1 2] [--epochs 6] [--json benchmarks/results/bench_recipe.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from audioscene.checkpoints import Checkpoint, list_epochs
from audioscene.config import RECIPES, TrainConfig
from audioscene.data.folder import ClipDataset
from audioscene.data.synthetic import generate
from audioscene.distill import predict_to_file
from audioscene.events import read_events_tsv
from audioscene.infer import Tagger, events_from_analysis
from audioscene.metrics import event_f1, summarize
from audioscene.predictor import Predictor
from audioscene.sed import tune_on
from audioscene.train import train

MODERN = RECIPES["modern"]
ARMS: dict[str, dict] = {
    "paper": {},
    "+ mixup": dict(mixup_alpha=MODERN["mixup_alpha"]),
    "+ SpecAugment": {k: MODERN[k] for k in ("spec_time_masks", "spec_freq_masks")},
    "+ cosine schedule": {k: MODERN[k] for k in ("lr_schedule", "warmup_fraction", "lr_floor")},
    "+ EMA": dict(ema_decay=MODERN["ema_decay"]),
    "+ balanced": dict(sampler="balanced"),
    "modern": dict(recipe="modern"),
    "modern + KD": dict(recipe="modern", kd_lambda=0.5),
}


def proxy_data(root: Path) -> dict[str, Path]:
    return {name: generate(root / name, n_clips=300, seed=seed, snr_db=(-5.0, 5.0), max_events=6, progress=False)
            for name, seed in (("train", 101), ("tune", 102), ("eval", 103))}


def shipped(run: Path) -> tuple[Checkpoint, Path, str]:
    path = list_epochs(run)[-1]
    state = Checkpoint.load(path)
    return state, path, "ema" if state.ema else "model"


def scores(run: Path, data: dict[str, Path]) -> dict[str, float]:
    state, path, weights = shipped(run)
    model, frontend, labels = state.build(path, weights)
    eval_set = ClipDataset.from_folder(data["eval"])
    clipwise = Predictor([model], frontend, "cpu").predict(eval_set, progress=False)["clipwise"]
    result = {"mAP": summarize(eval_set.targets, clipwise)["mAP"]}
    tagger = Tagger([model], frontend, labels, device="cpu")
    analyses = {split: {path.name: a for path, a in tagger.analyze_many(sorted((data[split] / "audio").glob("*.flac")))}
                for split in ("tune", "eval")}
    reference = {split: read_events_tsv(data[split] / "strong.tsv") for split in ("tune", "eval")}
    for factor in (1, 4):
        tuning = tune_on(analyses["tune"], reference["tune"], tagger.frame_hop, upsample_factor=factor)
        events = [e for name, a in analyses["eval"].items() for e in events_from_analysis(a, name, tuning, tuning)]
        result[f"event_F1_x{factor}"] = event_f1(reference["eval"], events, t_collar=0.2, labels=labels.names).macro_f1
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])  # ~15 min each on 2 cores
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "bench_recipe.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    base = dict(model="resnet_b_att", width=16, batch_size=16, lr=1e-3, epochs=args.epochs, device="cpu")
    results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        data = proxy_data(work / "data")
        common = dict(train_data=str(data["train"]), eval_data=str(data["tune"]))  # epochs are watched on tune
        teacher_run = train(TrainConfig(**common, **{**base, "width": 32, "epochs": 2 * args.epochs},
                                        out_dir=str(work / "teacher")), progress=False)
        teacher = predict_to_file([teacher_run], str(data["train"]), work / "teacher.npz", checkpoint="last",
                                  progress=False)
        teacher_scores = scores(teacher_run, data)
        print(f"teacher (resnet_b_att width 32, paper recipe, {2 * args.epochs} epochs): mAP "
              f"{teacher_scores['mAP']:.3f}, event F1 {100 * teacher_scores['event_F1_x1']:.1f} %", flush=True)
        for seed in args.seeds:
            for arm, options in ARMS.items():
                extra = dict(teacher=str(teacher)) if options.get("kd_lambda") else {}
                config = TrainConfig(**common, **base, **options, **extra, seed=seed,
                                     out_dir=str(work / f"{arm.replace(' ', '_')}_{seed}"))
                result = scores(train(config, progress=False), data)
                results[arm].append(result)
                print(f"seed {seed} {arm:18s} mAP {result['mAP']:.3f}  event F1 {100 * result['event_F1_x1']:5.1f} % "
                      f"(x4 frames {100 * result['event_F1_x4']:5.1f} %)  [{time.perf_counter() - started:.0f} s]",
                      flush=True)
    print(f"\nproxy: 300 train clips, -5..5 dB, up to 6 events; resnet_b_att width 16, {args.epochs} epochs; "
          f"{len(args.seeds)} seeds, mean ± std; {time.perf_counter() - started:.0f} s in all")
    print(f"{'arm':18s} {'mAP':>15s} {'event F1 %':>15s} {'F1 % x4 frames':>15s}")
    summary = {}
    for arm, runs in results.items():
        table = {key: (float(np.mean([r[key] for r in runs])), float(np.std([r[key] for r in runs]))) for key in runs[0]}
        summary[arm] = table
        print(f"{arm:18s} {table['mAP'][0]:8.3f} ± {table['mAP'][1]:.3f} "
              f"{100 * table['event_F1_x1'][0]:8.1f} ± {100 * table['event_F1_x1'][1]:.1f} "
              f"{100 * table['event_F1_x4'][0]:8.1f} ± {100 * table['event_F1_x4'][1]:.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"seeds": args.seeds, "epochs": args.epochs, "teacher": teacher_scores,
                                     "arms": summary, "runs": results}, indent=2) + "\n")
    print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
