"""A teacher for millions of clips: clip probabilities in float16 in a memory-mapped array with a
sorted key index, so that a training process looks a batch's rows up by clip key without reading
the file, in every DDP rank, at a resident cost independent of the number of clips.

A store is a folder (written by `audioscene predict -o DIR`, `distill.predict_to_file`):

- `meta.json`: `format` "audioscene-teacher/2", `labels`, `rows` N, `key_bytes` W, `data` (the data
  set it was written from), `frame_hop` (with frame outputs) and `frames` T';
- `probs.npy` `[N, K]` float16: the clip probabilities, in the order the data set lists its clips;
- `keys.npy` `[N]` bytes of width W (UTF-8 clip keys), sorted; `order.npy` `[N]` int64: the row of
  `probs` of each sorted key. A lookup is a binary search in the memory-mapped keys;
- `frames.npy` `[N, T', K]` float16 (optional): frame outputs on the grid `frame_hop` (the teachers'
  own, or a student's: `resample_frames`).

Float16 keeps 11 significant bits: a probability in [0.5, 1] is stored within 2⁻¹² ≈ 2.4e-4, a
smaller one within 4.9e-4 of itself (down to 6e-8, below which it is 0 or subnormal); targets of a
BCE need no more (`benchmarks/bench_teacher.py` measures the loss's change). Half the bytes of
float32: 2.1 GB for 2 M clips × 527 labels.

Writing is in parts (`parts/part-NNNNNN/`, each renamed into place when whole, so an interrupted
run resumes at the first missing part); `merge` then streams the parts into the final arrays and
sorts the keys (N keys in memory, never N rows). Opening checks what a reader relies on before
using it: the header of every array against `meta.json` and the files' sizes, probabilities in
[0, 1] and finite, keys sorted and unique, `order` a permutation (streamed in blocks).
"""

from __future__ import annotations

import json
import math
import mmap
import os
import shutil
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

from ._io import atomic_open
from .errors import InputError

STORE_FORMAT = "audioscene-teacher/2"
BLOCK_ROWS = 65536  # rows per block when streaming a store


def is_store(path: str | os.PathLike) -> bool:
    """Whether `path` names a store (a folder, or a name without a suffix) rather than a small
    teacher file (`teacher.npz`)."""
    path = Path(path)
    return path.is_dir() or path.suffix == ""


def part_path(folder: str | os.PathLike, index: int) -> Path:
    return Path(folder) / "parts" / f"part-{index:06d}"


def part_done(folder: str | os.PathLike, index: int) -> bool:
    return (part_path(folder, index) / "probs.npy").is_file()


def write_part(folder: str | os.PathLike, index: int, keys: Sequence[str], probs: np.ndarray,
               frames: np.ndarray | None = None) -> Path:
    """Write part `index` (keys, float16 probabilities, optional frames) into a temporary folder, then
    rename it into place: a part either exists whole or not at all."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or len(probs) != len(keys):
        raise InputError(f"part {index}: {len(keys)} keys but probabilities of shape {probs.shape}")
    check_probabilities(probs, f"part {index}", keys)
    final = part_path(folder, index)
    staging = final.parent / f".staging-{index:06d}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    np.save(staging / "keys.npy", np.array([str(k) for k in keys], dtype=str), allow_pickle=False)
    np.save(staging / "probs.npy", probs.astype(np.float16), allow_pickle=False)
    if frames is not None:
        np.save(staging / "frames.npy", np.asarray(frames).astype(np.float16), allow_pickle=False)
    if final.exists():  # written meanwhile by another run of the same command
        shutil.rmtree(staging)
    else:
        staging.rename(final)
    return final


def check_probabilities(probs: np.ndarray, what: str, keys: Sequence[str] | None = None,
                        labels: Sequence[str] | None = None) -> None:
    """Raise one `InputError` naming `what` if any of `probs` `[N, K]` is outside [0, 1] or NaN,
    with the first such value, its clip (by key when `keys` are given, else by row) and label."""
    bad = ~((probs >= 0) & (probs <= 1))  # NaN fails both
    if bad.any():
        row, column = np.argwhere(bad)[0]
        clip = f"for clip {str(keys[row])!r}" if keys is not None else f"in row {row}"
        label = repr(str(labels[column])) if labels is not None else column
        raise InputError(f"{what}: {int(bad.sum())} probabilities outside [0, 1] (e.g. {float(probs[row, column])} "
                         f"{clip}, label {label})")


def merge(folder: str | os.PathLike, n_parts: int, labels: Sequence[str], data: str = "",
          frame_hop: float | None = None) -> Path:
    """The parts `0 .. n_parts − 1` of `folder` as one store: the rows concatenated in part order
    (streamed), the keys sorted with their rows, `meta.json` written last (atomically): a folder
    with `meta.json` is a finished store. The parts are removed afterwards."""
    folder = Path(folder)
    missing = [i for i in range(n_parts) if not part_done(folder, i)]
    if missing:
        raise InputError(f"{folder}: {len(missing)} of {n_parts} parts are missing (e.g. part {missing[0]}); run the "
                         "command again to write them")
    parts = [part_path(folder, i) for i in range(n_parts)]
    keys = np.concatenate([np.load(part / "keys.npy", allow_pickle=False) for part in parts])
    encoded = np.char.encode(keys, "utf-8") if len(keys) else np.array([], dtype="S1")
    if any(b"\x00" in key for key in encoded.tolist()):
        raise InputError(f"{folder}: a clip key contains a NUL character")
    order = np.argsort(encoded, kind="stable")
    sorted_keys = encoded[order]
    duplicate = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    if len(duplicate):
        raise InputError(f"{folder}: clip key {sorted_keys[duplicate[0]].decode()!r} occurs twice (two files with the "
                         "same stem); a teacher holds one prediction per clip key")
    n, k = len(keys), len(labels)
    first = np.load(parts[0] / "probs.npy", mmap_mode="r") if parts else np.zeros((0, k), np.float16)
    if first.shape[1:] != (k,):
        raise InputError(f"{folder}: parts hold {first.shape[1:]} labels, the teacher has {k}")
    has_frames = bool(parts) and (parts[0] / "frames.npy").is_file()
    frame_shape = np.load(parts[0] / "frames.npy", mmap_mode="r").shape[1:] if has_frames else None
    probs = np.lib.format.open_memmap(folder / "probs.npy", mode="w+", dtype=np.float16, shape=(n, k))
    frames = (np.lib.format.open_memmap(folder / "frames.npy", mode="w+", dtype=np.float16, shape=(n, *frame_shape))
              if has_frames else None)
    row = 0
    for part in parts:
        block = np.load(part / "probs.npy", mmap_mode="r")
        probs[row:row + len(block)] = block
        if frames is not None:
            frames[row:row + len(block)] = np.load(part / "frames.npy", mmap_mode="r")
        row += len(block)
    probs.flush()
    del probs
    if frames is not None:
        frames.flush()
        del frames
    np.save(folder / "keys.npy", sorted_keys, allow_pickle=False)
    np.save(folder / "order.npy", order.astype(np.int64), allow_pickle=False)
    meta = {"format": STORE_FORMAT, "labels": list(labels), "rows": n, "key_bytes": int(sorted_keys.dtype.itemsize),
            "data": str(data)}
    if has_frames:
        meta.update(frame_hop=frame_hop, frames=int(frame_shape[0]))
    with atomic_open(folder / "meta.json", "w", encoding="utf-8") as f:
        json.dump(meta, f)
    shutil.rmtree(folder / "parts", ignore_errors=True)
    return folder


def resample_frames(frames: np.ndarray, hop: float, new_hop: float) -> np.ndarray:
    """Frame outputs `[N, T, K]` on a grid of `hop` seconds put on a grid of `new_hop` (a student's):
    `round(T · hop / new_hop)` frames, each the linear interpolation between the old frames whose
    centres surround its centre (held flat beyond the first and last), as `sed.upsample` does for
    whole factors."""
    n_frames = frames.shape[1]
    count = max(1, int(round(n_frames * hop / new_hop)))
    positions = np.clip(((np.arange(count) + 0.5) * new_hop) / hop - 0.5, 0, n_frames - 1)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, n_frames - 1)
    weight = (positions - low)[None, :, None]
    return (frames[:, low] * (1 - weight) + frames[:, high] * weight).astype(frames.dtype)


class TeacherStore:
    """A finished store, opened read-only and checked (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, verify: bool = True):
        self.path = path = Path(path)
        try:
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: not a finished teacher store (no meta.json; an interrupted `audioscene predict` "
                             "resumes when run again)") from None
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable meta.json ({type(exc).__name__}: {exc})") from None
        try:
            if meta["format"] != STORE_FORMAT:
                raise ValueError(f"format {meta['format']!r}")
            self.labels = tuple(str(label) for label in meta["labels"])
            self.n, width, self.data = int(meta["rows"]), int(meta["key_bytes"]), str(meta.get("data", ""))
            self.frame_hop = meta.get("frame_hop")
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: not a teacher store's meta.json ({type(exc).__name__}: {exc})") from None
        k = len(self.labels)
        self.offsets: dict[str, int] = {}
        self.probs = self._array("probs", np.float16, (self.n, k))
        self.keys = self._array("keys", np.dtype(f"S{width}"), (self.n,))
        self.order = self._array("order", np.int64, (self.n,))
        self.frames = (self._array("frames", np.float16, (self.n, int(meta["frames"]), k))
                       if "frames" in meta else None)
        if verify:
            self.verify()

    def _array(self, name: str, dtype: np.dtype, shape: tuple) -> np.ndarray:
        """`name.npy` memory-mapped, its header (type, shape, order) and size checked first."""
        file = self.path / f"{name}.npy"
        try:
            with open(file, "rb") as f:
                version = np.lib.format.read_magic(f)
                read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                if version not in read:
                    raise ValueError(f"unsupported .npy version {version}")
                found_shape, fortran, found_dtype = read[version](f)
                offset = f.tell()
            size = file.stat().st_size
        except FileNotFoundError:
            raise InputError(f"{self.path}: {name}.npy is missing") from None
        except (OSError, ValueError) as exc:
            raise InputError(f"{file}: not an array ({exc})") from None
        if found_dtype != np.dtype(dtype) or tuple(found_shape) != tuple(shape) or fortran:
            raise InputError(f"{file}: holds {found_dtype} of shape {found_shape}; meta.json says {np.dtype(dtype)} of "
                             f"shape {shape}")
        if size != offset + math.prod(shape) * np.dtype(dtype).itemsize:
            raise InputError(f"{file}: {size} bytes, but {shape} {np.dtype(dtype)} needs "
                             f"{offset + math.prod(shape) * np.dtype(dtype).itemsize} (truncated?)")
        self.offsets[name] = offset
        mapped = np.memmap(file, dtype=dtype, mode="r", offset=offset, shape=shape)
        if hasattr(mmap, "MADV_RANDOM") and mapped.size:  # rows are read at random: no read-ahead around each
            mapped._mmap.madvise(mmap.MADV_RANDOM)
        return mapped

    def _block(self, name: str, array: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Rows `start:stop` of a mapped array read as a file (the pages stay out of this process's
        resident set, so checking a store does not make it look large)."""
        row = array.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
        with open(self.path / f"{name}.npy", "rb") as f:
            f.seek(self.offsets[name] + start * row)
            return np.frombuffer(f.read((stop - start) * row), dtype=array.dtype).reshape(-1, *array.shape[1:])

    def verify(self) -> None:
        """Probabilities in [0, 1], keys sorted and unique, `order` a permutation; block by block."""
        seen = np.zeros(self.n, dtype=bool)
        for start in range(0, self.n, BLOCK_ROWS):
            stop = min(start + BLOCK_ROWS, self.n)
            check_probabilities(self._block("probs", self.probs, start, stop), f"{self.path}: probs rows {start}-{stop}")
            keys = self._block("keys", self.keys, max(start - 1, 0), stop)
            if (keys[1:] <= keys[:-1]).any():
                i = int(np.flatnonzero(keys[1:] <= keys[:-1])[0])
                raise InputError(f"{self.path}: keys are not sorted and unique (at {keys[i + 1].decode(errors='replace')!r})")
            order = self._block("order", self.order, start, stop)
            if ((order < 0) | (order >= self.n)).any() or seen[order].any() or len(np.unique(order)) != len(order):
                raise InputError(f"{self.path}: order.npy is not a permutation of the rows")
            seen[order] = True

    def rows(self, keys: Sequence[str]) -> np.ndarray:
        """The row of each key (−1 where the store has none): a binary search in the sorted keys."""
        width = self.keys.dtype.itemsize
        encoded = [str(key).encode("utf-8") for key in keys]
        fits = np.array([len(key) <= width for key in encoded], dtype=bool)  # a longer key cannot be stored
        wanted = np.array([key if ok else b"" for key, ok in zip(encoded, fits)], dtype=f"S{width}")
        if self.n == 0:
            return np.full(len(encoded), -1, np.int64)
        position = np.minimum(np.searchsorted(self.keys, wanted), self.n - 1)
        found = fits & (np.asarray(self.keys[position]) == wanted)
        return np.where(found, np.asarray(self.order[position]), -1)

    def clip_probs(self, rows: np.ndarray) -> np.ndarray:
        """`[len(rows), K]` float32 probabilities of `rows` (read from the map, in sorted order)."""
        order = np.argsort(rows)
        out = np.empty((len(rows), len(self.labels)), np.float32)
        out[order] = self.probs[rows[order]]
        return out
