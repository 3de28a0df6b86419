"""Scores of a finished run (Table 2): every epoch checkpoint, the peak epoch and "Avg".

Example::

    from audioscene.evaluate import evaluate_run
    result = evaluate_run("runs/b_att", "data/eval")
    print(result["peak_epoch"], result["peak"]["mAP"], result["avg"]["mAP"])
"""

from __future__ import annotations

import os

import numpy as np
from tqdm.auto import tqdm

from . import models
from .checkpoints import Checkpoint, CheckpointError, list_epochs, require_same_run
from .errors import ConfigError
from .config import TrainConfig
from .data import DataSpec, OpenOptions
from .devices import resolve_device
from .features import FrontendConfig
from .metrics import summarize
from .metrics.tagging import require_scorable
from .predictor import Predictor


def evaluate_run(run_dir: str | os.PathLike, data: str | os.PathLike, device: str = "auto",
                 batch_size: int = 64, workers: int = 0, progress: bool = True, labels_csv: str = "",
                 select_data: str | os.PathLike | None = None, select_labels_csv: str = "",
                 amp: bool = False) -> dict:
    """Score every epoch checkpoint of a run on a data set, plus "Avg": the mean of all
    checkpoints' clip outputs, scored (output averaging, not weight averaging; docs/protocol.md §3).

    The peak epoch is the one with the best `best_metric` (the run's, mAP by default) on
    `select_data`, or, without it, on `data`
    itself (what the paper did; optimistic, since the split that picks the epoch is also scored).
    `labels_csv` / `select_labels_csv` label `folder:` specs (default `DIR/labels.csv`). Scores are
    computed in float32 unless `amp`.

    A run trained with a moving average of its weights (`ema_decay`) also gets "EMA": the averaged
    weights of each checkpoint scored the same way, and the peak among them (`ema_epoch`, `ema`).

    Returns `{"labels", "epochs": {epoch: summary}, "peak_epoch", "peak": summary, "avg": summary,
    "ema_epoch", "ema" (None without averaged weights), "outputs": {"peak", "avg"[, "ema"]: clip
    outputs [N, K]}, "targets" [N, K], "keys" (clip keys), "run_config" (the last checkpoint's model,
    front-end and training configs), "n_clips", "selected_on", "selected_by"}`.
    Only one checkpoint's model and the running sum of outputs are held at a time.
    """
    if select_labels_csv and select_data is None:
        raise ConfigError("select_labels_csv (--select-labels) labels the selection split; give select_data "
                          "(--select-data) too")
    checkpoints = list_epochs(run_dir)
    if not checkpoints:
        raise CheckpointError(f"{run_dir}: no epoch_NNN.pt checkpoints to evaluate")
    torch_device = resolve_device(device)
    first = Checkpoint.load(checkpoints[0])  # the data is opened (and checked) before the work starts
    label_set = first.label_set
    stored = TrainConfig.from_dict(first.train_config)
    clip_seconds, metric = stored.clip_seconds, stored.best_metric
    sample_rate = FrontendConfig(**first.frontend_config).sample_rate
    options = OpenOptions(label_set, clip_seconds, sample_rate)
    specs = [DataSpec.parse(data, labels_csv)] + ([] if select_data is None else
                                                  [DataSpec.parse(select_data, select_labels_csv)])
    model = models.from_config(first.model_config)
    for spec in specs:
        spec.require_input(model.input_kind, model.config.name)
    dataset = specs[0].open_clips(options)
    select_set = None if select_data is None else specs[1].open_clips(options)
    require_scorable(dataset.targets, str(data))
    if select_set is not None:
        require_scorable(select_set.targets, f"{select_data} (the selection split, --select-data)")
    for path in checkpoints[1:]:  # every checkpoint is of this run, before any work
        require_same_run(checkpoints[0], first, path, Checkpoint.load(path))
    scores = {"raw": {}, "ema": {}}  # weights → epoch → summary on data
    best = {}  # weights → (selection score, epoch, clip outputs) of the best epoch so far
    total = None  # sum of every checkpoint's outputs, for Avg (one checkpoint in memory at a time)
    for path in tqdm(checkpoints, desc="checkpoints", unit="ckpt", disable=not progress):
        state = first if path == checkpoints[0] else Checkpoint.load(path)
        for weights in ("raw", "ema") if state.ema else ("raw",):
            model, frontend, _ = state.build(path, weights)  # labels checked with the run ids above
            predictor = Predictor([model], frontend, torch_device, amp=amp)
            desc = path.name if weights == "raw" else f"{path.name} (EMA)"
            clipwise = predictor.predict(dataset, batch_size, workers, desc=desc, progress=progress)["clipwise"]
            if weights == "raw":
                total = clipwise.astype(np.float64) if total is None else total + clipwise
            summary = summarize(dataset.targets, clipwise)
            if select_set is None:
                selection = summary[metric]
            else:
                selected = predictor.predict(select_set, batch_size, workers, desc=f"{desc} (selection split)",
                                             progress=progress)["clipwise"]
                selection = summarize(select_set.targets, selected)[metric]
            scores[weights][state.epoch] = summary
            if weights not in best or selection > best[weights][0]:  # ties keep the earlier epoch
                best[weights] = (selection, state.epoch, clipwise)
    average = (total / len(checkpoints)).astype(np.float32)
    ema_epoch = best["ema"][1] if "ema" in best else None
    return {"labels": label_set, "epochs": scores["raw"], "peak_epoch": best["raw"][1],
            "peak": scores["raw"][best["raw"][1]], "avg": summarize(dataset.targets, average),
            "ema_epoch": ema_epoch, "ema": scores["ema"][ema_epoch] if ema_epoch else None,
            "outputs": {"peak": best["raw"][2], "avg": average, **({"ema": best["ema"][2]} if ema_epoch else {})},
            "targets": dataset.targets, "keys": dataset.keys,
            "run_config": {key: getattr(state, key) for key in ("model_config", "frontend_config", "train_config")},
            "n_clips": len(dataset), "selected_on": str(select_data if select_data is not None else data),
            "selected_by": metric}
