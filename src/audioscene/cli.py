"""The `audioscene` command line: parses arguments and calls library functions."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing
from pathlib import Path

from .distributed import launch_rank
from .errors import AudioSceneError, InputError, check_number, describe_range
from .sed import DEFAULT_KERNELS, DEFAULT_THRESHOLDS

PROG = "audioscene"
# Errors a user can cause and fix (and OSError from their files); these print one line, anything else
# is a bug and keeps its traceback.
USER_ERRORS = (AudioSceneError, OSError)


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


def _number(integer: bool = False, low: float | None = None, high: float | None = None, low_open: bool = False):
    """An argparse type: a finite number in a range, checked as the API checks it."""
    wanted = describe_range(integer, low, high, low_open)

    def parse(text: str):
        try:
            return check_number("value", (int if integer else float)(text), integer=integer, low=low, high=high,
                                low_open=low_open)
        except (ValueError, InputError):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
    return parse


_positive_int = _number(integer=True, low=1)
_count = _number(integer=True, low=0)
_positive = _number(low=0, low_open=True)


def _device(text: str) -> str:
    from .devices import check_device

    try:
        return check_device(text)
    except AudioSceneError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _model_names() -> list[str]:
    from .models import available

    return available()


def _cmd_synth(args) -> None:
    from .data.synthetic import generate

    snr = {} if args.snr_db is None else {"snr_db": args.snr_db}
    out = generate(args.out, n_clips=args.n_clips, seed=args.seed, workers=args.workers, **snr)
    print(f"wrote {args.n_clips} clips to {out} (weak.csv, strong.tsv, audio/)")


def _add_config_flags(parser, config_class, prefix: str = "") -> None:
    """One flag per field of a config dataclass, generated from the field: its type (and range, in
    `CONFIG_RANGES` / `FRONTEND_RANGES`), default, choices, help text and flag names (field metadata).
    Booleans that default to on get `--no-NAME`. A nested config gets an argument group of its own."""
    from .config import CONFIG_RANGES
    from .features import FRONTEND_RANGES

    ranges = CONFIG_RANGES if prefix == "" else FRONTEND_RANGES  # a nested config is the front end
    hints = typing.get_type_hints(config_class)
    for item in dataclasses.fields(config_class):
        kind, meta = hints[item.name], item.metadata
        default = item.default_factory() if item.default is dataclasses.MISSING else item.default
        if dataclasses.is_dataclass(kind):
            group = parser.add_argument_group(f"{item.name}: {meta.get('help', '')}")
            _add_config_flags(group, kind, prefix=f"{item.name}.")
            continue
        name = item.name.replace("_", "-")
        flags = list(meta.get("flags") or (f"--{name}",))
        options = {"dest": prefix + item.name, "help": meta.get("help", "")}
        if kind is bool:
            if default:
                flags, options["help"] = [f"--no-{name}"], f"turn off (on by default): {options['help']}"
            options.update(action="store_const", const=not default)
        else:
            if not meta.get("choices"):
                options["metavar"] = item.name.upper()
            if default not in ("", None):
                shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
                options["help"] += f" (default {shown})"
            if meta.get("choices"):
                options["choices"] = meta["choices"]
            elif item.name == "device":
                options["type"] = _device
            elif typing.get_origin(kind) is tuple:
                options.update(type=_numbers(len(typing.get_args(kind))), metavar="B1,B2")
            elif kind in (int, float) or int in typing.get_args(kind):
                integer = kind is int or int in typing.get_args(kind)
                options["type"] = _number(**{"integer": integer, **ranges.get(item.name, {})})
        parser.add_argument(*flags, **options)


def _config_values(args, config_class) -> dict:
    """The fields set on the command line (nested configs as dicts), for `from_dict`/`from_toml`."""
    values = {}
    hints = typing.get_type_hints(config_class)
    for item in dataclasses.fields(config_class):
        if dataclasses.is_dataclass(hints[item.name]):
            nested = {f.name: getattr(args, f"{item.name}.{f.name}") for f in dataclasses.fields(hints[item.name])}
            nested = {key: value for key, value in nested.items() if value is not None}
            if nested:
                values[item.name] = nested
        elif getattr(args, item.name, None) is not None:
            values[item.name] = getattr(args, item.name)
    return values


def _numbers(count: int):
    """An argparse type: `count` comma-separated finite numbers."""
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(check_number("value", float(v)) for v in text.split(","))
        except (ValueError, InputError):
            values = ()
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {count} numbers separated by commas, got {text!r}")
        return values
    return parse


def _cmd_train(args) -> None:
    from .train import TrainConfig, resume, train

    overrides = _config_values(args, TrainConfig)
    if args.resume:
        run_dir = resume(args.resume, **overrides)
    else:
        if args.init and (args.model is None or args.width is None):  # fine-tuning: the checkpoint's architecture
            from .checkpoints import Checkpoint

            source = Checkpoint.load(args.init).model_config
            overrides = {"model": source["name"], "width": source["width"], **overrides}
        config = TrainConfig.from_toml(args.config, **overrides) if args.config else TrainConfig.from_dict(overrides)
        if not (config.train_data and config.eval_data):
            raise InputError("need --train-data and --eval-data (or a --config that sets train_data and eval_data)")
        run_dir = train(config)
    if launch_rank() == 0:
        print(f"run finished: checkpoints and metrics.csv in {run_dir}")


def _cmd_evaluate(args) -> None:
    from ._io import prepare_output
    from .checkpoints import list_epochs
    from .evaluate import evaluate_run
    from .report import table2, write_per_class_csv

    list_epochs(args.run)  # a missing run folder is named before an output is prepared in it
    per_class = prepare_output(args.per_class or args.run / f"per_class_{_spec_name(args.data)}.csv")
    result = evaluate_run(args.run, args.data, device=args.device, batch_size=args.batch_size, workers=args.workers,
                          labels_csv=args.labels or "", select_data=args.select_data,
                          select_labels_csv=args.select_labels or "", amp=args.amp)
    name = args.run.name
    rows = [(f"{name} (peak, epoch {result['peak_epoch']})", result["peak"]),
            (f"{name} (Avg of {len(result['epochs'])} checkpoints)", result["avg"])]
    write_per_class_csv(per_class, result["labels"].names, [("peak", result["peak"]), ("avg", result["avg"])])
    print(f"{result['n_clips']} clips from {args.data}"
          f"{' (bf16 autocast)' if args.amp else ''}\n")
    print(table2(rows))
    if args.select_data is None:
        print(f"\nthe peak epoch is chosen by {result['selected_by']} on {args.data} itself, as in the paper "
              "(optimistic: the split that picks the epoch is also scored); --select-data picks it on another split")
    else:
        print(f"\nthe peak epoch is chosen by {result['selected_by']} on {args.select_data}")
    print(f"\nper-class AP/AUC: {per_class}")


def _spec_name(spec: str) -> str:
    """A file-name-safe short name of a data spec (its last path part)."""
    return Path(spec.rstrip("/").split(":")[-1] or "data").name


def _per_class_values(kind: type, low: float | None = None, high: float | None = None):
    """A value, comma-separated values (one per class) or a tuning JSON from `sed-tune`; numbers
    must lie in [low, high]."""
    def parse(text: str):
        if text.endswith(".json"):
            from .sed import Tuning

            try:
                return Tuning.load(text)
            except AudioSceneError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        try:
            values = [check_number("value", kind(v), integer=kind is int, low=low, high=high) for v in text.split(",")]
        except (ValueError, InputError):
            raise argparse.ArgumentTypeError(f"expected {describe_range(kind is int, low, high, False)}, numbers like "
                                             f"that separated by commas, or a tuning .json; got {text!r}") from None
        return values[0] if len(values) == 1 else values
    return parse


CLASS_GROUPS = ("all", "dcase2018")


def _tagger(args):
    from .infer import Tagger

    if args.run.suffix == ".onnx":
        return Tagger.from_onnx(args.run, hop_s=args.hop_s, batch_size=args.batch_size)
    return Tagger.from_run(args.run, args.checkpoint, device=args.device, hop_s=args.hop_s,
                           batch_size=args.batch_size)


def _analyses(args, tagger, paths, failed: list):
    """(path, name, Analysis) of each audio input that could be read; the others are named on
    stderr and appended to `failed`."""
    from .audio import expand_paths
    from .events import UNSTORABLE
    from .infer import to_classes
    from .labels import DCASE2018_AUDIOSET_NAMES

    inputs = []
    for path, name in expand_paths(paths):
        if UNSTORABLE.search(name):  # it would break the line-based outputs (table, TSV)
            print(f"{PROG} {args.command}: skipped {name!r}: the file name contains a tab, line break or other "
                  "control character; rename the file", file=sys.stderr)
            failed.append(path)
        else:
            inputs.append((path, name))
    names = dict(inputs)
    for path, result in tagger.analyze_many([p for p, _ in inputs], progress=True,
                                            workers=getattr(args, "workers", 0)):
        if isinstance(result, Exception):
            print(f"{PROG} {args.command}: skipped {result}", file=sys.stderr)
            failed.append(path)
            continue
        if args.classes == "dcase2018":
            result = to_classes(result, DCASE2018_AUDIOSET_NAMES)
        yield path, names[path], result


def _cmd_tag(args) -> int:
    import csv
    import json

    tagger = _tagger(args)
    rows = []
    failed: list = []
    for _, name, result in _analyses(args, tagger, args.paths, failed):
        tags = result.top(args.top_k)
        rows.append((name, tags))
        if args.format == "table":
            print(f"{name}\t" + ", ".join(f"{label} {score:.3f}" for label, score in tags), flush=True)
    if args.format == "json":
        print(json.dumps([{"file": name, "tags": [{"label": label, "score": round(score, 6)} for label, score in tags]}
                          for name, tags in rows], indent=2, ensure_ascii=False))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(("file", "rank", "label", "score"))
        writer.writerows((name, rank, label, f"{score:.6f}")
                         for name, tags in rows for rank, (label, score) in enumerate(tags, start=1))
    return 1 if failed else 0


def _cmd_export_onnx(args) -> None:
    from ._io import prepare_output
    from .export import export_onnx

    prepare_output(args.output)
    parity = export_onnx(args.run, args.output, args.checkpoint, with_frontend=args.with_frontend,
                         tolerance=args.tolerance, frontend_precision=args.frontend_precision)
    print(f"wrote {args.output} ({'waveform' if args.with_frontend else 'log-mel'} input, dynamic batch and time); "
          f"ONNX Runtime vs PyTorch max |diff|: clipwise {parity.clipwise:.1e}, framewise {parity.framewise:.1e} "
          f"(tolerance {parity.tolerance:g})"
          + (f"; front end ({args.frontend_precision}) vs LogMel max |log-mel diff| {parity.frontend:.1e}"
             if args.with_frontend else ""))


def _cmd_view(args) -> None:
    from .viewer import ViewerConfig, serve

    config = ViewerConfig(top_k=args.top_k, thresholds=args.thresholds, median=args.median,
                          max_upload_mb=args.max_upload_mb)
    serve(_tagger(args), config, host=args.host, port=args.port, extra_hosts=args.allow_host)


def _cmd_detect(args) -> int:
    from ._io import prepare_output
    from .events import write_events_tsv
    from .infer import events_from_analysis

    output = prepare_output(args.output, inputs=args.files)
    tagger = _tagger(args)
    events, n_files = [], 0
    failed: list = []
    for _, name, result in _analyses(args, tagger, args.files, failed):
        events += events_from_analysis(result, name, args.thresholds, args.median)
        n_files += 1
    write_events_tsv(output, events)
    print(f"{len(events)} events in {n_files} files -> {output}")
    return 1 if failed else 0


def _cmd_sed_eval(args) -> None:
    from .events import read_events_tsv
    from .metrics import event_f1
    from .report import table4

    scores = event_f1(read_events_tsv(args.ref), read_events_tsv(args.est), t_collar=args.collar,
                      percentage_of_length=args.percentage_of_length, zero_score=not args.nan_for_empty)
    print(table4([(f"(collar {args.collar:g} s)", scores)], with_paper=False))
    print(f"\nmacro F1 {100 * scores.macro_f1:.2f} %   micro F1 {100 * scores.micro_f1:.2f} %   "
          f"({int(scores.n_ref.sum())} reference, {int(scores.n_sys.sum())} estimated events)")


def _cmd_sed_tune(args) -> int:
    from ._io import prepare_output
    from .events import read_events_tsv
    from .report import markdown_table
    from .sed import tune

    output = prepare_output(args.output, inputs=(args.ref,))
    reference = read_events_tsv(args.ref)
    tagger = _tagger(args)
    framewise, durations, labels = {}, {}, None
    failed: list = []
    for _, name, result in _analyses(args, tagger, [args.audio], failed):
        framewise[name], durations[name], labels = result.framewise, result.duration, result.labels
    if not framewise:
        raise InputError(f"{args.audio}: no audio file could be read")
    unheard = {e.filename for e in reference} - set(framewise)
    if unheard:
        print(f"{PROG} sed-tune: {len(unheard)} files of {args.ref} are not in {args.audio} (e.g. "
              f"{sorted(unheard)[0]}); their events are ignored", file=sys.stderr)
    tuning = tune(framewise, reference, tagger.frame_hop, labels, thresholds=args.grid,
                  kernels=(1,) if args.thresholds_only else args.kernels, durations=durations,
                  t_collar=args.collar, progress=True)
    tuning.save(output)
    pct = lambda v: "–" if v != v else f"{100 * v:.2f}"  # noqa: E731  (NaN: no reference events)
    print(markdown_table(("class", "threshold", "median kernel", "F1 % at 0.5", "F1 % tuned"),
                         [(label, f"{t:.2f}", k, pct(u), pct(f)) for label, t, k, f, u in
                          zip(tuning.labels, tuning.thresholds, tuning.kernels, tuning.f1, tuning.f1_untuned)]))
    print(f"\ntuned on {len(framewise)} files -> {args.output}")
    return 1 if failed else 0


def _cmd_plot(args) -> None:
    from ._io import prepare_output
    from .events import read_events_tsv
    from .features import logmel_from_file
    from .infer import to_classes
    from .labels import DCASE2018_AUDIOSET_NAMES
    from .report import plot_activations
    from .sed import Tuning

    prepare_output(args.output, inputs=(args.file,))
    tagger = _tagger(args)
    result = tagger.analyze(args.file)
    if args.classes == "dcase2018":
        result = to_classes(result, DCASE2018_AUDIOSET_NAMES)
    reference = [e for e in read_events_tsv(args.ref) if e.filename == args.file.name] if args.ref else []
    thresholds = args.thresholds.for_labels(result.labels)[0] if isinstance(args.thresholds, Tuning) else None
    logmel = logmel_from_file(args.file, tagger.frontend).cpu().numpy()
    chosen = plot_activations(logmel, tagger.frontend.config.hop_ms / 1000, result.times, result.framewise,
                              result.labels, args.output, top=args.top, reference=reference, thresholds=thresholds,
                              title=args.file.name)
    print(f"{args.file.name}: spectrogram and activations of {', '.join(chosen)} -> {args.output}")


def _add_event_options(p) -> None:
    """How frame scores become events (detect, view)."""
    p.add_argument("--thresholds", type=_per_class_values(float, 0, 1), default=0.5,
                   help="one threshold, one per class (comma-separated) or a sed-tune JSON (default 0.5)")
    p.add_argument("--median", type=_per_class_values(int, 1), default=1,
                   help="odd median kernel in frames, one per class, or a sed-tune JSON (default 1: none)")


def _add_model_options(p) -> None:
    p.add_argument("--run", type=Path, required=True,
                   help="run folder with epoch_NNN.pt checkpoints, or a model.onnx from export-onnx")
    p.add_argument("--checkpoint", default="best",
                   help="best (the run's best eval score, mAP by default), last, avg (mean of all epochs' outputs) "
                        "or a .pt path (default best)")
    p.add_argument("--classes", choices=CLASS_GROUPS, default="all",
                   help="all: the run's own labels; dcase2018: the 10 DCASE classes, each the max over its "
                        "AudioSet labels (default all)")
    p.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--hop-s", type=_positive, help="window step in seconds (default: the window, about 10 s)")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="windows per forward pass (default 8)")


def _cmd_download(args) -> int:
    import csv

    from ._io import atomic_open
    from .data.audioset import check_url_template, download, read_segments

    check_url_template(args.url_template)
    segments = read_segments(args.csv, skip_bad=args.skip_bad)
    print(segments.report(), file=sys.stderr)
    chosen = segments.segments[:args.limit] if args.limit else segments.segments
    report = download(chosen, args.out, jobs=args.jobs, url_template=args.url_template, retries=args.retries,
                      backoff_s=args.backoff, retry_failed=args.retry_failed, clip_timeout_s=args.clip_timeout)
    present = {p.stem for p in (args.out / "audio").glob("*.flac")}
    with atomic_open(args.out / "labels.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("filename", "labels"))
        writer.writerows((f"{s.key}.flac", ";".join(segments.labels(s))) for s in chosen if s.key in present)
    print(report.text())
    if report.failed:
        print(f"failures and their reasons: {args.out / 'failures.csv'}")
    if report.requested and not report.fetched:
        print(f"{PROG} download: error: none of the {report.requested} clips could be fetched "
              f"(see {args.out / 'failures.csv'})", file=sys.stderr)
        return 1
    print(f"train on it: --data folder:{args.out / 'audio'} --labels {args.out / 'labels.csv'}")
    return 0


def _cmd_pack(args) -> None:
    from .data import DataSpec
    from .data.store import pack

    dataset = DataSpec.parse(args.data, args.labels).open_clips(purpose="packing")
    index = pack(dataset.clips, args.out, dataset.label_set, shard_bytes=int(args.shard_mb * 2**20))
    print(f"packed {len(dataset.clips)} clips -> {index}")


def _cmd_verify(args) -> int:
    from .data.store import verify

    report = verify(args.shards)
    for problem in report.problems:
        print(f"{PROG} verify: {problem}", file=sys.stderr)
    print(f"{args.shards}: {report.n_shards} shards, {report.n_clips} clips, "
          f"{'all checksums and members good' if report.ok else f'{len(report.problems)} problems'}")
    return 0 if report.ok else 1


def _cmd_demo(args) -> None:
    from .demo import DemoConfig, run_demo

    print(run_demo(args.out, DemoConfig(seed=args.seed)))


def build_parser() -> argparse.ArgumentParser:
    from .train import TrainConfig

    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("synth", help="generate the synthetic soundscape data set",
                       description="Generate deterministic synthetic 10 s soundscapes with the 10 DCASE 2018 class names.",
                       epilog="example: audioscene synth --out data/synth/train --n-clips 2000 --seed 1 --snr-db 0,15",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (audio/, weak.csv, strong.tsv)")
    p.add_argument("--n-clips", type=_positive_int, default=100, help="number of clips (default 100)")
    p.add_argument("--seed", type=_count, default=0, help="random seed; same seed, same bytes (default 0)")
    p.add_argument("--snr-db", type=_snr_range, default=None,
                   help="event-to-background ratio in dB: a value or LOW,HIGH (default 0,15)")
    p.add_argument("--workers", type=_positive_int, help="processes rendering clips (default: one per CPU)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("train", help="train a Table-1 model (checkpoint every epoch, resumable)",
                       description="Train a model on a data folder (weak.csv + audio/), evaluating after every epoch.",
                       epilog="examples:\n  audioscene train --train-data data/train --eval-data data/eval --model resnet_b_att "
                              "--width 16 --epochs 5 --out runs/b_att\n  audioscene train --config run.toml --seed 3\n"
                              "  audioscene train --resume runs/b_att --epochs 10\n"
                              "  torchrun --nproc-per-node 4 -m audioscene train --data shards:shards/train "
                              "--eval-data data/eval --batch-size 128 --out runs/ddp\n"
                              "  audioscene train --data folder:my_clips --labels my_clips/labels.csv --eval-data "
                              "folder:my_eval --init runs/b_att/epoch_050.pt --epochs 5 --out runs/mine",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="TOML file with TrainConfig keys; flags override it")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint")
    _add_config_flags(p, TrainConfig)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="Table-2 style scores of a run: peak epoch and checkpoint-averaged outputs",
                       description="Score every checkpoint of a run on a data folder; report the peak epoch and 'Avg' "
                                   "(the mean of all checkpoints' outputs, scored).",
                       epilog="example: audioscene evaluate --run runs/b_att --data data/eval")
    p.add_argument("--run", type=Path, required=True, help="run folder with epoch_NNN.pt files")
    p.add_argument("--data", required=True, help="data to score: DIR (weak.csv + audio/), folder:DIR or "
                                                 "dcase2018:ROOT:SPLIT")
    p.add_argument("--labels", help="for folder: data, its CSV filename,labels (default DIR/labels.csv)")
    p.add_argument("--select-data", help="pick the peak epoch on this split instead of --data itself")
    p.add_argument("--select-labels", help="for a folder: --select-data, its CSV filename,labels")
    p.add_argument("--amp", action="store_true", help="score in bf16 autocast (faster; float32 by default)")
    p.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="clips per batch (default 64)")
    p.add_argument("--workers", type=_count, default=0, help="data loader worker processes (default 0)")
    p.add_argument("--per-class", type=Path, help="per-class CSV path (default RUN/per_class_DATA.csv)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("tag", help="top labels of audio files (any length)",
                       description="Tag audio files: clip scores (max over ~10 s windows) and the top-k labels. "
                                   "Folders expand to the audio files in them; files that cannot be read are named "
                                   "on stderr and skipped (exit code 1 at the end).",
                       epilog="examples:\n  audioscene tag recordings/ --run runs/b_att --top-k 3\n"
                              "  audioscene tag a.wav --run model.onnx --format json > tags.json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATHS", help="audio files or folders of them")
    p.add_argument("--top-k", type=_positive_int, default=5, help="labels per file (default 5)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format (default table)")
    p.add_argument("--workers", type=_count, default=2, help="threads decoding the next files (default 2; 0: none)")
    _add_model_options(p)
    p.set_defaults(func=_cmd_tag)

    p = sub.add_parser("export-onnx", help="export a trained model to ONNX (checked against PyTorch)",
                       description="Export a checkpoint to ONNX with dynamic batch and time axes, optionally with the "
                                   "log-mel front end inside (input: 16 kHz waveform). ONNX Runtime's outputs are "
                                   "compared with PyTorch's and the file is written only if they agree.",
                       epilog="example: audioscene export-onnx --run runs/b_att -o b_att.onnx --with-frontend")
    p.add_argument("--run", type=Path, required=True, help="run folder with epoch_NNN.pt checkpoints")
    p.add_argument("--checkpoint", default="best", help="best, last or a .pt path (default best)")
    p.add_argument("-o", "--output", type=Path, required=True, help="ONNX file to write")
    p.add_argument("--with-frontend", action="store_true", help="include the log-mel front end (waveform input)")
    p.add_argument("--frontend-precision", choices=("float64", "float32"), default="float64",
                   help="DFT precision of the exported front end: float64 is as exact as LogMel, float32 is "
                        "faster and deviates by up to ~1e-3 in log-mel (reported; default float64)")
    p.add_argument("--tolerance", type=_positive, default=1e-4, help="max |ONNX − PyTorch| accepted (default 1e-4)")
    p.set_defaults(func=_cmd_export_onnx)

    p = sub.add_parser("view", help="a local web page: drop a file, see tags, activations and events",
                       description="Serve a page (loopback only by default) where you drop or pick an audio file and "
                                   "see its log-mel spectrogram, top tags, activation curves and detected events, "
                                   "with playback and a moving cursor. Works offline.",
                       epilog="example: audioscene view --run runs/b_att --thresholds tuned.json --median tuned.json")
    p.add_argument("--port", type=_number(integer=True, low=1, high=65535), default=8765, help="port (default 8765)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to this host name (e.g. the machine's DNS name when "
                        "serving on 0.0.0.0); others get 400, which stops DNS-rebinding attacks")
    p.add_argument("--top-k", type=_positive_int, default=5, help="tags shown (default 5)")
    _add_event_options(p)
    p.add_argument("--max-upload-mb", type=_positive, default=100.0, help="largest upload accepted (default 100 MB)")
    _add_model_options(p)
    p.set_defaults(func=_cmd_view)

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
    _add_event_options(p)
    _add_model_options(p)
    p.set_defaults(func=_cmd_detect)

    p = sub.add_parser("sed-eval", help="event-based F1 of estimated events against reference events",
                       description="Score an events TSV against a reference TSV with sed_eval's event-based rule "
                                   "(onset within the collar, offset within max(collar, 20%% of the event's length)).",
                       epilog="example: audioscene sed-eval --ref data/eval/strong.tsv --est events.tsv --collar 0.2")
    p.add_argument("--ref", type=Path, required=True, help="reference events (DCASE TSV)")
    p.add_argument("--est", type=Path, required=True, help="estimated events (DCASE TSV)")
    p.add_argument("--collar", type=_positive, default=0.2, help="onset/offset collar in seconds (default 0.2)")
    p.add_argument("--percentage-of-length", type=_number(low=0, high=1), default=0.2,
                   help="offset collar as a share of the reference event's length, if larger (default 0.2)")
    p.add_argument("--nan-for-empty", action="store_true",
                   help="a class without estimated events gets an undefined F1 and drops out of the macro "
                        "average (sed_eval's default) instead of scoring 0")
    p.set_defaults(func=_cmd_sed_eval)

    p = sub.add_parser("sed-tune", help="per-class thresholds and median kernels that maximise event F1",
                       description="Sweep a threshold grid and odd median kernels per class on a tuning set with "
                                   "reference events; writes the best setting of each class as JSON for detect.",
                       epilog="example: audioscene sed-tune --run runs/b_att --audio data/tune/audio "
                              "--ref data/tune/strong.tsv -o tuned.json")
    p.add_argument("--audio", type=Path, required=True, help="folder of the tuning set's audio files")
    p.add_argument("--ref", type=Path, required=True, help="their reference events (DCASE TSV)")
    p.add_argument("-o", "--output", type=Path, required=True, help="tuning JSON to write")
    p.add_argument("--grid", type=_per_class_values(float, 0, 1), default=list(DEFAULT_THRESHOLDS),
                   help="thresholds to try, comma-separated (default 0.05,0.10,...,0.95)")
    p.add_argument("--kernels", type=_per_class_values(int, 1), default=list(DEFAULT_KERNELS),
                   help="odd median kernels to try, comma-separated (default 1,3,5,7,9,11)")
    p.add_argument("--thresholds-only", action="store_true", help="no median filter (kernel 1 for every class)")
    p.add_argument("--collar", type=_positive, default=0.2, help="collar in seconds for the F1 (default 0.2)")
    _add_model_options(p)
    p.set_defaults(func=_cmd_sed_tune)

    p = sub.add_parser("plot", help="Figure 2: spectrogram above the activation curves of the top classes",
                       description="Draw a file's log-mel spectrogram above the framewise activations of its "
                                   "top classes, with reference events shaded when a TSV is given.",
                       epilog="example: audioscene plot data/eval/audio/synth_000003.flac --run runs/b_att "
                              "--ref data/eval/strong.tsv -o fig2.png")
    p.add_argument("file", type=Path, metavar="FILE", help="audio file")
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    p.add_argument("--ref", type=Path, help="reference events (DCASE TSV); this file's events are shaded")
    p.add_argument("--top", type=_positive_int, default=2, help="number of classes drawn (default 2)")
    p.add_argument("--thresholds", type=_per_class_values(float, 0, 1),
                   help="a sed-tune JSON whose thresholds are drawn as dashed lines")
    _add_model_options(p)
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("download", help="fetch AudioSet clips (yt-dlp + ffmpeg), resumable, with a shrinkage report",
                       description="Fetch the [start, end] section of each segment of an AudioSet CSV as 16 kHz mono "
                                   "FLAC (OUT/audio/YTID_STARTMS.flac). Re-running resumes: fetched clips and "
                                   "permanent failures (OUT/failures.csv) are skipped. Writes OUT/labels.csv.",
                       epilog="example: audioscene download --csv balanced_train_segments.csv --out data/audioset/"
                              "balanced --jobs 8")
    p.add_argument("--csv", type=Path, required=True, help="AudioSet segment CSV (# YTID, start, end, labels)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--jobs", type=_positive_int, default=8, help="parallel downloads (default 8)")
    p.add_argument("--retries", type=_count, default=3, help="retries of a transient failure (default 3)")
    p.add_argument("--backoff", type=_number(low=0), default=2.0, help="first retry delay in seconds, doubled each time (default 2)")
    p.add_argument("--url-template", default="https://www.youtube.com/watch?v={ytid}",
                   help="source URL with {ytid} (and {start}, {end}); default the YouTube watch URL")
    p.add_argument("--clip-timeout", type=_positive, default=300.0,
                   help="seconds one attempt at one clip may take before it is killed and retried (default 300)")
    p.add_argument("--retry-failed", action="store_true", help="try the clips in failures.csv again")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed CSV lines (counted) instead of stopping")
    p.add_argument("--limit", type=_positive_int, help="only the first N segments")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("pack", help="write a data set into tar shards (WebDataset layout) with a checksummed index",
                       description="Pack clips into shards of about --shard-mb (key.flac + key.json per clip) and "
                                   "index.json with each shard's clip count and sha256; files are written atomically.",
                       epilog="examples:\n  audioscene pack --data data/train --out shards/train\n"
                              "  audioscene pack --data folder:my_clips --labels my_clips/labels.csv --out shards/mine",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="DIR (weak.csv + audio/), folder:DIR (with --labels) or "
                                                 "dcase2018:ROOT:SPLIT")
    p.add_argument("--labels", help="for folder: data, the CSV filename,labels")
    p.add_argument("--out", type=Path, required=True, help="shard folder to write")
    p.add_argument("--shard-mb", type=_positive, default=1000.0, help="shard size in MB (default 1000)")
    p.set_defaults(func=_cmd_pack)

    p = sub.add_parser("verify", help="check every shard against its index (size, sha256, members)",
                       description="Check that every shard listed in index.json exists, has the recorded size and "
                                   "sha256, and holds one .flac and one .json per clip. Exit code 1 on any problem.",
                       epilog="example: audioscene verify shards/train")
    p.add_argument("shards", type=Path, metavar="SHARDS", help="shard folder (with index.json)")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("demo", help="run the pipeline on the embedded synthetic data set",
                       description="Run the whole pipeline offline on synthetic data.",
                       epilog="example: audioscene demo --out demo_output")
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default demo_output)")
    p.add_argument("--seed", type=_count, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    secondary_rank = launch_rank() != 0  # under torchrun, rank 0 speaks for all
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING if secondary_rank else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return args.func(args) or 0
    except USER_ERRORS as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
