"""The shard format: file names, the index and its validation, the error every shard problem raises."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import ShardError

INDEX_NAME = "index.json"
INDEX_FORMAT = "audioscene-shards/1"
DEFAULT_SHARD_BYTES = 10**9
SHARD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*\.tar$")  # plain names, no '..' or '/'
MAX_EVENTS = 10_000  # the most events a clip may store (a bound on what an untrusted index makes us allocate)
SAFE_KEY = re.compile(r"^[^./\\\x00-\x1f\x7f]+$")  # a tar member stem: no dot, slash or control character


@dataclass(frozen=True)
class ShardInfo:
    name: str
    n_clips: int
    bytes: int
    sha256: str


def read_index(shard_dir: str | os.PathLike) -> dict:
    """The validated `index.json` of a shard folder; anything malformed raises `ShardError` naming it."""
    path = Path(shard_dir) / INDEX_NAME
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShardError(f"{path}: no shard index (write shards with `audioscene pack`)") from None
    except OSError as exc:
        raise ShardError(f"{path}: cannot be read ({exc.strerror or exc})") from None
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
    max_events = index.get("max_events", 0)
    if not isinstance(max_events, int) or isinstance(max_events, bool) or not 0 <= max_events <= MAX_EVENTS:
        raise ShardError(f"{path}: 'max_events' must be a whole number from 0 to {MAX_EVENTS}")
    return index
