"""`audioscene synth`: generate the synthetic soundscape data set."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..arguments import (
    count,
    positive_int,
    snr_range,
)


def arguments(sub) -> None:
    p = sub.add_parser("synth", help="generate the synthetic soundscape data set",
                       description="Generate deterministic synthetic 10 s soundscapes with the 10 DCASE 2018 class names.",
                       epilog="example: audioscene synth --out data/synth/train --n-clips 2000 --seed 1 --snr-db 0,15",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (audio/, weak.csv, strong.tsv)")
    p.add_argument("--n-clips", type=positive_int, default=100, help="number of clips (default 100)")
    p.add_argument("--seed", type=count, default=0, help="random seed; same seed, same bytes (default 0)")
    p.add_argument("--snr-db", type=snr_range, default=None,
                   help="event-to-background ratio in dB: a value or LOW,HIGH (default 0,15)")
    p.add_argument("--max-events", type=count, default=4, help="events per clip: 0 to this many (default 4)")
    p.add_argument("--workers", type=positive_int, help="processes rendering clips (default: one per CPU)")
    p.set_defaults(func=run)


def run(args) -> None:
    from ...data.synthetic import generate

    snr = {} if args.snr_db is None else {"snr_db": args.snr_db}
    out = generate(args.out, n_clips=args.n_clips, seed=args.seed, workers=args.workers, max_events=args.max_events,
                   **snr)
    print(f"wrote {args.n_clips} clips to {out} (weak.csv, strong.tsv, audio/)")
