"""`audioscene evaluate`: Table-2 style scores of a run: peak epoch and checkpoint-averaged outputs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...errors import InputError
from ..arguments import (
    add_compute_options,
    add_data_option,
)


def arguments(sub) -> None:
    p = sub.add_parser("evaluate", help="Table-2 style scores of a run: peak epoch and checkpoint-averaged outputs",
                       description="Score every checkpoint of a run on a data folder; report the peak epoch and 'Avg' "
                                   "(the mean of all checkpoints' outputs, scored).",
                       epilog="examples:\n  audioscene evaluate --run runs/b_att --data data/eval\n"
                              "  audioscene evaluate --run runs/b_att --data data/eval --sed-tune data/tune\n"
                              "  audioscene evaluate --run pretrained:efficientat_mn40_as --run "
                              "pretrained:efficientat_dymn20_as --data folder:eval/audio --labels eval/labels.csv",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, action="append", required=True,
                   help="run folder with epoch_NNN.pt files, or pretrained:NAME; repeat for an ensemble: each run's "
                        "--checkpoint and the mean of their outputs, scored")
    p.add_argument("--checkpoint", default="best", help="an ensemble's members: best, last, avg or a .pt path "
                                                        "(default best; one run is scored at every epoch)")
    add_data_option(p, "--data", "data to score")
    p.add_argument("--select-data", help="pick the peak epoch on this split instead of --data itself")
    p.add_argument("--select-labels", help="for a folder: --select-data, its CSV filename,labels")
    p.add_argument("--amp", action="store_true", help="score in bf16 autocast (faster; float32 by default)")
    add_compute_options(p)
    p.add_argument("--per-class", type=Path, help="per-class CSV path (default RUN/per_class_DATA.csv)")
    p.add_argument("--sed-tune", type=Path, metavar="DIR",
                   help="also Tables 3-4 (event F1 at 0.2/0.4 s, segment F1, PSDS) of the best checkpoint: thresholds "
                        "and median kernels tuned on DIR (audio/ and strong.tsv), events scored on --data (a folder "
                        "with strong.tsv); files in RUN/sed_DATA/")
    p.set_defaults(func=run)


def run(args) -> None:
    if len(args.run) > 1:
        return _ensemble(args)
    from ..._io import prepare_output
    from ...checkpoints import Run
    from ...evaluate import evaluate_run
    from ...report import Table2Row, markdown_table, table2, write_per_class_csv
    from ...report.paper import table2_row
    from ..common import data_spec

    run = Run.open(args.run[0])  # a missing run folder is named before an output is prepared in it
    spec = data_spec(args.data, args.labels, "--data", "--labels")
    select = data_spec(args.select_data, args.select_labels, "--select-data", "--select-labels")
    if args.sed_tune:  # Tables 3-4 need strong labels on both splits: named before any work
        for folder in (args.sed_tune, Path(spec.path)):
            if spec.kind != "dir" or not (folder / "strong.tsv").is_file():
                raise InputError(f"--sed-tune: {folder} has no strong.tsv (Tables 3-4 need data folders with audio/ "
                                 "and the events of the tuning split and of --data)")
    per_class = prepare_output(args.per_class or run.folder / f"per_class_{spec.name}.csv",
                               spec.sources + (select.sources if select else ()))
    result = evaluate_run(run, spec, device=args.device, batch_size=args.batch_size, workers=args.workers,
                          select_data=select, amp=args.amp)
    model = result.run_config["model_config"]["name"]
    rows = [Table2Row(run.name, variant, scored.epoch, scored.summary, result.n_clips,
                      paper=table2_row(model, variant, (run.first.source or {}).get("catalogue")))
            for variant, scored in result.variants.items()]
    write_per_class_csv(per_class, result.labels.names, [(row.variant, row.summary) for row in rows])
    print(f"{result.n_clips} clips from {args.data}{' (bf16 autocast)' if args.amp else ''}; Avg of "
          f"{len(result.epochs)} checkpoints: the mean of their outputs, scored\n")
    print(markdown_table(table2(rows)))
    if args.select_data is None:
        print(f"\nthe peak epoch is chosen by {result.selected_by} on {args.data} itself, as in the paper "
              "(optimistic: the split that picks the epoch is also scored); --select-data picks it on another split")
    else:
        print(f"\nthe peak epoch is chosen by {result.selected_by} on {args.select_data}")
    print(f"\nper-class AP/AUC: {per_class}")
    if args.sed_tune:
        from ...report import FigureChoice, folder_segmentation, to_markdown

        out = run.folder / f"sed_{spec.name}"
        blocks, _ = folder_segmentation({run.name: run}, args.sed_tune, spec.path, out, device=args.device,
                                        figures=FigureChoice(n=0))
        print(f"\n{to_markdown(blocks, out)}\nevents, tunings and PSDS inputs: {out}")


def _ensemble(args) -> None:
    """Several --run: each member and their mean, scored as rows of Table 2."""
    from ..._io import prepare_output
    from ...evaluate import evaluate_ensemble
    from ...report import Table2Row, markdown_table, table2, write_per_class_csv
    from ..common import data_spec

    if args.sed_tune or args.select_data:
        raise InputError("an ensemble (several --run) is scored on --data alone; --sed-tune and --select-data take "
                         "one run")
    if not args.per_class:
        raise InputError("an ensemble has no run folder of its own: give --per-class FILE for its per-class scores")
    spec = data_spec(args.data, args.labels, "--data", "--labels")
    per_class = prepare_output(args.per_class, spec.sources)
    result = evaluate_ensemble(args.run, spec, args.checkpoint, "auto", args.device, args.batch_size,
                               args.workers, amp=args.amp)
    rows = [Table2Row(name, "ensemble" if name == "ensemble" else "member", scored.epoch, scored.summary,
                      result.n_clips) for name, scored in result.variants.items()]
    write_per_class_csv(per_class, result.labels.names, [(row.run, row.summary) for row in rows])
    print(f"{result.n_clips} clips from {args.data}; the ensemble is the mean of its {len(rows) - 1} members' "
          f"outputs ({args.checkpoint} checkpoint of each), scored\n")
    print(markdown_table(table2(rows)))
    print(f"\nper-class AP/AUC: {per_class}")
