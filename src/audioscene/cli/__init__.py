"""The `audioscene` command line: `parser` builds it from `commands.COMMANDS` (one module per
subcommand: its options and its run; argument types and shared option groups in `arguments`).
Errors a user can cause and fix print one line on stderr; anything else is a bug and keeps its
traceback."""

from __future__ import annotations

import logging
import os
import sys

from ..cache import OFFLINE_VARIABLE
from ..distributed import launch_rank
from ..errors import AudioSceneError
from .arguments import PROG
from .parser import build_parser

__all__ = ["main", "build_parser"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.offline:
        return _run(args)
    saved = os.environ.get(OFFLINE_VARIABLE)
    os.environ[OFFLINE_VARIABLE] = "1"  # for this command only (main also runs in-process, e.g. in tests)
    try:
        return _run(args)
    finally:
        if saved is None:
            del os.environ[OFFLINE_VARIABLE]
        else:
            os.environ[OFFLINE_VARIABLE] = saved


def _run(args) -> int:
    secondary_rank = launch_rank() != 0  # under torchrun, rank 0 speaks for all
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING if secondary_rank else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return args.func(args) or 0
    except AudioSceneError as exc:  # the user's to fix: one line; anything else is a bug: its traceback
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
