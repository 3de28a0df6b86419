"""`audioscene sed-eval`: event-based F1 of estimated events against reference events."""

from __future__ import annotations

from pathlib import Path

from ..arguments import (
    number,
    positive,
)


def arguments(sub) -> None:
    p = sub.add_parser("sed-eval", help="event-based F1 of estimated events against reference events",
                       description="Score an events TSV against a reference TSV with sed_eval's event-based rule "
                                   "(onset within the collar, offset within max(collar, 20%% of the event's length)).",
                       epilog="example: audioscene sed-eval --ref data/eval/strong.tsv --est events.tsv --collar 0.2")
    p.add_argument("--ref", type=Path, required=True, help="reference events (DCASE TSV)")
    p.add_argument("--est", type=Path, required=True, help="estimated events (DCASE TSV)")
    p.add_argument("--collar", type=positive, default=0.2, help="onset/offset collar in seconds (default 0.2)")
    p.add_argument("--percentage-of-length", type=number(low=0, high=1), default=0.2,
                   help="offset collar as a share of the reference event's length, if larger (default 0.2)")
    p.add_argument("--nan-for-empty", action="store_true",
                   help="a class without estimated events gets an undefined F1 and drops out of the macro "
                        "average (sed_eval's default) instead of scoring 0")
    p.set_defaults(func=run)


def run(args) -> None:
    from ...events import read_events_tsv
    from ...metrics import event_f1
    from ...metrics.detection import DETECTION_SCORES, Detections
    from ...report import markdown_table, table4
    from ...report.tables import score_cell

    reference, estimated = read_events_tsv(args.ref), read_events_tsv(args.est)
    scores = event_f1(reference, estimated, t_collar=args.collar, percentage_of_length=args.percentage_of_length,
                      zero_score=not args.nan_for_empty)
    found = Detections(reference, estimated, scores.labels)
    print(markdown_table(table4([(f"(collar {args.collar:g} s)", scores, found)], with_paper=False)))
    print(f"\nmacro F1 {100 * scores.macro_f1:.2f} %   micro F1 {100 * scores.micro_f1:.2f} %   "
          f"({int(scores.n_ref.sum())} reference, {int(scores.n_sys.sum())} estimated events)")
    # the detection scores one event list gives (PSDS needs frame outputs at many thresholds)
    print("   ".join(f"{score.header} {score_cell(score, score.of(found))}" for score in DETECTION_SCORES.values()
                     if not score.needs_sweep))
