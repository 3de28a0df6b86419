"""`audioscene predict`: clip probabilities of one or more runs on a data set: a teacher file for
knowledge distillation."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..arguments import (
    add_compute_options,
    add_data_option,
    add_weights_option,
    positive,
    positive_int,
)


def arguments(sub) -> None:
    p = sub.add_parser("predict", help="clip probabilities of one or more runs on a data set: a teacher file for "
                                       "knowledge distillation",
                       description="Write the clip probabilities of the given runs (averaged, each through its "
                                   "own front end) on every clip of a data set, keyed by clip key, for `train "
                                   "--teacher PATH --kd-lambda L`: to a teacher store (a folder: float16, memory-"
                                   "mapped, for millions of clips; written in parts that a rerun resumes and that "
                                   "the ranks of torchrun share) or, with -o FILE.npz, to one small .npz.",
                       epilog="examples:\n  audioscene predict --run runs/big --run runs/big2 --data data/train "
                              "-o teacher.npz\n  torchrun --nproc-per-node 8 -m audioscene predict --run "
                              "pretrained:ced_base --run pretrained:efficientat_mn40_as --data shards:data/train "
                              "-o teacher/",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, action="append", required=True, help="teacher run folder (repeat to average "
                                                                              "several)")
    p.add_argument("--checkpoint", default="best", help="best, last, avg or a .pt path (default best)")
    add_data_option(p, "--data", "data whose clips get predictions")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="teacher store to write (a folder: a name without a suffix) or small teacher file (.npz)")
    p.add_argument("--frames", action="store_true",
                   help="also store the frame outputs (a store only; for detection students)")
    p.add_argument("--frame-hop", type=positive, metavar="SECONDS",
                   help="with --frames: put the frame outputs on this grid (a student's, e.g. 0.32), by linear "
                        "interpolation (default: the teachers' own)")
    p.add_argument("--part-clips", type=positive_int, default=8192,
                   help="clips per part of a store: the most work a rerun repeats (default 8192)")
    add_compute_options(p)
    add_weights_option(p)
    p.set_defaults(func=run)


def run(args) -> None:
    from ..._io import prepare_output
    from ...checkpoints import Run
    from ...distill import predict_to_file
    from ...errors import InputError, OutputError
    from ...teacher_store import is_store
    from ..common import data_spec

    if args.frame_hop and not args.frames:
        raise InputError("--frame-hop sets the grid of the frame outputs: give --frames too")
    data = data_spec(args.data, args.labels, "--data", "--labels")
    runs = [Run.open(run) for run in args.run]
    if is_store(args.output):
        if args.output.is_file() or any(args.output.resolve() == Path(source).resolve() for source in data.sources):
            raise OutputError(f"{args.output}: a teacher store is a folder of its own; give a new folder name")
        args.output.mkdir(parents=True, exist_ok=True)
    else:
        prepare_output(args.output, data.sources)
    path = predict_to_file(runs, data, args.output, checkpoint=args.checkpoint, device=args.device,
                           batch_size=args.batch_size, workers=args.workers, weights=args.weights, frames=args.frames,
                           part_clips=args.part_clips, frame_hop=args.frame_hop)
    finished = path.suffix == ".npz" or (path / "meta.json").is_file()
    print(f"clip probabilities of {len(args.run)} run(s) on {args.data} -> {path} "
          + ("(a teacher for --teacher)" if finished else "(this rank's parts; the last rank merges)"))
