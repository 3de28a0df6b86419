"""`audioscene detect`: sound events in audio files (any length) as a DCASE TSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...sed import MAX_UPSAMPLE
from ..arguments import (
    add_event_options,
    add_model_options,
    number,
)
from ..common import open_tagger, readable_analyses


def arguments(sub) -> None:
    p = sub.add_parser("detect", help="sound events in audio files (any length) as a DCASE TSV",
                       description="Find when each sound happens: frame scores of 10 s windows, stitched, median-"
                                   "filtered, thresholded and turned into events. Files that cannot be read are "
                                   "named on stderr and skipped (exit code 1 at the end).",
                       epilog="examples:\n  audioscene detect recordings/ --run runs/b_att -o events.tsv\n"
                              "  audioscene detect a.wav b.flac --run runs/b_att --thresholds tuned.json "
                              "--median tuned.json -o events.tsv",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, metavar="FILES", help="audio files or folders of them")
    p.add_argument("-o", "--output", type=Path, required=True, help="events TSV to write")
    add_event_options(p)
    p.add_argument("--upsample", type=number(integer=True, low=1, high=MAX_UPSAMPLE),
                   help=f"interpolate the frame scores onto a grid this many times finer first, at most {MAX_UPSAMPLE} "
                        "(default: the tuning JSON's, else 1)")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..._io import prepare_output
    from ...events import write_events_tsv
    from ...infer import events_from_analysis

    output = prepare_output(args.output, inputs=args.files)
    events, n_files, failed = [], 0, []
    for name, result in readable_analyses(args, open_tagger(args), args.files, failed):
        events += events_from_analysis(result, name, args.thresholds, args.median, args.upsample)
        n_files += 1
    write_events_tsv(output, events)
    print(f"{len(events)} events in {n_files} files -> {output}")
    return 1 if failed else 0
