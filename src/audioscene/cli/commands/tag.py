"""`audioscene tag`: top labels of audio files (any length)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..arguments import (
    add_model_options,
    count,
    positive_int,
)
from ..common import open_tagger, readable_analyses


def arguments(sub) -> None:
    p = sub.add_parser("tag", help="top labels of audio files (any length)",
                       description="Tag audio files: clip scores (max over ~10 s windows) and the top-k labels. "
                                   "Folders expand to the audio files in them; files that cannot be read are named "
                                   "on stderr and skipped (exit code 1 at the end).",
                       epilog="examples:\n  audioscene tag recordings/ --run runs/b_att --top-k 3\n"
                              "  audioscene tag a.wav --run model.onnx --format json > tags.json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATHS", help="audio files or folders of them")
    p.add_argument("--top-k", type=positive_int, default=5, help="labels per file (default 5)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format (default table)")
    p.add_argument("--workers", type=count, default=2, help="threads decoding the next files (default 2; 0: none)")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import csv
    import json

    tagger = open_tagger(args)
    rows, failed = [], []
    for name, result in readable_analyses(args, tagger, args.paths, failed):
        tags = result.top(args.top_k)
        rows.append((name, tags))
        if args.format == "table":
            print(f"{name}\t" + ", ".join(f"{label} {score:.3f}" for label, score in tags), flush=True)
    if args.format == "json":
        print(json.dumps([{"file": name, "tags": [{"label": label, "score": round(score, 6)} for label, score in tags]}
                          for name, tags in rows], indent=2, ensure_ascii=False))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(("file", "rank", "label", "score"))
        writer.writerows((name, rank, label, f"{score:.6f}")
                         for name, tags in rows for rank, (label, score) in enumerate(tags, start=1))
    return 1 if failed else 0
