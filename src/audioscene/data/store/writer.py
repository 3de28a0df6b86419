"""Writing shards (`pack`) and checking them against their index (`verify`)."""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf

from ..._io import OutputError, atomic_open, sha256_of, staged_folder
from ...audio import SAMPLE_RATE, decode, load
from ...errors import check_number
from ...labels import LabelSet
from ...strong import StrongLabels
from ..folder import Clip, DataSetError
from .index import DEFAULT_SHARD_BYTES, INDEX_FORMAT, INDEX_NAME, SAFE_KEY, ShardError, ShardInfo, read_index

log = logging.getLogger(__name__)


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


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: same clips, same bytes
    tar.addfile(info, io.BytesIO(data))


def pack(clips: Iterable[Clip], out_dir: str | os.PathLike, labels: LabelSet,
         shard_bytes: int = DEFAULT_SHARD_BYTES, progress: bool = True, strong: StrongLabels | None = None) -> Path:
    """Write clips into shards of about `shard_bytes` plus `index.json`; returns the index path.
    The key of a clip is its file stem (or `clip_NNNNNN` for arrays) and must be unique. With
    `strong` labels, each clip they name stores its events in its `.json` member (`"events"`:
    `[[onset, offset, label], ...]`, one class's overlapping events merged) and the index records
    `max_events`, the most events of a clip, so training reads them with the audio.

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
                                   shard_bytes, strong)
            index = {"format": INDEX_FORMAT, "n_clips": sum(s.n_clips for s in shards), "labels": list(labels.names),
                     "shards": [vars(s) for s in shards]}
            if strong is not None:
                index["max_events"] = max(len(events) for events in strong.events.values())
            with atomic_open(staging / INDEX_NAME, "w", encoding="utf-8") as f:
                json.dump(index, f, indent=1)
    except OutputError as exc:
        raise ShardError(str(exc)) from None
    except OSError as exc:
        raise ShardError(f"{out_dir}: packing failed, the folder is unchanged ({exc.strerror or exc})") from None
    log.info("packed %d clips into %d shards in %s", index["n_clips"], len(shards), out_dir)
    return out_dir / INDEX_NAME


def _write_shards(clips: Iterable[Clip], folder: Path, labels: LabelSet, shard_bytes: int,
                  strong: StrongLabels | None) -> list[ShardInfo]:
    shards: list[ShardInfo] = []
    keys: set[str] = set()
    tar = path = None
    count = size = 0

    def close_shard():
        nonlocal tar
        tar.close()
        shards.append(ShardInfo(path.name, count, path.stat().st_size, sha256_of(path)))
        tar = None

    for number, clip in enumerate(clips):
        key = clip.source.stem if isinstance(clip.source, Path) else f"clip_{number:06d}"
        if key in keys or not SAFE_KEY.match(key):
            raise DataSetError(f"{clip.source}: the key {key!r} is used twice or is not a plain dot-free name; "
                               "shard keys must be unique file stems")
        keys.add(key)
        labels.multi_hot(clip.labels)  # unknown labels fail here, before anything is written
        audio = _flac_bytes(clip.source)
        meta = {"labels": list(clip.labels), "source": str(clip.source) if isinstance(clip.source, Path) else None}
        if strong is not None and key in strong.events:
            meta["events"] = [[float(onset), float(offset), labels.names[int(k)]]
                              for onset, offset, k in strong.events[key]]
        meta = json.dumps(meta).encode()
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
        if path.stat().st_size != shard["bytes"] or sha256_of(path) != shard["sha256"]:
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
