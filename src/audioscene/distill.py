"""Knowledge distillation from stored teacher predictions (as EfficientAT and CED distil AudioSet
from PaSST / large-model ensembles).

`audioscene predict --run TEACHER [--run OTHER ...] --data SPEC -o teacher/` writes a teacher store
(`teacher_store.py`: float16, memory-mapped, a sorted key index; for millions of clips), in parts
that resume and that the ranks of `torchrun` share; `-o teacher.npz` writes the small form, an
`.npz` (no pickles) with

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
from .teacher_store import (
    TeacherStore,
    check_probabilities,
    is_store,
    merge,
    part_done,
    resample_frames,
    write_part,
)

log = logging.getLogger(__name__)

TEACHER_FORMAT = "audioscene-teacher/1"
EPS = 1e-6
PART_CLIPS = 8192  # clips per part of a teacher store: the work a rerun may repeat


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
    check_probabilities(probs, str(path), keys, labels)
    unique, counts = np.unique(keys, return_counts=True)
    if (counts > 1).any():
        raise InputError(f"{path}: clip key {str(unique[counts > 1][0])!r} occurs {counts[counts > 1][0]} times; a teacher "
                         "file holds one prediction per clip key")
    return keys.tolist(), probs.astype(np.float32), tuple(labels.tolist()), data


class Teacher:
    """A teacher's targets, looked up by clip key: a store (a folder, memory-mapped: a process holds
    a batch's rows at a time) or a small `.npz` file (read whole)."""

    def __init__(self, path: str | os.PathLike, labels: LabelSet, temperature: float = 1.0):
        self.path, self.temperature = Path(path), temperature
        if not self.path.exists():
            raise InputError(f"{path}: no such teacher (a store folder or an .npz file from `audioscene predict`)")
        if self.path.is_dir():
            self.store = TeacherStore(self.path)
            names, self.data = self.store.labels, self.store.data
        else:
            self.store = None
            keys, probs, names, self.data = read_teacher(path)
            self.row = {key: i for i, key in enumerate(keys)}
            self.probs = probs
        if names != labels.names:
            raise InputError(f"{path}: the teacher's {len(names)} labels differ from this run's {len(labels)} "
                             "(distillation needs the same label set, in the same order)")

    def rows(self, keys: Sequence[str]) -> np.ndarray:
        """The row of each clip key (−1: none)."""
        if self.store is not None:
            return self.store.rows(keys)
        return np.array([self.row.get(key, -1) for key in keys], dtype=np.int64)

    def check_data(self, data: str) -> None:
        """Warn when the file was written from another data set than `data` (the training spec)."""
        if self.data and self.data != data:
            log.warning("%s was written from %s, but this run trains on %s: a teacher's predictions on other clips "
                        "with the same keys teach the wrong targets", self.path, self.data, data)

    def require(self, keys: Sequence[str]) -> np.ndarray:
        """The rows of `keys`; raise one `InputError` if any has no teacher prediction."""
        rows = self.rows(keys)
        if (rows < 0).any():
            missing = [key for key, row in zip(keys, rows) if row < 0]
            raise InputError(f"{self.path}: {len(missing)} of {len(keys)} training clips have no teacher prediction "
                             f"(e.g. {missing[0]!r}); write the teacher file for the training data with "
                             "`audioscene predict`")
        return rows

    def targets(self, keys: Sequence[str]) -> torch.Tensor:
        """Teacher targets `[len(keys), K]` (float32): `sigmoid(logit(p) / temperature)`."""
        rows = self.require(keys)
        probs = self.store.clip_probs(rows) if self.store is not None else self.probs[rows]
        if self.temperature == 1.0:  # sigmoid(logit(p)) = p: skip the logarithms (a batch's lookup stays < 0.3 ms)
            return torch.from_numpy(np.clip(probs, EPS, 1 - EPS).astype(np.float32))
        clipped = np.clip(probs.astype(np.float64), EPS, 1 - EPS)
        logits = np.log(clipped) - np.log1p(-clipped)
        return torch.from_numpy((1 / (1 + np.exp(-logits / self.temperature))).astype(np.float32))


def predict_to_file(runs: Sequence[str | os.PathLike | Run], data: DataSpec | str, output: str | os.PathLike,
                    checkpoint: str = "best", device: str = "auto", batch_size: int = 64, workers: int = 0,
                    progress: bool = True, weights: str = "auto", frames: bool = False,
                    part_clips: int = PART_CLIPS, frame_hop: float | None = None) -> Path:
    """Write a teacher: the clip probabilities of `runs` (each its `checkpoint`: best, last, avg or a
    path, with its `weights`: see `Checkpoint.weights`; all runs averaged, each through its own front
    end, at one sample rate) on the map-style data `data`, keyed by clip key. `output` a folder (or
    a name without a suffix): a store (`teacher_store.py`, with `frames` also the frame outputs, on
    the grid `frame_hop` if given, e.g. a student's, else the teachers'), written as
    `predict_store` says; a file name (`teacher.npz`): the small form, in one process."""
    from .predictor import Predictor

    if not runs:
        raise InputError("need at least one teacher run")
    if frames and not is_store(output):
        raise InputError(f"{output}: frame outputs go to a teacher store (a folder): give -o a name without a suffix")
    members = ensemble(runs, checkpoint, weights)
    spec = DataSpec.of(data)
    for member in members:
        spec.require_input(member.model.takes_audio, member.model.config.name)
    # each member its own front end, at one sample rate
    predictor = Predictor([m.model for m in members], [m.frontend for m in members], device)
    labels, clip_seconds = members[0].labels, members[0].state.train_config.get("clip_seconds", 10.0)
    options = OpenOptions(labels, clip_seconds, predictor.frontend.config.sample_rate)
    if is_store(output) and spec.streamed:  # shards: one part per shard
        return predict_store(predictor, spec.open(options), labels, output, data_identity(spec), batch_size, workers,
                             progress, frames, part_clips, frame_hop)
    dataset = spec.open_clips(options, "predict (shards need a teacher store: -o a folder)")
    if is_store(output):
        return predict_store(predictor, dataset, labels, output, data_identity(spec), batch_size, workers, progress,
                             frames, part_clips, frame_hop)
    probs = predictor.predict(dataset, batch_size, workers, desc="predict", progress=progress)["clipwise"]
    return write_teacher(output, dataset.keys, probs, labels, data=data_identity(spec))


def predict_store(predictor, dataset, labels: LabelSet, output: str | os.PathLike, data: str, batch_size: int = 64,
                  workers: int = 0, progress: bool = True, frames: bool = False,
                  part_clips: int = PART_CLIPS, frame_hop: float | None = None) -> Path:
    """The outputs of `predictor` on `dataset` as a teacher store at `output`, in parts: `part_clips`
    clips of a map-style set, or one shard each of a `shards:` stream. Under torchrun, rank r of w
    takes the parts r, r + w, ...; a part already written is skipped (a rerun resumes); the process
    that finds every part written merges them (a lock file makes that one process). No process
    group is needed."""
    from torch.utils.data import Subset
    from tqdm.auto import tqdm

    from .distributed import launch_rank

    output = Path(output)
    streamed = not hasattr(dataset, "__len__")
    n = dataset.n_clips_total if streamed else len(dataset)
    if (output / "meta.json").is_file():
        store = TeacherStore(output, verify=False)
        if store.n != n or store.labels != labels.names:
            raise InputError(f"{output}: already holds a teacher of {store.n} clips and {len(store.labels)} labels; "
                             f"this data has {n} clips: write to a new folder")
        log.info("%s is written already (%d clips)", output, n)
        return output
    rank, world = launch_rank(), int(os.environ.get("WORLD_SIZE", "1"))
    shards = dataset.index["shards"] if streamed else None
    n_parts = len(shards) if streamed else max(1, -(-n // part_clips))
    todo = [i for i in range(rank, n_parts, world) if not part_done(output, i)]
    done_before = len(range(rank, n_parts, world)) - len(todo)
    if done_before:
        log.info("%s: %d of this rank's parts are written already; resuming", output, done_before)
    for i in tqdm(todo, desc=f"predict (rank {rank})" if world > 1 else "predict", unit="part", disable=not progress):
        if streamed:
            keys, out = _predict_shard(predictor, dataset, dataset.shard_dir / shards[i]["name"], batch_size, frames)
        else:
            lo, hi = i * part_clips, min((i + 1) * part_clips, n)
            keys = dataset.keys[lo:hi]
            out = predictor.predict(Subset(dataset, range(lo, hi)), batch_size, workers, framewise=frames,
                                    progress=False)
        if frames and frame_hop:
            out["framewise"] = resample_frames(out["framewise"], predictor.frame_hop, frame_hop)
        write_part(output, i, keys, out["clipwise"], out.get("framewise"))
    if not all(part_done(output, i) for i in range(n_parts)):
        log.info("%s: this rank's parts are written; the last rank to finish merges", output)
        return output
    lock = output / "merge.lock"
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        if world > 1:  # another rank merges
            return output
        lock.unlink()  # one process: a merge that was interrupted
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    try:
        merge(output, n_parts, labels.names, data, (frame_hop or predictor.frame_hop) if frames else None)
    finally:
        lock.unlink(missing_ok=True)
    return output


def _predict_shard(predictor, dataset, path: Path, batch_size: int, frames: bool) -> tuple[list[str], dict]:
    """Keys and outputs of one shard's clips, read as a stream in batches."""
    keys, clipwise, framewise, waves = [], [], [], []

    def run() -> None:
        clip, frame = predictor(torch.stack(waves))
        clipwise.append(clip.numpy())
        if frames:
            framewise.append(frame.numpy())
        waves.clear()

    for wave, _, key, *_ in dataset.read_shard(path):
        keys.append(key)
        waves.append(wave)
        if len(waves) == batch_size:
            run()
    if waves:
        run()
    out = {"clipwise": np.concatenate(clipwise) if clipwise else np.zeros((0, len(dataset.label_set)), np.float32)}
    if frames and framewise:
        out["framewise"] = np.concatenate(framewise)
    return keys, out


def data_identity(spec: DataSpec) -> str:
    """How a teacher file names the data it was written from: the spec with absolute paths."""
    return "|".join(str(source.resolve()) for source in spec.sources) + (f"|{spec.split}" if spec.split else "")
