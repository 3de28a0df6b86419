"""Reading shards: `ShardDataset` streams each clip once per epoch, split over ranks and workers."""

from __future__ import annotations

import json
import logging
import os
import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ...audio import SAMPLE_RATE, decode
from ...labels import LabelSet
from ...strong import padded
from ..folder import fix_length
from ..sampler import balanced_stream
from .index import INDEX_NAME, ShardError, read_index

log = logging.getLogger(__name__)


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
    `sampler.balanced_stream` over a buffer of that many clips. With `with_events` (a pack written
    with strong labels: `stores_events`), each item also carries the clip's events as
    `[max_events, 4]` rows (`strong.padded`) and whether it has strong labels.
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
        self.with_events = False  # items carry (events, strongly labelled); needs `stores_events`

    @property
    def stores_events(self) -> bool:
        """Whether the pack was written with strong labels (`pack(..., strong=...)`)."""
        return "max_events" in self.index

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
                 for item in self.read_shard(self.shard_dir / shard["name"]))
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

    def read_shard(self, path: Path) -> Iterator[tuple]:
        """`(waveform, target, key)` (and events) of each clip of one shard, in its order."""
        for key, audio, meta in self._samples(path):
            try:
                wave = decode(audio, f"{path}:{key}.flac", sr=self.sample_rate)
                meta = json.loads(meta)
                target = self.label_set.multi_hot(meta["labels"])
                events = self._events(meta) if self.with_events else None
            except Exception as exc:  # libsndfile, JSON and label errors all mean "this clip is bad"
                if not self.skip_corrupt:
                    raise ShardError(f"{path}: member {key}.flac/.json cannot be used ({type(exc).__name__}: {exc})") from None
                log.warning("%s: skipped corrupt clip %s (%s)", path, key, exc)
                continue
            item = (torch.from_numpy(fix_length(wave, self.clip_samples)), torch.from_numpy(target), key)
            yield item if events is None else (*item, padded(events, self.index["max_events"]), "events" in meta)

    def _events(self, meta: dict) -> np.ndarray:
        """The clip's stored events as `[E, 3]` (onset, offset, class index), checked as data."""
        rows = meta.get("events", [])
        if not isinstance(rows, list) or len(rows) > self.index["max_events"]:
            raise ValueError(f"'events' must be a list of at most max_events = {self.index['max_events']} events")
        events = np.zeros((len(rows), 3), np.float32)
        for n, row in enumerate(rows):
            if not (isinstance(row, list) and len(row) == 3 and all(isinstance(t, (int, float)) for t in row[:2])
                    and 0 <= row[0] <= row[1] < float("inf") and isinstance(row[2], str)):
                raise ValueError(f"event {n} {row!r} is not [onset, offset, label] with 0 <= onset <= offset")
            events[n] = row[0], row[1], self.label_set.index(row[2])
        return events
