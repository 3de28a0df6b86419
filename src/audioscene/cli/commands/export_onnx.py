"""`audioscene export-onnx`: export a trained model to ONNX (checked against PyTorch)."""

from __future__ import annotations

from pathlib import Path

from ..arguments import (
    add_weights_option,
    positive,
)


def arguments(sub) -> None:
    p = sub.add_parser("export-onnx", help="export a trained model to ONNX (checked against PyTorch)",
                       description="Export a checkpoint to ONNX with dynamic batch and time axes, optionally with the "
                                   "log-mel front end inside (input: 16 kHz waveform). ONNX Runtime's outputs are "
                                   "compared with PyTorch's and the file is written only if they agree.",
                       epilog="example: audioscene export-onnx --run runs/b_att -o b_att.onnx --with-frontend")
    p.add_argument("--run", type=Path, required=True, help="run folder with epoch_NNN.pt checkpoints")
    p.add_argument("--checkpoint", default="best", help="best, last or a .pt path (default best)")
    add_weights_option(p)
    p.add_argument("-o", "--output", type=Path, required=True, help="ONNX file to write")
    p.add_argument("--with-frontend", action="store_true", help="include the log-mel front end (waveform input)")
    p.add_argument("--frontend-precision", choices=("float64", "float32"), default="float64",
                   help="DFT precision of the exported front end: float64 is as exact as LogMel, float32 is "
                        "faster and deviates by up to ~1e-3 in log-mel (reported; default float64)")
    p.add_argument("--tolerance", type=positive, default=1e-4, help="max |ONNX − PyTorch| accepted (default 1e-4)")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..._io import prepare_output
    from ...export import export_onnx

    prepare_output(args.output)
    parity = export_onnx(args.run, args.output, args.checkpoint, weights=args.weights, with_frontend=args.with_frontend,
                         tolerance=args.tolerance, frontend_precision=args.frontend_precision)
    print(f"wrote {args.output} ({'waveform' if args.with_frontend else 'log-mel'} input, dynamic batch and time); "
          f"ONNX Runtime vs PyTorch max |diff|: clipwise {parity.clipwise:.1e}, framewise {parity.framewise:.1e} "
          f"(tolerance {parity.tolerance:g})"
          + (f"; front end ({args.frontend_precision}) vs LogMel max |log-mel diff| {parity.frontend:.1e}"
             if args.with_frontend else ""))
