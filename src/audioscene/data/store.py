"""Clips at scale: tar shards in WebDataset layout, an index with checksums, and a streaming reader.

A shard folder holds `shard-000000.tar`, `shard-000001.tar`, ... (each about `shard_bytes`, 1 GB by
default) and `index.json`::

    {"format": "audioscene-shards/1", "n_clips": 2000, "labels": [...],
     "shards": [{"name": "shard-000000.tar", "n_clips": 1000, "bytes": ..., "sha256": "..."}, ...]}

Each clip is two members, `KEY.flac` (16 kHz mono) and `KEY.json` (`{"labels": [...], ...}`), so
the shards read sequentially and any WebDataset tool can read them. A pack is built in a staging
folder beside `out_dir` and swapped in only when complete, so a failed or killed pack leaves the
previous pack as it was.

Shard sets are passed around, so `index.json` is untrusted: shard names must be plain file names
of this folder (`shard-000000.tar`; no scheme, no `/`, no `..`), and shards are only ever opened
as local files (never as URLs or shell pipes, as WebDataset would treat `pipe:...` names).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .._io import OutputError, atomic_open, staged_folder
from ..audio import SAMPLE_RATE, decode, load
from ..errors import AudioSceneError, check_number
from ..labels import LabelSet
from .folder import Clip, DataSetError, fix_length
from .sampler import balanced_stream

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
INDEX_FORMAT = "audioscene-shards/1"
DEFAULT_SHARD_BYTES = 10**9
SHARD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*\.tar$")  # plain names, no '..' or '/'
SAFE_KEY = re.compile(r"^[^./\\\x00-\x1f\x7f]+$")  # a tar member stem: no dot, slash or control character


class ShardError(AudioSceneError, ValueError):
    """A shard or index that cannot be read; the message names the shard (and member)."""


@dataclass(frozen=True)
class ShardInfo:
    name: str
    n_clips: int
    bytes: int
    sha256: str


def _flac_bytes(source: Path | np.ndarray) -> bytes:
    """FLAC files are stored as they are (after a full decode, so a damaged file is refused, not
    packed); anything else is decoded and written as 16 kHz FLAC."""
    if isinstance(source, np.ndarray):
        wave = source
    elif source.suffix.lower() == ".flac":
        data = source.read_bytes()
        wave = decode(data, str(source))  # a damaged file raises AudioError here (and is decoded once)
        if sf.info(io.BytesIO(data)).samplerate == SAMPLE_RATE:
            return data
    else:
        wave = load(source)
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
    The key of a clip is its file stem (or `clip_NNNNNN` for arrays) and must be unique.

    The pack is built in a staging folder and replaces `out_dir` only when complete: a pack that
    fails (unreadable clip, disk full) or is killed leaves an earlier pack in `out_dir` intact. A
    non-empty `out_dir` that is not a shard folder is refused (its files would be deleted).
    """
    from tqdm.auto import tqdm

    check_number("shard_bytes", shard_bytes, integer=True, low=1)
    out_dir = Path(out_dir)
    try:
        with staged_folder(out_dir, lambda folder: (folder / INDEX_NAME).is_file(), "shard folder") as staging:
            shards = _write_shards(tqdm(clips, desc="pack", unit="clip", disable=not progress), staging, labels,
                                   shard_bytes)
            index = {"format": INDEX_FORMAT, "n_clips": sum(s.n_clips for s in shards), "labels": list(labels.names),
                     "shards": [vars(s) for s in shards]}
            with atomic_open(staging / INDEX_NAME, "w", encoding="utf-8") as f:
                json.dump(index, f, indent=1)
    except OutputError as exc:
        raise ShardError(str(exc)) from None
    except OSError as exc:
        raise ShardError(f"{out_dir}: packing failed, the folder is unchanged ({exc.strerror or exc})") from None
    log.info("packed %d clips into %d shards in %s", index["n_clips"], len(shards), out_dir)
    return out_dir / INDEX_NAME


def _write_shards(clips: Iterable[Clip], folder: Path, labels: LabelSet, shard_bytes: int) -> list[ShardInfo]:
    shards: list[ShardInfo] = []
    keys: set[str] = set()
    tar = path = None
    count = size = 0

    def close_shard():
        nonlocal tar
        tar.close()
        shards.append(ShardInfo(path.name, count, path.stat().st_size, _sha256(path)))
        tar = None

    for number, clip in enumerate(clips):
        key = clip.source.stem if isinstance(clip.source, Path) else f"clip_{number:06d}"
        if key in keys or not SAFE_KEY.match(key):
            raise DataSetError(f"{clip.source}: the key {key!r} is used twice or is not a plain dot-free name; "
                               "shard keys must be unique file stems")
        keys.add(key)
        labels.multi_hot(clip.labels)  # unknown labels fail here, before anything is written
        audio = _flac_bytes(clip.source)
        meta = json.dumps({"labels": list(clip.labels), "source": str(clip.source) if isinstance(clip.source, Path)
                           else None}).encode()
        if tar is not None and size + len(audio) > shard_bytes:
            close_shard()
        if tar is None:
            path = folder / f"shard-{len(shards):06d}.tar"
            tar, count, size = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT), 0, 0
        _add_member(tar, f"{key}.flac", audio)
        _add_member(tar, f"{key}.json", meta)
        count, size = count + 1, size + len(audio) + len(meta) + 1024
    if tar is not None:
        close_shard()
    return shards


def read_index(shard_dir: str | os.PathLike) -> dict:
    """The validated `index.json` of a shard folder; anything malformed raises `ShardError` naming it."""
    path = Path(shard_dir) / INDEX_NAME
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShardError(f"{path}: no shard index (write shards with `audioscene pack`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ShardError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        found = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise ShardError(f"{path}: not an audioscene shard index (format {found!r})")
    labels, shards = index.get("labels"), index.get("shards")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ShardError(f"{path}: 'labels' must be a list of label names")
    if not isinstance(shards, list):
        raise ShardError(f"{path}: 'shards' must be a list of shard records")
    for number, shard in enumerate(shards):
        if not isinstance(shard, dict):
            raise ShardError(f"{path}: shard record {number} is not an object")
        name = shard.get("name")
        if not isinstance(name, str) or not SHARD_NAME.match(name):
            raise ShardError(f"{path}: shard record {number}: name {name!r} is not a plain .tar file name in this "
                             "folder (no scheme, '/' or '..')")
        for field, kind in (("n_clips", int), ("bytes", int), ("sha256", str)):
            if not isinstance(shard.get(field), kind) or isinstance(shard.get(field), bool):
                raise ShardError(f"{path}: shard record {number} ({name}): {field!r} must be {kind.__name__}")
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
    """Stream `(waveform [clip_samples], target [K], key)` from shards, each clip once per epoch (a
    `ClipStream`).

    Shards are split first over ranks, then over each rank's DataLoader workers: rank `r` of `R`
    reads `order[r::R]` and its worker `w` of `W` every `W`-th of those, where `order` is the shard
    list shuffled by `(seed, epoch)` (call `set_epoch` each epoch). Each clip is read exactly once
    per epoch; ranks get whole shards, so their clip counts differ by at most a shard's. The rank and
    world size are given by the caller (training passes its `distributed.Context`'s). A clip that
    fails to decode raises `ShardError` naming shard and member, or with `skip_corrupt` is skipped
    with a warning (`train` reports how many clips an epoch missed: the index's count minus the
    clips read, over all workers and ranks).

    With `balance_buffer` > 0 (`--sampler balanced`) each worker's stream is class-balanced by
    `sampler.balanced_stream` over a buffer of that many clips.
    """

    def __init__(self, shard_dir: str | os.PathLike, label_set: LabelSet | None = None, clip_seconds: float = 10.0,
                 shuffle: bool = True, seed: int = 0, skip_corrupt: bool = False, rank: int = 0, world_size: int = 1,
                 sample_rate: int = SAMPLE_RATE):
        self.shard_dir = Path(shard_dir)
        self.index = read_index(self.shard_dir)
        self.label_set = label_set or LabelSet(tuple(self.index["labels"]))
        if tuple(self.index["labels"]) != self.label_set.names:
            raise ShardError(f"{self.shard_dir / INDEX_NAME}: its label set differs from the run's "
                             f"({len(self.index['labels'])} vs {len(self.label_set)} labels)")
        self.sample_rate = sample_rate  # clips are stored at SAMPLE_RATE and decoded at this rate
        self.clip_samples = int(round(clip_seconds * sample_rate))
        self.shuffle, self.seed, self.skip_corrupt = shuffle, seed, skip_corrupt
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.balance_buffer = 0  # > 0: class-balanced draws from a buffer of this many clips per worker

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard_order(self) -> list[dict]:
        shards = list(self.index["shards"])
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(shards))
            shards = [shards[i] for i in order]
        return shards

    def _rank_shards(self, rank: int) -> list[dict]:
        """Rank `r` takes `order[r::world_size]`."""
        return self.shard_order()[rank::self.world_size]

    def shares(self) -> list[int]:
        """Clips each rank reads in the current epoch (all its workers together)."""
        return [sum(s["n_clips"] for s in self._rank_shards(rank)) for rank in range(self.world_size)]

    @property
    def n_clips_total(self) -> int:
        """Clips in the whole shard set (all ranks)."""
        return self.index["n_clips"] if isinstance(self.index.get("n_clips"), int) else \
            sum(s["n_clips"] for s in self.index["shards"])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, str]]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        items = (item for shard in self._rank_shards(self.rank)[worker::n_workers]
                 for item in self._read_shard(self.shard_dir / shard["name"]))
        if self.balance_buffer:
            items = balanced_stream(items, self.balance_buffer,
                                    np.random.default_rng([self.seed, self.epoch, self.rank, worker]))
        yield from items

    def _samples(self, path: Path) -> Iterator[tuple[str, bytes, bytes]]:
        """`(key, flac bytes, json bytes)` of each clip, reading the tar as a local stream."""
        last, key, parts = "(start)", None, {}
        try:
            with open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    member_key, _, ext = member.name.partition(".")
                    if member_key != key:
                        if key is not None:
                            yield self._clip(path, key, parts)
                        key, parts = member_key, {}
                    parts[ext] = tar.extractfile(member).read()
                    last = member.name
                if key is not None:
                    yield self._clip(path, key, parts)
        except (tarfile.TarError, OSError) as exc:
            raise ShardError(f"{path}: unreadable after member {last} ({type(exc).__name__}: {exc})") from None

    @staticmethod
    def _clip(path: Path, key: str, parts: dict[str, bytes]) -> tuple[str, bytes, bytes]:
        if "flac" not in parts or "json" not in parts:
            raise ShardError(f"{path}: clip {key} lacks its .flac or .json member")
        return key, parts["flac"], parts["json"]

    def _read_shard(self, path: Path) -> Iterator[tuple[torch.Tensor, torch.Tensor, str]]:
        for key, audio, meta in self._samples(path):
            try:
                wave = decode(audio, f"{path}:{key}.flac", sr=self.sample_rate)
                target = self.label_set.multi_hot(json.loads(meta)["labels"])
            except Exception as exc:  # libsndfile, JSON and label errors all mean "this clip is bad"
                if not self.skip_corrupt:
                    raise ShardError(f"{path}: member {key}.flac/.json cannot be used ({type(exc).__name__}: {exc})") from None
                log.warning("%s: skipped corrupt clip %s (%s)", path, key, exc)
                continue
            yield torch.from_numpy(fix_length(wave, self.clip_samples)), torch.from_numpy(target), key

