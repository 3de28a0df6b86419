"""`audioscene sed-tune`: per-class thresholds and median kernels that maximise event F1."""

from __future__ import annotations

from pathlib import Path

from ...errors import InputError
from ...sed import DEFAULT_KERNELS, DEFAULT_THRESHOLDS, MAX_UPSAMPLE
from ..arguments import (
    add_model_options,
    number,
    per_class_values,
    positive,
)
from ..common import open_tagger, readable_analyses


def arguments(sub) -> None:
    p = sub.add_parser("sed-tune", help="per-class thresholds and median kernels that maximise event F1",
                       description="Sweep a threshold grid and odd median kernels per class on a tuning set with "
                                   "reference events; writes the best setting of each class as JSON for detect.",
                       epilog="example: audioscene sed-tune --run runs/b_att --audio data/tune/audio "
                              "--ref data/tune/strong.tsv -o tuned.json")
    p.add_argument("--audio", type=Path, required=True, help="folder of the tuning set's audio files")
    p.add_argument("--ref", type=Path, required=True, help="their reference events (DCASE TSV)")
    p.add_argument("-o", "--output", type=Path, required=True, help="tuning JSON to write")
    p.add_argument("--grid", type=per_class_values(float, 0, 1, tuning=False), default=list(DEFAULT_THRESHOLDS),
                   help="thresholds to try, comma-separated (default 0.05,0.10,...,0.95)")
    p.add_argument("--kernels", type=per_class_values(int, 1, odd=True, tuning=False), default=list(DEFAULT_KERNELS),
                   help="odd median kernels to try, comma-separated (default 1,3,5,7,9,11)")
    p.add_argument("--thresholds-only", action="store_true", help="no median filter (kernel 1 for every class)")
    p.add_argument("--upsample", type=number(integer=True, low=1, high=MAX_UPSAMPLE), default=1,
                   help=f"interpolate the frame scores onto a grid this many times finer (at most {MAX_UPSAMPLE}) "
                        "before filtering and "
                        "thresholds (e.g. 4: 0.32 s frames -> 0.08 s); stored in the JSON for detect (default 1)")
    p.add_argument("--collar", type=positive, default=0.2, help="collar in seconds for the F1 (default 0.2)")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..._io import prepare_output
    from ...events import read_events_tsv
    from ...report import markdown_table, tuning_table
    from ...sed import TuneGrid, tune_on

    output = prepare_output(args.output, inputs=(args.ref,))
    tagger, failed = open_tagger(args), []
    analyses = dict(readable_analyses(args, tagger, [args.audio], failed))
    if not analyses:
        raise InputError(f"{args.audio}: no audio file could be read")
    grid = TuneGrid(args.grid, (1,) if args.thresholds_only else args.kernels, t_collar=args.collar,
                    upsample_factor=args.upsample)
    tuning = tune_on(analyses, read_events_tsv(args.ref), tagger.frame_hop, grid, progress=True)
    tuning.save(output)
    print(markdown_table(tuning_table(tuning)))
    print(f"\ntuned on {len(analyses)} files -> {args.output}")
    return 1 if failed else 0
