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

import logging
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ._io import atomic_open
from .checkpoints import Run, ensemble
from .data import DataSpec, OpenOptions
from .errors import InputError
from .labels import LabelSet

log = logging.getLogger(__name__)

TEACHER_FORMAT = "audioscene-teacher/1"
EPS = 1e-6


def write_teacher(path: str | os.PathLike, keys: Sequence[str], probs: np.ndarray, labels: LabelSet,
                  data: str = "") -> Path:
    """Write a teacher file (atomically); keys must be unique; `data` names the data set it was
    written from (the training run warns when it trains on another)."""
    keys = [str(k) for k in keys]
    if len(set(keys)) != len(keys):
        duplicate = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise InputError(f"{path}: clip key {duplicate!r} occurs twice (two files with the same stem); a teacher "
                         "file needs one prediction per clip key")
    if np.shape(probs) != (len(keys), len(labels)):
        raise InputError(f"{path}: expected probabilities of shape ({len(keys)}, {len(labels)}), got {np.shape(probs)}")
    with atomic_open(path, "wb") as f:
        np.savez(f, format=np.array(TEACHER_FORMAT), keys=np.array(keys), probs=np.asarray(probs, np.float32),
                 labels=np.array(labels.names), data=np.array(str(data)))
    return Path(path)


MAX_EXPANSION = 20  # a compressed member may grow this much when read (probabilities barely compress)


def _read_member(archive: zipfile.ZipFile, name: str, path) -> np.ndarray:
    """One array of the archive, its header checked against the member's stored and declared sizes
    before anything is allocated; no pickles."""
    try:
        info = archive.getinfo(f"{name}.npy")
    except KeyError:
        raise InputError(f"{path}: not a teacher file (no {name!r} array)") from None
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_EXPANSION * max(info.compress_size, 1):
        raise InputError(f"{path}: {name!r} would expand from {info.compress_size} to {info.file_size} bytes; "
                         "refused (a teacher file from `audioscene predict` is not compressed)")
    with archive.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read_header:
                raise ValueError(f"unsupported .npy version {version}")
            shape, fortran, dtype = read_header[version](f)
        except ValueError as exc:
            raise InputError(f"{path}: {name!r} is not an array ({exc})") from None
        if dtype.hasobject:
            raise InputError(f"{path}: {name!r} holds Python objects; a teacher file holds numbers and strings only")
        needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if needed != info.file_size - f.tell():
            raise InputError(f"{path}: {name!r} claims shape {shape} ({needed} bytes) but holds "
                             f"{info.file_size - f.tell()} bytes")
        array = np.frombuffer(f.read(needed), dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return array


def read_teacher(path: str | os.PathLike) -> tuple[list[str], np.ndarray, tuple[str, ...], str]:
    """`(keys, probs [N, K] float32, labels, data)` of a teacher file, every part checked: a file
    that is not one, or whose header, shapes, types, values or keys are wrong, raises one
    `InputError` naming it and the problem."""
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = {name: _read_member(archive, name, path) for name in ("format", "keys", "probs", "labels")}
            data = str(_read_member(archive, "data", path)) if "data.npy" in archive.namelist() else ""
    except (OSError, zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise InputError(f"{path}: not a readable teacher file, an .npz from `audioscene predict` "
                         f"({type(exc).__name__}: {exc})") from None
    if arrays["format"].shape != () or str(arrays["format"]) != TEACHER_FORMAT:
        raise InputError(f"{path}: not a teacher file (format {arrays['format']!s})")
    keys, probs, labels = arrays["keys"], arrays["probs"], arrays["labels"]
    for name, array in (("keys", keys), ("labels", labels)):
        if array.ndim != 1 or array.dtype.kind != "U":
            raise InputError(f"{path}: {name!r} must be a list of strings, got {array.dtype} of shape {array.shape}")
    if probs.ndim != 2 or probs.dtype.kind != "f" or probs.shape != (len(keys), len(labels)):
        raise InputError(f"{path}: 'probs' must be numbers of shape ({len(keys)} keys, {len(labels)} labels), got "
                         f"{probs.dtype} of shape {probs.shape}")
    bad = ~((probs >= 0) & (probs <= 1))  # NaN fails both
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise InputError(f"{path}: {int(bad.sum())} probabilities outside [0, 1] (e.g. {float(probs[row, column])} for "
                         f"clip {str(keys[row])!r}, label {str(labels[column])!r})")
    unique, counts = np.unique(keys, return_counts=True)
    if (counts > 1).any():
        raise InputError(f"{path}: clip key {str(unique[counts > 1][0])!r} occurs {counts[counts > 1][0]} times; a teacher "
                         "file holds one prediction per clip key")
    return keys.tolist(), probs.astype(np.float32), tuple(labels.tolist()), data


class Teacher:
    """A teacher file's targets, looked up by clip key."""

    def __init__(self, path: str | os.PathLike, labels: LabelSet, temperature: float = 1.0):
        keys, probs, names, self.data = read_teacher(path)
        if names != labels.names:
            raise InputError(f"{path}: the teacher's {len(names)} labels differ from this run's {len(labels)} "
                             "(distillation needs the same label set, in the same order)")
        self.path = Path(path)
        self.row = {key: i for i, key in enumerate(keys)}
        logits = np.log(np.clip(probs, EPS, 1 - EPS)) - np.log1p(-np.clip(probs, EPS, 1 - EPS))
        self.targets_array = torch.from_numpy((1 / (1 + np.exp(-logits / temperature))).astype(np.float32))

    def check_data(self, data: str) -> None:
        """Warn when the file was written from another data set than `data` (the training spec)."""
        if self.data and self.data != data:
            log.warning("%s was written from %s, but this run trains on %s: a teacher's predictions on other clips "
                        "with the same keys teach the wrong targets", self.path, self.data, data)

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


def predict_to_file(runs: Sequence[str | os.PathLike | Run], data: DataSpec | str, output: str | os.PathLike,
                    checkpoint: str = "best", device: str = "auto", batch_size: int = 64, workers: int = 0,
                    progress: bool = True, weights: str = "auto") -> Path:
    """Write a teacher file: the clip probabilities of `runs` (each its `checkpoint`: best, last,
    avg or a path, with its `weights`: see `Checkpoint.weights`; all runs averaged, each through its
    own front end, at one sample rate) on the map-style data `data`, keyed by clip key."""
    from .predictor import Predictor

    if not runs:
        raise InputError("need at least one teacher run")
    members = ensemble(runs, checkpoint, weights)
    spec = DataSpec.of(data)
    for member in members:
        spec.require_input(member.model.takes_audio, member.model.config.name)
    # each member its own front end, at one sample rate
    predictor = Predictor([m.model for m in members], [m.frontend for m in members], device)
    labels, clip_seconds = members[0].labels, members[0].state.train_config.get("clip_seconds", 10.0)
    dataset = spec.open_clips(OpenOptions(labels, clip_seconds, predictor.frontend.config.sample_rate), "predict")
    probs = predictor.predict(dataset, batch_size, workers, desc="predict", progress=progress)["clipwise"]
    return write_teacher(output, dataset.keys, probs, labels, data=data_identity(spec))


def data_identity(spec: DataSpec) -> str:
    """How a teacher file names the data it was written from: the spec with absolute paths."""
    return "|".join(str(source.resolve()) for source in spec.sources) + (f"|{spec.split}" if spec.split else "")
