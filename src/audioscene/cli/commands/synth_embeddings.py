"""`audioscene synth-embeddings`: AudioSet-style embedding TFRecords of a synthetic split (an
offline stand-in for the released features)."""

from __future__ import annotations

from pathlib import Path

from ..arguments import (
    count,
)


def arguments(sub) -> None:
    p = sub.add_parser("synth-embeddings", help="AudioSet-style embedding TFRecords of a synthetic split (offline "
                                                "stand-in for the released features)",
                       description="Write a synthetic split as TFRecords in the layout of AudioSet's released "
                                   "embeddings (pooled log-mel through a fixed random projection, 8-bit quantised), "
                                   "for the embedding baselines (--model yu_multilevel_att / kong_att).",
                       epilog="example: audioscene synth-embeddings --data data/synth/train --out data/emb/train")
    p.add_argument("--data", type=Path, required=True, help="synthetic split folder (weak.csv + audio/)")
    p.add_argument("--out", type=Path, required=True, help="folder for the .tfrecord files")
    p.add_argument("--seed", type=count, default=0, help="seed of the projection; use the same for every split "
                                                        "(default 0)")
    p.set_defaults(func=run)


def run(args) -> None:
    from ...data.embeddings import write_synthetic

    files = write_synthetic(args.data, args.out, seed=args.seed)
    print(f"wrote {len(files)} .tfrecord files to {args.out}; train on it with --data embeddings:{args.out}")
