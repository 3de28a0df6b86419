"""Clips at scale: tar shards in WebDataset layout, an index with checksums, and a streaming reader.

A shard folder holds `shard-000000.tar`, `shard-000001.tar`, ... (each about `shard_bytes`, 1 GB by
default) and `index.json`::

    {"format": "audioscene-shards/1", "n_clips": 2000, "labels": [...],
     "shards": [{"name": "shard-000000.tar", "n_clips": 1000, "bytes": ..., "sha256": "..."}, ...]}

Each clip is two members, `KEY.flac` (16 kHz mono) and `KEY.json` (`{"labels": [...], ...}`), so
the shards read sequentially from local disk or object storage and any WebDataset tool can read
them. Shards and the index are written to a temporary name and renamed, so a crash never leaves
a half shard that looks complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .._io import atomic_open
from ..audio import SAMPLE_RATE, decode, load
from ..labels import LabelSet
from .folder import Clip, DataSetError, fix_length

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
INDEX_FORMAT = "audioscene-shards/1"
DEFAULT_SHARD_BYTES = 10**9


class ShardError(ValueError):
    """A shard or index that cannot be read; the message names the shard (and member)."""


@dataclass(frozen=True)
class ShardInfo:
    name: str
    n_clips: int
    bytes: int
    sha256: str


def _flac_bytes(source: Path | np.ndarray) -> bytes:
    """FLAC files are stored as they are; anything else is decoded and written as 16 kHz FLAC."""
    if not isinstance(source, np.ndarray) and source.suffix.lower() == ".flac":
        return source.read_bytes()
    wave = source if isinstance(source, np.ndarray) else load(source)
    buffer = io.BytesIO()
    sf.write(buffer, wave, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: same clips, same bytes
    tar.addfile(info, io.BytesIO(data))


def pack(clips: Iterable[Clip], out_dir: str | os.PathLike, labels: LabelSet,
         shard_bytes: int = DEFAULT_SHARD_BYTES, progress: bool = True) -> Path:
    """Write clips into shards of about `shard_bytes` plus `index.json`; returns the index path.
    The key of a clip is its file stem (or `clip_NNNNNN` for arrays) and must be unique."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards: list[ShardInfo] = []
    keys: set[str] = set()
    tar = path = None
    count = size = 0

    def close_shard():
        nonlocal tar
        tar.close()
        final = out_dir / path.name.removesuffix(".partial")
        os.replace(path, final)
        shards.append(ShardInfo(final.name, count, final.stat().st_size, _sha256(final)))
        tar = None

    for number, clip in enumerate(tqdm(clips, desc="pack", unit="clip", disable=not progress)):
        key = clip.source.stem if isinstance(clip.source, Path) else f"clip_{number:06d}"
        if key in keys or "." in key:
            raise DataSetError(f"{clip.source}: the key {key!r} is used twice or contains a dot; shard keys "
                               "must be unique and dot-free")
        keys.add(key)
        labels.multi_hot(clip.labels)  # unknown labels fail here, before anything is written
        audio = _flac_bytes(clip.source)
        meta = json.dumps({"labels": list(clip.labels), "source": str(clip.source) if isinstance(clip.source, Path)
                           else None}).encode()
        if tar is not None and size + len(audio) > shard_bytes:
            close_shard()
        if tar is None:
            path = out_dir / f"shard-{len(shards):06d}.tar.partial"
            tar, count, size = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT), 0, 0
        _add_member(tar, f"{key}.flac", audio)
        _add_member(tar, f"{key}.json", meta)
        count, size = count + 1, size + len(audio) + len(meta) + 1024
    if tar is not None:
        close_shard()
    index = {"format": INDEX_FORMAT, "n_clips": sum(s.n_clips for s in shards), "labels": list(labels.names),
             "shards": [vars(s) for s in shards]}
    with atomic_open(out_dir / INDEX_NAME, "w", encoding="utf-8") as f:
        json.dump(index, f, indent=1)
    log.info("packed %d clips into %d shards in %s", index["n_clips"], len(shards), out_dir)
    return out_dir / INDEX_NAME


def read_index(shard_dir: str | os.PathLike) -> dict:
    path = Path(shard_dir) / INDEX_NAME
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShardError(f"{path}: no shard index (write shards with `audioscene pack`)") from None
    except json.JSONDecodeError as exc:
        raise ShardError(f"{path}: not valid JSON ({exc})") from None
    if index.get("format") != INDEX_FORMAT:
        raise ShardError(f"{path}: not an audioscene shard index (format {index.get('format')!r})")
    return index


@dataclass
class VerifyReport:
    n_shards: int
    n_clips: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(shard_dir: str | os.PathLike, progress: bool = True) -> VerifyReport:
    """Check every shard listed in the index: present, same size and sha256, readable members,
    one `.flac` and one `.json` per key, the listed clip count."""
    from tqdm.auto import tqdm

    shard_dir = Path(shard_dir)
    index = read_index(shard_dir)
    problems, n_clips = [], 0
    for shard in tqdm(index["shards"], desc="verify", unit="shard", disable=not progress):
        path = shard_dir / shard["name"]
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        if path.stat().st_size != shard["bytes"] or _sha256(path) != shard["sha256"]:
            problems.append(f"{path}: checksum mismatch (the file changed or is damaged)")
            continue
        try:
            members: dict[str, set[str]] = {}
            with tarfile.open(path) as tar:
                for member in tar:
                    key, _, ext = member.name.partition(".")
                    members.setdefault(key, set()).add(ext)
            incomplete = [k for k, exts in members.items() if exts != {"flac", "json"}]
            if incomplete:
                problems.append(f"{path}: clip {incomplete[0]} lacks its .flac or .json member")
            elif len(members) != shard["n_clips"]:
                problems.append(f"{path}: {len(members)} clips, the index says {shard['n_clips']}")
            n_clips += len(members)
        except tarfile.TarError as exc:
            problems.append(f"{path}: unreadable tar ({exc})")
    return VerifyReport(len(index["shards"]), n_clips, problems)


class ShardDataset(IterableDataset):
    """Stream `(waveform [clip_samples], target [K])` from shards, each clip once per epoch.

    Shards are split first over ranks, then over each rank's DataLoader workers: rank `r` of `R`
    reads `order[r::R]` and its worker `w` of `W` every `W`-th of those, where `order` is the shard
    list shuffled by `(seed, epoch)` (call `set_epoch` each epoch). Each clip is read exactly once
    per epoch; ranks get whole shards, so their clip counts differ by at most a shard's. Rank and world size come from
    `torch.distributed` when it is initialised. A clip that fails to decode raises `ShardError`
    naming shard and member, or with `skip_corrupt` is skipped and counted in `skipped` (per worker).
    With `return_keys`, items are `(waveform, target, key)`.
    """

    def __init__(self, shard_dir: str | os.PathLike, label_set: LabelSet | None = None, clip_seconds: float = 10.0,
                 shuffle: bool = True, seed: int = 0, skip_corrupt: bool = False,
                 rank: int | None = None, world_size: int | None = None, return_keys: bool = False):
        self.shard_dir = Path(shard_dir)
        self.index = read_index(self.shard_dir)
        self.label_set = label_set or LabelSet(tuple(self.index["labels"]))
        self.clip_samples = int(round(clip_seconds * SAMPLE_RATE))
        self.shuffle, self.seed, self.skip_corrupt = shuffle, seed, skip_corrupt
        self._rank, self._world_size = rank, world_size
        self.return_keys = return_keys  # items (waveform, target, key) instead of (waveform, target)
        self.epoch = 0
        self.skipped = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rank_world(self) -> tuple[int, int]:
        if self._rank is not None:
            return self._rank, self._world_size or 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def shard_order(self) -> list[dict]:
        shards = list(self.index["shards"])
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(shards))
            shards = [shards[i] for i in order]
        return shards

    def shards_for(self, rank: int, world_size: int, worker: int, n_workers: int) -> list[dict]:
        """Rank `r` takes `order[r::world_size]`; its worker `w` takes every `n_workers`-th of those."""
        return self.shard_order()[rank::world_size][worker::n_workers]

    def __len__(self) -> int:
        """Clips this rank reads in an epoch (all its workers together)."""
        rank, world = self._rank_world()
        return sum(s["n_clips"] for s in self.shard_order()[rank::world])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rank, world = self._rank_world()
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        for shard in self.shards_for(rank, world, worker, n_workers):
            yield from self._read_shard(self.shard_dir / shard["name"])

    def _samples(self, path: Path) -> Iterator[tuple[str, bytes, bytes]]:
        import webdataset as wds

        dataset = wds.WebDataset(str(path), shardshuffle=False, nodesplitter=None, workersplitter=None,
                                 empty_check=False)
        last = "(start)"
        try:
            for sample in dataset:
                last = sample["__key__"]
                if "flac" not in sample or "json" not in sample:
                    raise ShardError(f"{path}: clip {last} lacks its .flac or .json member")
                yield last, sample["flac"], sample["json"]
        except (tarfile.TarError, OSError, ValueError) as exc:
            if isinstance(exc, ShardError):
                raise
            raise ShardError(f"{path}: unreadable after member {last} ({type(exc).__name__}: {exc})") from None

    def _read_shard(self, path: Path) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for key, audio, meta in self._samples(path):
            try:
                wave = decode(audio, f"{path}:{key}.flac")
                target = self.label_set.multi_hot(json.loads(meta)["labels"])
            except Exception as exc:  # libsndfile, JSON and label errors all mean "this clip is bad"
                if not self.skip_corrupt:
                    raise ShardError(f"{path}: member {key}.flac/.json cannot be used ({type(exc).__name__}: {exc})") from None
                self.skipped += 1
                log.warning("%s: skipped corrupt clip %s (%s)", path, key, exc)
                continue
            item = torch.from_numpy(fix_length(wave, self.clip_samples)), torch.from_numpy(target)
            yield (*item, key) if self.return_keys else item

