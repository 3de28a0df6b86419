"""`audioscene plot`: Figure 2: spectrogram above the activation curves of the top classes."""

from __future__ import annotations

from pathlib import Path

from ..arguments import (
    add_model_options,
    per_class_values,
    positive_int,
)
from ..common import open_tagger


def arguments(sub) -> None:
    p = sub.add_parser("plot", help="Figure 2: spectrogram above the activation curves of the top classes",
                       description="Draw a file's log-mel spectrogram above the framewise activations of its "
                                   "top classes, with reference events shaded when a TSV is given.",
                       epilog="example: audioscene plot data/eval/audio/synth_000003.flac --run runs/b_att "
                              "--ref data/eval/strong.tsv -o fig2.png")
    p.add_argument("file", type=Path, metavar="FILE", help="audio file")
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    p.add_argument("--ref", type=Path, help="reference events (DCASE TSV); this file's events are shaded")
    p.add_argument("--top", type=positive_int, default=2, help="number of classes drawn (default 2)")
    p.add_argument("--thresholds", type=per_class_values(float, 0, 1),
                   help="a sed-tune JSON whose thresholds are drawn as dashed lines")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args) -> None:
    from ..._io import prepare_output
    from ...events import read_events_tsv
    from ...report import figure2

    prepare_output(args.output, inputs=(args.file,))
    reference = [e for e in read_events_tsv(args.ref) if e.filename == args.file.name] if args.ref else []
    chosen = figure2(open_tagger(args), args.file, args.output, reference=reference, thresholds=args.thresholds,
                     top=args.top, classes=args.classes)
    print(f"{args.file.name}: spectrogram and activations of {', '.join(chosen)} -> {args.output}")
