"""`audioscene verify`: check every shard against its index (size, sha256, members)."""

from __future__ import annotations

from pathlib import Path

from ..common import warn


def arguments(sub) -> None:
    p = sub.add_parser("verify", help="check every shard against its index (size, sha256, members)",
                       description="Check that every shard listed in index.json exists, has the recorded size and "
                                   "sha256, and holds one .flac and one .json per clip. Exit code 1 on any problem.",
                       epilog="example: audioscene verify shards/train")
    p.add_argument("shards", type=Path, metavar="SHARDS", help="shard folder (with index.json)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ...data.store import verify

    report = verify(args.shards)
    for problem in report.problems:
        warn(args, problem)
    print(f"{args.shards}: {report.n_shards} shards, {report.n_clips} clips, "
          f"{'all checksums and members good' if report.ok else f'{len(report.problems)} problems'}")
    return 0 if report.ok else 1
