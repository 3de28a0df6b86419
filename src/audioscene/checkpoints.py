"""A run's checkpoints: the typed `Checkpoint`, its atomic save and validated load, and which
files of a run folder a choice like "best" means.

A run folder holds `epoch_001.pt`, `epoch_002.pt`, ... . Each is a plain dict of tensors and
Python data (so it loads with `weights_only=True`, never unpickling code); `Checkpoint` gives it
types and names. Only this version's format (`CHECKPOINT_FORMAT`) is read; a checkpoint of an
earlier, unreleased format is refused with a message that says so.

A `Run` is a folder of them opened once (`Run.best()`, `Run.last()`, `Run.average()`).

>>> from audioscene.checkpoints import Checkpoint
>>> state = Checkpoint.load("runs/b_att/epoch_003.pt")  # doctest: +SKIP
>>> model, frontend, labels = state.build("runs/b_att/epoch_003.pt")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import torch
from torch import nn

from . import models
from ._io import atomic_open
from .config import TrainConfig
from .errors import CheckpointError
from .features import FrontendConfig
from .labels import LabelSet

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "audioscene-checkpoint/2"
CHECKPOINT_PATTERN = re.compile(r"^epoch_(\d{3,})\.pt$")
CHOICES = ("best", "last", "avg")
PRETRAINED = "pretrained:"  # `--run pretrained:NAME`: a model of the zoo
WEIGHTS = ("auto", "raw", "ema")


@dataclass
class Checkpoint:
    """Everything one epoch leaves behind: the weights and what rebuilds them (model and front-end
    configuration, labels), and what resumes the run (optimizer, scaler, RNG, history)."""

    epoch: int
    model: dict[str, torch.Tensor]
    model_config: dict
    frontend_config: dict
    labels: list[str]
    train_config: dict
    history: list[dict]
    metrics: dict | None = None
    optimizer: dict | None = None  # optimizer, scaler and rng: needed to resume, not to use the model
    scaler: dict | None = None
    rng: dict | None = None
    world_size: int = 1
    coverage: dict | None = None  # clips trained on in the epoch (see distributed.coverage_of)
    run_id: str = ""  # the same in every checkpoint of one run
    recipe: dict | None = None  # the recipe's state (recipe.Recipe.state_dict(): schedule, weight average)
    source: dict | None = None  # weights imported from elsewhere: file, SHA-256, published scores (pretrained.py)
    format: str = field(default=CHECKPOINT_FORMAT)

    REQUIRED = ("epoch", "model", "model_config", "frontend_config", "labels", "train_config", "history")
    FOR_RESUME = ("optimizer", "scaler", "rng")

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically: a crash or a full disk leaves the previous file (or none), never a partial one."""
        with atomic_open(path, "wb") as f:
            torch.save({f.name: getattr(self, f.name) for f in fields(self)}, f)  # no deep copy of the tensors

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> "Checkpoint":
        """Read a checkpoint (tensors and plain data only: `weights_only=True`).

        Raises `CheckpointError` naming the file when it is missing, truncated, foreign, lacks one of
        `REQUIRED`, or holds NaN/Inf weights (such a model scores every file NaN)."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint")
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # torch raises many types for truncated/garbled files
            raise CheckpointError(f"{path}: not a readable checkpoint, the file is truncated or corrupt "
                                  f"({type(exc).__name__}: {exc})") from None
        found = state.get("format") if isinstance(state, dict) else None
        if isinstance(found, str) and found.startswith("audioscene-checkpoint/") and found != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: written by an earlier audioscene (format {found}); this version reads "
                                  f"{CHECKPOINT_FORMAT} only: train the run again")
        if found != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not an audioscene checkpoint (expected format {CHECKPOINT_FORMAT})")
        missing = [key for key in cls.REQUIRED if key not in state]
        if missing:
            raise CheckpointError(f"{path}: incomplete checkpoint, it lacks {', '.join(missing)}")
        weights = state["model"]
        if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            raise CheckpointError(f"{path}: the model weights are not a state dict of tensors")
        broken = [name for name, value in weights.items()
                  if value.is_floating_point() and not bool(torch.isfinite(value).all())]
        if broken:
            raise CheckpointError(f"{path}: {len(broken)} weight tensors hold NaN or Inf (e.g. {broken[0]}); the "
                                  "training diverged, use an earlier checkpoint")
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in state.items() if key in known})

    def require_resumable(self, path: str | os.PathLike) -> None:
        missing = [key for key in self.FOR_RESUME if getattr(self, key) is None]
        if missing:
            raise CheckpointError(f"{path}: cannot resume from it, it lacks {', '.join(missing)}")

    @property
    def label_set(self) -> LabelSet:
        return LabelSet(tuple(self.labels))

    @property
    def ema(self) -> dict | None:
        """The moving average of the weights (`recipe.WeightAverage.state_dict()`), if the run keeps one."""
        return (self.recipe or {}).get("ema")

    def weights(self, which: str = "auto") -> dict[str, torch.Tensor]:
        """The state dict `which` names: "raw" (the optimizer's weights), "ema" (their moving average)
        or "auto" (the run's weights: the average when the run keeps one, else the raw weights)."""
        if which not in WEIGHTS:
            raise CheckpointError(f"unknown weights {which!r}; choose one of {', '.join(WEIGHTS)}")
        if which == "ema" and not self.ema:
            raise CheckpointError("holds no moving average of the weights (train with --ema-decay)")
        return self.ema["weights"] if which == "ema" or (which == "auto" and self.ema) else self.model

    def build(self, source: str | os.PathLike = "checkpoint", weights: str = "auto",
              ) -> tuple[models.AudioModel, nn.Module, LabelSet]:
        """Model (with the `weights` named as in `weights()`, in eval mode), front end and label set;
        weights that do not fit the recorded architecture raise `CheckpointError` naming `source`."""
        try:
            state = self.weights(weights)
        except CheckpointError as exc:
            raise CheckpointError(f"{source}: {exc}") from None
        try:
            model = models.from_config(self.model_config)
            model.load_state_dict(state)
            frontend = models.frontend_for(model, FrontendConfig(**self.frontend_config))
            labels = self.label_set
        except (RuntimeError, TypeError, KeyError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:300]
            raise CheckpointError(f"{source}: the weights, architecture, front end or labels recorded do not fit "
                                  f"together ({type(exc).__name__}: {reason})") from None
        if len(labels) != model.config.n_classes:
            raise CheckpointError(f"{source}: {len(labels)} labels for a model with {model.config.n_classes} outputs")
        return model.eval(), frontend, labels


def checkpoint_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    return Path(run_dir) / f"epoch_{epoch:03d}.pt"


def list_epochs(run_dir: str | os.PathLike) -> list[Path]:
    """The run's `epoch_NNN.pt` files in epoch order (only complete ones exist: writes are atomic)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run folder")
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def best_epoch(history: list[dict], metric: str = "mAP") -> int:
    """The epoch of the history row with the highest `metric` (NaN counts as lowest)."""
    score = lambda row: row.get(metric, math.nan)  # noqa: E731  (an imported run may publish fewer scores)
    return max(history, key=lambda row: score(row) if not math.isnan(score(row)) else -math.inf)["epoch"]


class Run:
    """A run folder opened once: its checkpoints listed once, each loaded when first used and at
    most once (the first, the last and those a choice names are kept; `each` and `average` keep no
    other), and each
    checked once, when loaded, to belong to the run of the folder's first checkpoint (the same
    labels and run id). Every command and library entry point that reads a run takes one (or a
    folder, which it opens as one).

    >>> run = Run("runs/b_att")  # doctest: +SKIP
    >>> (path, state), = run.best()  # doctest: +SKIP
    >>> model, frontend, labels = state.build(path)  # doctest: +SKIP
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.paths = list_epochs(self.folder)
        if not self.paths:
            raise CheckpointError(f"{self.folder}: no epoch_NNN.pt checkpoints")
        self._kept: dict[Path, Checkpoint] = {}

    @classmethod
    def open(cls, run: "str | os.PathLike | Run") -> "Run":
        """`run` itself, a run folder, or `pretrained:NAME`: a model of the zoo (`pretrained.CATALOGUE`),
        fetched and converted into the cache on first use."""
        if isinstance(run, Run):
            return run
        if str(run).startswith(PRETRAINED):
            from .pretrained import cached_run

            folder, checked = cached_run(str(run)[len(PRETRAINED):])
            opened = cls(folder)
            if checked is not None:  # loaded to check the cache: not loaded again
                opened._kept[opened.paths[0]] = checked
            return opened
        return cls(run)

    def __str__(self) -> str:
        return str(self.folder)

    @property
    def name(self) -> str:
        return self.folder.name

    def load(self, path: Path, keep: bool = True) -> Checkpoint:
        """The checkpoint at `path` (one of `paths`), loaded and checked the first time it is asked for."""
        if path in self._kept:
            return self._kept[path]
        state = Checkpoint.load(path)
        if path != self.paths[0]:
            first = self.first
            if first.labels != state.labels:
                raise CheckpointError(f"{path}: its label set differs from {self.paths[0].name}'s; the checkpoints of "
                                      "one run share their labels (move the foreign checkpoints out of the folder)")
            if first.run_id != state.run_id:
                raise CheckpointError(f"{path}: belongs to another run than {self.paths[0].name} in the same folder "
                                      "(another run id); move the foreign checkpoints out of the folder")
        if keep or path in (self.paths[0], self.paths[-1]):  # the first checks the others, the last picks "best"
            self._kept[path] = state
        return state

    @property
    def first(self) -> Checkpoint:
        return self.load(self.paths[0])

    @property
    def config(self):
        """The run's training configuration (`config.TrainConfig`), as its last checkpoint stored it."""
        return TrainConfig.from_dict(dict(self.last()[0][1].train_config), source=str(self.paths[-1]))

    def last(self) -> list[tuple[Path, Checkpoint]]:
        return [(self.paths[-1], self.load(self.paths[-1]))]

    def best(self) -> list[tuple[Path, Checkpoint]]:
        """The epoch with the best eval score in the run's history (its `best_metric`, mAP by default)."""
        (_, last), = self.last()
        epoch = best_epoch(last.history, last.train_config.get("best_metric", "mAP"))
        path = next((p for p in self.paths if p.name == f"epoch_{epoch:03d}.pt"), self.paths[-1])
        return [(path, self.load(path))]

    def average(self) -> list[tuple[Path, Checkpoint]]:
        """Every epoch (whose outputs are averaged: "avg")."""
        return [(path, self.load(path, keep=False)) for path in self.paths]

    def each(self) -> Iterator[tuple[Path, Checkpoint]]:
        """Every epoch in order, one loaded at a time."""
        return ((path, self.load(path, keep=False)) for path in self.paths)

    def select(self, choice: str | os.PathLike = "best") -> list[tuple[Path, Checkpoint]]:
        """The checkpoints a choice means: "best", "last", "avg" (`average`) or the path of one file
        (taken as it is)."""
        if choice == "avg":
            return self.average()
        if choice in ("best", "last"):
            return self.best() if choice == "best" else self.last()
        path = Path(choice)
        if path not in self._kept:
            self._kept[path] = Checkpoint.load(path)
        return [(path, self._kept[path])]


class Member(NamedTuple):
    """One model of an ensemble of runs, built from its checkpoint."""

    run: Run
    path: Path
    state: Checkpoint
    model: models.AudioModel
    frontend: nn.Module
    labels: LabelSet


def ensemble(runs: Sequence[str | os.PathLike | Run], checkpoint: str | os.PathLike = "best",
             weights: str = "auto") -> list[Member]:
    """The models of `runs` (each its `checkpoint`, see `Run.select`, with its `weights`), built with
    their front ends; the members of an ensemble share their labels, and one that does not is
    refused, named."""
    members: list[Member] = []
    for run in map(Run.open, runs):
        for path, state in run.select(checkpoint):
            member = Member(run, path, state, *state.build(path, weights))
            if members and member.labels != members[0].labels:
                raise CheckpointError(f"{path}: its labels differ from {members[0].path}'s; the members of an "
                                      "ensemble share their labels")
            members.append(member)
    return members


def initialise_from(model: models.AudioModel, state: Checkpoint, path: str, label_set: LabelSet) -> None:
    """Start from a trained checkpoint (`state`, read from `path`) of the same architecture: all its
    weights (the moving average when it keeps one), except the classifier's (the model's
    `head_prefix`) when the labels differ."""
    source = models.stored_config(state.model_config).to_dict()
    target = model.config.to_dict()
    differing = [key for key in target if key != "n_classes" and source.get(key) != target[key]]
    if differing:
        theirs = ", ".join(f"{key} {source.get(key)}" for key in differing)
        ours = ", ".join(f"{key} {target[key]}" for key in differing)
        raise CheckpointError(f"{path}: a {source['name']} with {theirs}; this run trains a {target['name']} with {ours} "
                          "(use the same --model and --model-arg settings, or leave them out to take the checkpoint's)")
    same_labels = tuple(state.labels) == label_set.names
    weights = {k: v for k, v in state.weights().items() if same_labels or not k.startswith(model.head_prefix)}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or not all(k.startswith(model.head_prefix) for k in missing):
        raise CheckpointError(f"{path}: its weights do not fit this model (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]})")
    if same_labels:
        log.info("initialised from %s (all weights)", path)
    else:
        log.info("initialised from %s; new classifier for %d classes", path, len(label_set))
