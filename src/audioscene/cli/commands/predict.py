"""`audioscene predict`: clip probabilities of one or more runs on a data set: a teacher file for
knowledge distillation."""

from __future__ import annotations

from pathlib import Path

from ..arguments import (
    add_compute_options,
    add_data_option,
    add_weights_option,
)


def arguments(sub) -> None:
    p = sub.add_parser("predict", help="clip probabilities of one or more runs on a data set: a teacher file for "
                                       "knowledge distillation",
                       description="Write the clip probabilities of the given runs (averaged) on every clip of a "
                                   "data set to an .npz keyed by clip key, for `train --teacher FILE --kd-lambda L`.",
                       epilog="example: audioscene predict --run runs/big --run runs/big2 --data data/train "
                              "-o teacher.npz")
    p.add_argument("--run", type=Path, action="append", required=True, help="teacher run folder (repeat to average "
                                                                              "several)")
    p.add_argument("--checkpoint", default="best", help="best, last, avg or a .pt path (default best)")
    add_data_option(p, "--data", "data whose clips get predictions")
    p.add_argument("-o", "--output", type=Path, required=True, help="teacher file (.npz) to write")
    add_compute_options(p)
    add_weights_option(p)
    p.set_defaults(func=run)


def run(args) -> None:
    from ..._io import prepare_output
    from ...checkpoints import Run
    from ...distill import predict_to_file
    from ..common import data_spec

    data = data_spec(args.data, args.labels, "--data", "--labels")
    runs = [Run.open(run) for run in args.run]
    prepare_output(args.output, data.sources)
    path = predict_to_file(runs, data, args.output, checkpoint=args.checkpoint, device=args.device,
                           batch_size=args.batch_size, workers=args.workers, weights=args.weights)
    print(f"clip probabilities of {len(args.run)} run(s) on {args.data} -> {path} (a teacher file for --teacher)")
