"""`audioscene demo`: run the pipeline on the embedded synthetic data set."""

from __future__ import annotations

from pathlib import Path

from ..arguments import (
    count,
)


def arguments(sub) -> None:
    p = sub.add_parser("demo", help="run the pipeline on the embedded synthetic data set",
                       description="Run the whole pipeline offline on synthetic data.",
                       epilog="example: audioscene demo --out demo_output")
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default demo_output)")
    p.add_argument("--seed", type=count, default=0, help="random seed (default 0)")
    p.set_defaults(func=run)


def run(args) -> None:
    from ...demo import DemoConfig, run_demo

    print(run_demo(args.out, DemoConfig(seed=args.seed)))
