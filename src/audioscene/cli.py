"""The `audioscene` command line: parses arguments and calls library functions."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .audio import AudioError

PROG = "audioscene"
# Errors a user can cause and fix; these print one line, anything else is a bug and keeps its traceback.
USER_ERRORS = (AudioError, ValueError, OSError, KeyError)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line on stderr (exit code 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _snr_range(text: str) -> tuple[float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or LOW,HIGH in dB, got {text!r}") from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected a number or LOW,HIGH in dB, got {text!r}")
    return (values[0], values[-1])


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _cmd_synth(args) -> None:
    from .data.synthetic import generate

    out = generate(args.out, n_clips=args.n_clips, seed=args.seed, snr_db=args.snr_db)
    print(f"wrote {args.n_clips} clips to {out} (weak.csv, strong.tsv, audio/)")


def _cmd_demo(args) -> None:
    from .demo import run_demo

    print(run_demo(args.out, seed=args.seed))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("synth", help="generate the synthetic soundscape data set",
                       description="Generate deterministic synthetic 10 s soundscapes with the 10 DCASE 2018 class names.",
                       epilog="example: audioscene synth --out data/synth/train --n-clips 2000 --seed 1 --snr-db 0,15",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (audio/, weak.csv, strong.tsv)")
    p.add_argument("--n-clips", type=_positive_int, default=100, help="number of clips (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    p.add_argument("--snr-db", type=_snr_range, default=(0.0, 15.0),
                   help="event-to-background ratio in dB: a value or LOW,HIGH (default 0,15)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("demo", help="run the pipeline on the embedded synthetic data set",
                       description="Run the whole pipeline offline on synthetic data.",
                       epilog="example: audioscene demo --out demo_output")
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default demo_output)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        args.func(args)
    except USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
