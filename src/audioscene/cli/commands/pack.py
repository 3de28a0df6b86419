"""`audioscene pack`: write a data set into tar shards (WebDataset layout) with a checksummed index."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..arguments import (
    add_data_option,
    positive,
)


def arguments(sub) -> None:
    p = sub.add_parser("pack", help="write a data set into tar shards (WebDataset layout) with a checksummed index",
                       description="Pack clips into shards of about --shard-mb (key.flac + key.json per clip) and "
                                   "index.json with each shard's clip count and sha256; files are written atomically.",
                       epilog="examples:\n  audioscene pack --data data/train --out shards/train\n"
                              "  audioscene pack --data folder:my_clips --labels my_clips/labels.csv --out shards/mine\n"
                              "  audioscene pack --data data/train --strong-labels data/train/strong.tsv --out shards/strong",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(p, "--data", "data to pack", kinds=("dir", "folder", "dcase2018"))
    p.add_argument("--out", type=Path, required=True, help="shard folder to write")
    p.add_argument("--shard-mb", type=positive, default=1000.0, help="shard size in MB (default 1000)")
    p.add_argument("--strong-labels", type=Path, metavar="FILE.tsv",
                   help="a DCASE event TSV of some of the clips: each stores its events, and training on the shards "
                        "uses them as with train --strong-labels")
    p.set_defaults(func=run)


def run(args) -> None:
    from ...data import DataSpec
    from ...data.store import pack
    from ...strong import StrongLabels

    dataset = DataSpec.parse(args.data, args.labels).open_clips(purpose="packing")
    strong = None if args.strong_labels is None else StrongLabels.read(args.strong_labels, dataset.label_set,
                                                                        dataset.keys)
    index = pack(dataset.clips, args.out, dataset.label_set, shard_bytes=int(args.shard_mb * 2**20), strong=strong)
    stored = "" if strong is None else f" ({len(strong.events)} with their events)"
    print(f"packed {len(dataset.clips)} clips{stored} -> {index}")
