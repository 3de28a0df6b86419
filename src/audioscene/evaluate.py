"""Scores of a finished run (Table 2): every epoch checkpoint, the peak epoch and "Avg"; and of an
ensemble of runs (`evaluate_ensemble`).

Example::

    from audioscene.evaluate import evaluate_run
    result = evaluate_run("runs/b_att", "data/eval")
    print(result.peak_epoch, result.peak["mAP"], result.avg["mAP"])
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from . import models
from .checkpoints import Run, ensemble
from .data import DataSpec, OpenOptions
from .devices import resolve_device
from .features import FrontendConfig
from .labels import LabelSet
from .metrics import summarize
from .metrics.tagging import Summary, require_scorable
from .predictor import Predictor


@dataclass(frozen=True)
class Scored:
    """One way of reading a run: its `summary` on the data, the clip `outputs` `[N, K]` behind it,
    and the epoch it comes from (None for Avg, which is every epoch)."""

    summary: Summary
    outputs: np.ndarray
    epoch: int | None


@dataclass(frozen=True)
class RunEvaluation:
    """What `evaluate_run` found. `variants` holds "peak", "avg" and, for a run with a moving
    average of its weights, "ema" (its best epoch), in that order (for `evaluate_ensemble`: each
    member by its run's name, then "ensemble"); `epochs` every epoch's summary
    (raw weights). `run_config` holds the last checkpoint's model, front-end and training configs."""

    labels: LabelSet
    epochs: dict[int, Summary]
    variants: dict[str, Scored]
    targets: np.ndarray
    keys: list[str]
    run_config: dict[str, dict]
    selected_on: str
    selected_by: str

    @property
    def peak(self) -> Summary:
        return self.variants["peak"].summary

    @property
    def peak_epoch(self) -> int:
        return self.variants["peak"].epoch

    @property
    def avg(self) -> Summary:
        return self.variants["avg"].summary

    @property
    def ema(self) -> Scored | None:
        return self.variants.get("ema")

    @property
    def n_clips(self) -> int:
        return len(self.targets)


class _RunAndData:
    """The run and the data sets it is scored (and its epoch selected) on, opened and checked before
    the work starts."""

    def __init__(self, run: Run, data: DataSpec, select_data: DataSpec | None):
        self.run, self.first = run, run.first
        stored = run.config
        self.metric = stored.best_metric
        options = OpenOptions(self.first.label_set, stored.clip_seconds,
                              FrontendConfig(**self.first.frontend_config).sample_rate)
        takes_audio = models.family_of(self.first.model_config).takes_audio
        for spec in (data, select_data) if select_data is not None else (data,):
            spec.require_input(takes_audio, self.first.model_config["name"])
        self.dataset = data.open_clips(options)
        self.select_set = None if select_data is None else select_data.open_clips(options)
        require_scorable(self.dataset.targets, str(data))
        if self.select_set is not None:
            require_scorable(self.select_set.targets, f"{select_data} (the selection split, --select-data)")


def evaluate_run(run: str | os.PathLike | Run, data: DataSpec | str, device: str = "auto", batch_size: int = 64,
                 workers: int = 0, progress: bool = True, select_data: DataSpec | str | None = None,
                 amp: bool = False) -> RunEvaluation:
    """Score every epoch checkpoint of a run on a data set, plus "Avg": the mean of all
    checkpoints' clip outputs, scored (output averaging, not weight averaging; docs/protocol.md §3).

    The peak epoch is the one with the best `best_metric` (the run's, mAP by default) on
    `select_data`, or, without it, on `data` itself (what the paper did; optimistic, since the split
    that picks the epoch is also scored). Scores are computed in float32 unless `amp`. A run trained
    with a moving average of its weights (`ema_decay`) also gets "ema": the averaged weights of each
    checkpoint scored the same way, at their best epoch. Each checkpoint is loaded once, and only one
    checkpoint's model and the running sum of outputs are held at a time; one of another run in the
    folder stops the evaluation when it is reached.
    """
    run, data = Run.open(run), DataSpec.of(data)
    torch_device = resolve_device(device)
    opened = _RunAndData(run, data, None if select_data is None else DataSpec.of(select_data))
    dataset = opened.dataset
    epochs: dict[str, dict[int, Summary]] = {"raw": {}, "ema": {}}
    best: dict[str, tuple[float, Scored]] = {}  # weights → (selection score, the best epoch so far)
    total = None  # sum of every checkpoint's outputs, for Avg (one checkpoint in memory at a time)
    for path, state in tqdm(run.each(), total=len(run.paths), desc="checkpoints", unit="ckpt", disable=not progress):
        for weights in ("raw", "ema") if state.ema else ("raw",):
            model, frontend, _ = state.build(path, weights)  # labels checked with the run ids as loaded
            predictor = Predictor([model], frontend, torch_device, amp=amp)
            desc = path.name if weights == "raw" else f"{path.name} (EMA)"
            clipwise = predictor.predict(dataset, batch_size, workers, desc=desc, progress=progress)["clipwise"]
            if weights == "raw":
                total = clipwise.astype(np.float64) if total is None else total + clipwise
            summary = epochs[weights][state.epoch] = summarize(dataset.targets, clipwise)
            selection = summary[opened.metric]
            if opened.select_set is not None:
                selected = predictor.predict(opened.select_set, batch_size, workers, desc=f"{desc} (selection split)",
                                             progress=progress)["clipwise"]
                selection = summarize(opened.select_set.targets, selected)[opened.metric]
            if weights not in best or selection > best[weights][0]:  # ties keep the earlier epoch
                best[weights] = (selection, Scored(summary, clipwise, state.epoch))
    average = (total / len(run.paths)).astype(np.float32)
    variants = {"peak": best["raw"][1], "avg": Scored(summarize(dataset.targets, average), average, None)}
    if "ema" in best:
        variants["ema"] = best["ema"][1]
    (_, last), = run.last()
    return RunEvaluation(opened.first.label_set, epochs["raw"], variants, dataset.targets, list(dataset.keys),
                         {key: getattr(last, key) for key in ("model_config", "frontend_config", "train_config")},
                         str(select_data if select_data is not None else data), opened.metric)


def evaluate_ensemble(runs: Sequence[str | os.PathLike | Run], data: DataSpec | str, checkpoint: str = "best",
                      weights: str = "auto", device: str = "auto", batch_size: int = 64, workers: int = 0,
                      progress: bool = True, amp: bool = False) -> RunEvaluation:
    """Score an ensemble of runs on a data set: each member (its `checkpoint`: best, last, avg or a
    path, with its `weights`), then the mean of the members' clip outputs (the paper's "Avg" across
    runs, as EfficientAT's ensembles). Each member runs through its own front end on the same audio;
    the members share their labels and sample rate. `variants` holds each member by its run's name
    (its chosen epoch) and "ensemble"."""
    data = DataSpec.of(data)
    members = ensemble(runs, checkpoint, weights)
    for member in members:
        data.require_input(member.model.takes_audio, member.model.config.name)
    # checks the members' sample rates; each member is then scored alone through its own front end
    rate = Predictor([m.model for m in members], [m.frontend for m in members], "cpu").frontend.config.sample_rate
    first, torch_device = members[0].state, resolve_device(device)
    dataset = data.open_clips(OpenOptions(members[0].labels, first.train_config.get("clip_seconds", 10.0), rate))
    require_scorable(dataset.targets, str(data))
    variants, total = {}, 0.0
    for member in members:
        clipwise = Predictor([member.model], member.frontend, torch_device, amp=amp).predict(
            dataset, batch_size, workers, desc=f"{member.run.name}/{member.path.name}", progress=progress)["clipwise"]
        total = total + clipwise.astype(np.float64)
        name = member.run.name if member.run.name not in variants else f"{member.run.name}/{member.path.name}"
        variants[name] = Scored(summarize(dataset.targets, clipwise), clipwise, member.state.epoch)
    average = (total / len(members)).astype(np.float32)
    variants["ensemble"] = Scored(summarize(dataset.targets, average), average, None)
    return RunEvaluation(members[0].labels, {}, variants, dataset.targets, list(dataset.keys),
                         {key: getattr(first, key) for key in ("model_config", "frontend_config", "train_config")},
                         str(data), "")
