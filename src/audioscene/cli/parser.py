"""The `audioscene` command line: the top-level parser, one subcommand per module of
`cli/commands/` in the order of `commands.COMMANDS`."""

from __future__ import annotations

import argparse

from .arguments import PROG, Parser
from . import commands


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Audio tagging and sound event detection with the paper's ResNets.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--offline", action="store_true", help="never fetch (pretrained:NAME from the cache only; "
                                                               "as AUDIOSCENE_OFFLINE=1)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for command in commands.COMMANDS:  # asked now: a command added to the list later is in
        command.arguments(sub)
    return parser
