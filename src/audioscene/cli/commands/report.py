"""`audioscene report`: Table 2 regenerated from runs: peak, Avg and EMA rows with bootstrap
intervals, the paper's rows and provenance."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...errors import InputError
from ...metrics.bootstrap import MAX_RESAMPLES, MIN_RESAMPLES
from ..arguments import (
    add_compute_options,
    add_data_option,
    add_weights_option,
    count,
    named_ensemble,
    named_run,
    number,
)


def arguments(sub) -> None:
    p = sub.add_parser("report", help="Table 2 regenerated from runs: peak, Avg and EMA rows with bootstrap "
                                      "confidence intervals, the paper's rows and provenance",
                       description="Score each run on the evaluation data (every checkpoint: peak epoch, Avg of "
                                   "the outputs, and the moving average of the weights if kept), with percentile-"
                                   "bootstrap 95%% intervals over clips, next to the paper's Table 2; writes "
                                   "report.md, index.html, table2.csv and provenance.json.",
                       epilog="examples:\n  audioscene report --runs B+att=runs/b_att A=runs/a --eval-data data/eval "
                              "-o report/\n  audioscene report --runs weak=runs/b_att strong=runs/b_att_strong "
                              "--eval-data data/eval --sed-splits data/tune data/eval --sed-run weak --sed-run strong "
                              "-o report/",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=named_run, nargs="+", required=True, metavar="NAME=RUN_DIR",
                   help="runs to report, each NAME=RUN_DIR (or RUN_DIR, named after its folder)")
    add_data_option(p, "--eval-data", "data to score")
    p.add_argument("--embeddings-data", metavar="SPEC", help="embeddings:DIR the runs of embedding models "
                                                             "(yu_multilevel_att, kong_att) are scored on")
    p.add_argument("--select-labels", help="for a folder: --select-data, its CSV filename,labels")
    p.add_argument("--select-data", help="pick each run's peak epoch on this split (default: the scored one, as "
                                         "the paper did)")
    p.add_argument("--bootstrap", type=number(integer=True, low=MIN_RESAMPLES, high=MAX_RESAMPLES), default=1000,
                   help=f"bootstrap resamples, {MIN_RESAMPLES} to {MAX_RESAMPLES} (default 1000)")
    p.add_argument("--seed", type=count, default=0, help="seed of the resampling (default 0)")
    add_compute_options(p, batch_size=False, workers=False)
    p.add_argument("--dcase", type=Path, metavar="ROOT", help="DCASE 2018 task 4 dataset/ folder: adds Tables 3-4 and "
                                                                "Figure 2 (tuned on test; scored on test and eval)")
    p.add_argument("--sed-splits", type=Path, nargs=2, metavar=("TUNE", "EVAL"),
                   help="instead of --dcase: two folders with audio/ and strong.tsv (as synth writes them): Tables 3-4 "
                        "tuned on TUNE, scored on TUNE and EVAL, the runs' own labels")
    p.add_argument("--ensemble", type=named_ensemble, action="append", metavar="NAME=RUN,RUN",
                   help="a row for an ensemble: the mean of its runs' outputs (each its --checkpoint), scored with "
                        "intervals; repeat for several")
    p.add_argument("--sed-run", metavar="NAME", action="append",
                   help="a run whose frame outputs Tables 3-4 show; repeat to show several side by side (e.g. a "
                        "weak-only run and one trained with --strong-labels; default the first run)")
    p.add_argument("--checkpoint", default="best", help="that run's checkpoint: best, last, avg or a .pt path "
                                                        "(default best)")
    add_weights_option(p)
    p.add_argument("--mapping", default="paper", help="AudioSet labels -> DCASE classes: paper (the one-label groups), "
                                                      "broad (with the ontology's children) or a JSON file "
                                                      "(default paper)")
    p.add_argument("--figure-clips", nargs="+", metavar="FILE", help="test files for Figure 2 (default: the first "
                                                                     "with alarm, frying, cat, shaver)")
    p.add_argument("-o", "--out", type=Path, required=True, help="report folder")
    p.set_defaults(func=run)


def run(args) -> None:
    from ...report import ReportRequest, build
    from ..common import data_spec

    names = [name for name, _ in args.runs] + [name for name, _ in args.ensemble or ()]
    if len(set(names)) != len(names):
        raise InputError(f"run names must be unique, got {', '.join(names)}")
    path = build(ReportRequest(
        dict(args.runs), data_spec(args.eval_data, args.labels, "--eval-data", "--labels"), args.out,
        select_data=data_spec(args.select_data, args.select_labels, "--select-data", "--select-labels"),
        embeddings_data=data_spec(args.embeddings_data, None, "--embeddings-data", ""), n_resamples=args.bootstrap,
        ensembles=dict(args.ensemble or ()),
        seed=args.seed, device=args.device, dcase=args.dcase, sed_splits=tuple(args.sed_splits) if args.sed_splits else None,
        sed_runs=tuple(args.sed_run or ()), checkpoint=args.checkpoint,
        weights=args.weights, mapping=args.mapping, figure_clips=tuple(args.figure_clips or ())))
    print(path.read_text(encoding="utf-8"))
    print(f"written to {args.out}/ (report.md, index.html, table2.csv, provenance.json)")
