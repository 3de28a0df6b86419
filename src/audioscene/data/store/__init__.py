"""Clips at scale: tar shards in WebDataset layout, an index with checksums (`index`), written and
verified by `writer`, streamed by `reader`.

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

from .index import DEFAULT_SHARD_BYTES, INDEX_NAME, ShardError, ShardInfo, read_index
from .reader import ShardDataset
from .writer import VerifyReport, pack, verify

__all__ = ["DEFAULT_SHARD_BYTES", "INDEX_NAME", "ShardDataset", "ShardError", "ShardInfo", "VerifyReport", "pack",
           "read_index", "verify"]
