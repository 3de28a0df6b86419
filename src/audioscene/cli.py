"""The `audioscene` command line: parses arguments and calls library functions."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .audio import AudioError

PROG = "audioscene"
# Errors a user can cause and fix; these print one line, anything else is a bug and keeps its traceback.
USER_ERRORS = (AudioError, ValueError, OSError)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line on stderr (exit code 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _snr_range(text: str) -> tuple[float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or LOW,HIGH in dB, got {text!r}") from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected a number or LOW,HIGH in dB, got {text!r}")
    return (values[0], values[-1])


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _model_names() -> list[str]:
    from .models import available

    return available()


def _cmd_synth(args) -> None:
    from .data.synthetic import generate

    snr = {} if args.snr_db is None else {"snr_db": args.snr_db}
    out = generate(args.out, n_clips=args.n_clips, seed=args.seed, workers=args.workers, **snr)
    print(f"wrote {args.n_clips} clips to {out} (weak.csv, strong.tsv, audio/)")


TRAIN_FLAGS = {  # CLI flag -> TrainConfig field; flags left out keep the config's value
    "train_data": "train_data", "eval_data": "eval_data", "out": "out_dir", "model": "model", "width": "width",
    "epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "seed": "seed", "workers": "workers",
    "device": "device", "amp": "amp", "channels_last": "channels_last",
}


def _cmd_train(args) -> None:
    from .train import TrainConfig, resume, train

    overrides = {field: getattr(args, flag) for flag, field in TRAIN_FLAGS.items() if getattr(args, flag) is not None}
    if args.resume:
        run_dir = resume(args.resume, **overrides)
    else:
        config = TrainConfig.from_toml(args.config, **overrides) if args.config else TrainConfig.from_dict(overrides)
        if not (config.train_data and config.eval_data):
            raise ValueError("need --train-data and --eval-data (or a --config that sets train_data and eval_data)")
        run_dir = train(config)
    print(f"run finished: checkpoints and metrics.csv in {run_dir}")


def _cmd_evaluate(args) -> None:
    from .report import table2, write_per_class_csv
    from .train import evaluate_run

    result = evaluate_run(args.run, args.data, device=args.device, batch_size=args.batch_size, workers=args.workers)
    name = args.run.name
    rows = [(f"{name} (peak, epoch {result['peak_epoch']})", result["peak"]),
            (f"{name} (Avg of {len(result['epochs'])} checkpoints)", result["avg"])]
    per_class = args.per_class or args.run / f"per_class_{args.data.name}.csv"
    write_per_class_csv(per_class, result["labels"].names, [("peak", result["peak"]), ("avg", result["avg"])])
    print(f"{result['n_clips']} clips from {args.data}\n")
    print(table2(rows))
    print(f"\nper-class AP/AUC: {per_class}")


def _cmd_demo(args) -> None:
    from .demo import DemoConfig, run_demo

    print(run_demo(args.out, DemoConfig(seed=args.seed)))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("synth", help="generate the synthetic soundscape data set",
                       description="Generate deterministic synthetic 10 s soundscapes with the 10 DCASE 2018 class names.",
                       epilog="example: audioscene synth --out data/synth/train --n-clips 2000 --seed 1 --snr-db 0,15",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (audio/, weak.csv, strong.tsv)")
    p.add_argument("--n-clips", type=_positive_int, default=100, help="number of clips (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    p.add_argument("--snr-db", type=_snr_range, default=None,
                   help="event-to-background ratio in dB: a value or LOW,HIGH (default 0,15)")
    p.add_argument("--workers", type=_positive_int, help="processes rendering clips (default: one per CPU)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("train", help="train a Table-1 model (checkpoint every epoch, resumable)",
                       description="Train a model on a data folder (weak.csv + audio/), evaluating after every epoch.",
                       epilog="examples:\n  audioscene train --train-data data/train --eval-data data/eval --model resnet_b_att "
                              "--width 16 --epochs 5 --out runs/b_att\n  audioscene train --config run.toml --seed 3\n"
                              "  audioscene train --resume runs/b_att --epochs 10",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="TOML file with TrainConfig keys; flags override it")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint")
    p.add_argument("--train-data", help="training folder (weak.csv + audio/)")
    p.add_argument("--eval-data", help="evaluation folder, scored after every epoch")
    p.add_argument("--out", help="run folder for checkpoints and metrics (default runs/run)")
    p.add_argument("--model", choices=_model_names(), help="Table-1 model (default resnet_b_att)")
    p.add_argument("--width", type=_positive_int, help="base channels (64 in the paper)")
    p.add_argument("--epochs", type=_positive_int, help="number of epochs (default 50)")
    p.add_argument("--batch-size", type=_positive_int, help="clips per batch (default 32)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--workers", type=int, help="data loader worker processes (default 0)")
    p.add_argument("--device", help="auto, cpu or cuda (default auto)")
    p.add_argument("--no-amp", dest="amp", action="store_const", const=False, help="no mixed precision on CUDA")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_const", const=False,
                   help="keep the default memory format (channels_last is on by default: faster on CPU)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="Table-2 style scores of a run: peak epoch and checkpoint-averaged outputs",
                       description="Score every checkpoint of a run on a data folder; report the peak epoch and 'Avg' "
                                   "(the mean of all checkpoints' outputs, scored).",
                       epilog="example: audioscene evaluate --run runs/b_att --data data/eval")
    p.add_argument("--run", type=Path, required=True, help="run folder with epoch_NNN.pt files")
    p.add_argument("--data", type=Path, required=True, help="data folder (weak.csv + audio/)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="clips per batch (default 64)")
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes (default 0)")
    p.add_argument("--per-class", type=Path, help="per-class CSV path (default RUN/per_class_DATA.csv)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("demo", help="run the pipeline on the embedded synthetic data set",
                       description="Run the whole pipeline offline on synthetic data.",
                       epilog="example: audioscene demo --out demo_output")
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default demo_output)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        args.func(args)
    except USER_ERRORS as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
