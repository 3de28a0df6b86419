"""Knowledge distillation from stored teacher predictions (as EfficientAT and CED distil AudioSet
from PaSST / large-model ensembles).

`audioscene predict --run TEACHER [--run OTHER ...] --data SPEC -o teacher.npz` writes a teacher file:
an `.npz` (no pickles) with

- `format`: "audioscene-teacher/1";
- `keys` `[N]` (str): clip keys, the audio file's stem (shards keep it as their member key, so a
  teacher file written from a folder serves the shards packed from it), or `YTID_STARTMS` for
  released embeddings;
- `probs` `[N, K]` (float32): the clip probabilities, averaged over the teacher runs;
- `labels` `[K]` (str): the teacher's label names, which must equal the student run's.

Training with `--teacher FILE --kd-lambda λ` minimises `(1 − λ)·BCE(p, y) + λ·BCE(p, q)` with
`q = sigmoid(logit(teacher prob) / T)` (`--kd-temperature T`; T = 1 uses the probabilities as they
are). The student's temperature stays 1: its clip output is an attention-pooled probability, not a
logit. A clip without a teacher entry stops training with one error naming how many are missing
and one of their keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ._io import atomic_open
from .errors import InputError
from .labels import LabelSet

TEACHER_FORMAT = "audioscene-teacher/1"
EPS = 1e-6


def write_teacher(path: str | os.PathLike, keys: Sequence[str], probs: np.ndarray, labels: LabelSet) -> Path:
    """Write a teacher file (atomically); keys must be unique."""
    keys = [str(k) for k in keys]
    if len(set(keys)) != len(keys):
        duplicate = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise InputError(f"{path}: clip key {duplicate!r} occurs twice (two files with the same stem); a teacher "
                         "file needs one prediction per clip key")
    if np.shape(probs) != (len(keys), len(labels)):
        raise InputError(f"{path}: expected probabilities of shape ({len(keys)}, {len(labels)}), got {np.shape(probs)}")
    with atomic_open(path, "wb") as f:
        np.savez(f, format=np.array(TEACHER_FORMAT), keys=np.array(keys), probs=np.asarray(probs, np.float32),
                 labels=np.array(labels.names))
    return Path(path)


class Teacher:
    """A teacher file's targets, looked up by clip key."""

    def __init__(self, path: str | os.PathLike, labels: LabelSet, temperature: float = 1.0):
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["format"]) != TEACHER_FORMAT:
                    raise InputError(f"{path}: not a teacher file (format {data['format']!s})")
                keys, probs, names = data["keys"].tolist(), data["probs"], tuple(data["labels"].tolist())
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"{path}: not a readable teacher file ({type(exc).__name__}: {exc})") from None
        if names != labels.names:
            raise InputError(f"{path}: the teacher's {len(names)} labels differ from this run's {len(labels)} "
                             "(distillation needs the same label set, in the same order)")
        self.path = Path(path)
        self.row = {key: i for i, key in enumerate(keys)}
        logits = np.log(np.clip(probs, EPS, 1 - EPS)) - np.log1p(-np.clip(probs, EPS, 1 - EPS))
        self.targets_array = torch.from_numpy((1 / (1 + np.exp(-logits / temperature))).astype(np.float32))

    def require(self, keys: Sequence[str]) -> None:
        """Raise one `InputError` if any of `keys` has no teacher prediction."""
        missing = [key for key in keys if key not in self.row]
        if missing:
            raise InputError(f"{self.path}: {len(missing)} of {len(keys)} training clips have no teacher prediction "
                             f"(e.g. {missing[0]!r}); write the teacher file for the training data with "
                             "`audioscene predict`")

    def targets(self, keys: Sequence[str]) -> torch.Tensor:
        """Teacher targets `[len(keys), K]` (float32)."""
        self.require(keys)
        return self.targets_array[[self.row[key] for key in keys]]


def predict_to_file(runs: Sequence[str | os.PathLike], data: str, output: str | os.PathLike,
                    checkpoint: str = "best", labels_csv: str = "", device: str = "auto", batch_size: int = 64,
                    workers: int = 0, progress: bool = True, weights: str = "auto") -> Path:
    """Write a teacher file: the clip probabilities of `runs` (each its `checkpoint`: best, last,
    avg or a path, with its `weights`: see `Checkpoint.weights`; all runs averaged) on the
    map-style data `data`, keyed by clip key."""
    from .checkpoints import CheckpointError, load_run
    from .data import DataSpec, OpenOptions
    from .features import FrontendConfig
    from .predictor import Predictor

    if not runs:
        raise InputError("need at least one teacher run")
    members, labels, frontend, clip_seconds = [], None, None, 10.0
    for run in runs:
        for path, state in load_run(run, checkpoint):
            model, model_frontend, model_labels = state.build(path, weights)
            if labels is None:
                labels, frontend = model_labels, model_frontend
                clip_seconds = state.train_config.get("clip_seconds", clip_seconds)
            elif model_labels != labels or state.frontend_config != members[0][1]:
                raise CheckpointError(f"{path}: its labels or front end differ from {members[0][2]}'s; the runs "
                                      "of one teacher must share both")
            members.append((model, state.frontend_config, path))
    sample_rate = FrontendConfig(**members[0][1]).sample_rate
    dataset = DataSpec.parse(data, labels_csv).open_clips(OpenOptions(labels, clip_seconds, sample_rate), "predict")
    probs = Predictor([m for m, _, _ in members], frontend, device).predict(
        dataset, batch_size, workers, desc="predict", progress=progress)["clipwise"]
    return write_teacher(output, dataset.keys, probs, labels)
