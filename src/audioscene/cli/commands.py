"""What each `audioscene` subcommand does with its parsed arguments: call the library, print the
result. Library modules are imported inside each command, so `audioscene tag` does not load the
training code."""

from __future__ import annotations

import sys
from pathlib import Path

from ..distributed import launch_rank
from ..errors import InputError
from .arguments import PROG


def _warn(args, message: str) -> None:
    print(f"{PROG} {args.command}: {message}", file=sys.stderr)


def synth(args) -> None:
    from ..data.synthetic import generate

    snr = {} if args.snr_db is None else {"snr_db": args.snr_db}
    out = generate(args.out, n_clips=args.n_clips, seed=args.seed, workers=args.workers, max_events=args.max_events,
                   **snr)
    print(f"wrote {args.n_clips} clips to {out} (weak.csv, strong.tsv, audio/)")


def synth_embeddings(args) -> None:
    from ..data.embeddings import write_synthetic

    files = write_synthetic(args.data, args.out, seed=args.seed)
    print(f"wrote {len(files)} .tfrecord files to {args.out}; train on it with --data embeddings:{args.out}")


def train(args) -> None:
    from ..config import TrainConfig
    from ..train import resume, train
    from .arguments import config_values

    overrides = config_values(args, TrainConfig)
    if args.resume:
        run_dir = resume(args.resume, **overrides)
    else:
        run_dir = train(TrainConfig.for_new_run(overrides, args.config))
    if launch_rank() == 0:
        print(f"run finished: checkpoints and metrics.csv in {run_dir}")


def evaluate(args) -> None:
    from .._io import prepare_output
    from ..checkpoints import list_epochs
    from ..data import DataSpec
    from ..evaluate import evaluate_run
    from ..report import Table2Row, markdown_table, table2, write_per_class_csv
    from ..report.paper import table2_row

    list_epochs(args.run)  # a missing run folder is named before an output is prepared in it
    spec = DataSpec.parse(args.data, args.labels)
    if args.sed_tune:  # Tables 3-4 need strong labels on both splits: named before any work
        for folder in (args.sed_tune, Path(spec.path)):
            if spec.kind != "dir" or not (folder / "strong.tsv").is_file():
                raise InputError(f"--sed-tune: {folder} has no strong.tsv (Tables 3-4 need data folders with audio/ "
                                 "and the events of the tuning split and of --data)")
    select = DataSpec.parse(args.select_data, args.select_labels).sources if args.select_data else ()
    per_class = prepare_output(args.per_class or args.run / f"per_class_{spec.name}.csv", spec.sources + select)
    result = evaluate_run(args.run, args.data, device=args.device, batch_size=args.batch_size, workers=args.workers,
                          labels_csv=args.labels or "", select_data=args.select_data,
                          select_labels_csv=args.select_labels or "", amp=args.amp)
    model = result.run_config["model_config"]["name"]
    rows = [Table2Row(args.run.name, variant, scored.epoch, scored.summary, result.n_clips,
                      paper=table2_row(model, variant)) for variant, scored in result.variants.items()]
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
        from ..report import FigureChoice, folder_segmentation, to_markdown

        out = args.run / f"sed_{spec.name}"
        blocks, _ = folder_segmentation({args.run.name: args.run}, args.sed_tune, spec.path, out, device=args.device,
                                        figures=FigureChoice(n=0))
        print(f"\n{to_markdown(blocks, out)}\nevents, tunings and PSDS inputs: {out}")


def import_panns(args) -> None:
    from ..pretrained import RELEASES, import_panns

    path = import_panns(args.checkpoint, args.arch, args.out)
    release = RELEASES[args.arch]
    print(f"{args.checkpoint} ({args.arch}, published mAP {release.published['mAP']:.3f}) -> {path}\n"
          f"front end: {release.frontend.sample_rate} Hz, {release.frontend.n_mels} mel bands; use it as --run "
          f"{args.out} (tag, detect, evaluate, report, predict, export-onnx, train --init {path})")


def predict(args) -> None:
    from .._io import prepare_output
    from ..data import DataSpec
    from ..distill import predict_to_file

    prepare_output(args.output, DataSpec.parse(args.data, args.labels).sources)
    path = predict_to_file(args.run, args.data, args.output, checkpoint=args.checkpoint, labels_csv=args.labels or "",
                           device=args.device, batch_size=args.batch_size, workers=args.workers, weights=args.weights)
    print(f"clip probabilities of {len(args.run)} run(s) on {args.data} -> {path} (a teacher file for --teacher)")


def report(args) -> None:
    from ..report import ReportRequest, build

    names = [name for name, _ in args.runs]
    if len(set(names)) != len(names):
        raise InputError(f"run names must be unique, got {', '.join(names)}")
    path = build(ReportRequest(
        dict(args.runs), args.eval_data, args.out, labels_csv=args.labels or "", select_data=args.select_data,
        select_labels_csv=args.select_labels or "", embeddings_data=args.embeddings_data, n_resamples=args.bootstrap,
        seed=args.seed, device=args.device, dcase=args.dcase, sed_splits=tuple(args.sed_splits) if args.sed_splits else None,
        sed_runs=tuple(args.sed_run or ()), checkpoint=args.checkpoint,
        weights=args.weights, mapping=args.mapping, figure_clips=tuple(args.figure_clips or ())))
    print(path.read_text(encoding="utf-8"))
    print(f"written to {args.out}/ (report.md, index.html, table2.csv, provenance.json)")


def _tagger(args):
    from ..infer import Tagger

    if args.run.suffix == ".onnx":
        return Tagger.from_onnx(args.run, hop_s=args.hop_s, batch_size=args.batch_size)
    return Tagger.from_run(args.run, args.checkpoint, device=args.device, weights=args.weights, hop_s=args.hop_s,
                           batch_size=args.batch_size)


def _analyses(args, tagger, paths, failed: list):
    """(name, Analysis) of each audio input that could be read; the others are named on stderr and
    appended to `failed`."""
    for path, name, result in tagger.analyze_files(paths, classes=args.classes, progress=True,
                                                   workers=getattr(args, "workers", 0)):
        if isinstance(result, Exception):
            _warn(args, f"skipped {result}")
            failed.append(path)
        else:
            yield name, result


def tag(args) -> int:
    import csv
    import json

    tagger = _tagger(args)
    rows, failed = [], []
    for name, result in _analyses(args, tagger, args.paths, failed):
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


def export_onnx(args) -> None:
    from .._io import prepare_output
    from ..export import export_onnx

    prepare_output(args.output)
    parity = export_onnx(args.run, args.output, args.checkpoint, weights=args.weights, with_frontend=args.with_frontend,
                         tolerance=args.tolerance, frontend_precision=args.frontend_precision)
    print(f"wrote {args.output} ({'waveform' if args.with_frontend else 'log-mel'} input, dynamic batch and time); "
          f"ONNX Runtime vs PyTorch max |diff|: clipwise {parity.clipwise:.1e}, framewise {parity.framewise:.1e} "
          f"(tolerance {parity.tolerance:g})"
          + (f"; front end ({args.frontend_precision}) vs LogMel max |log-mel diff| {parity.frontend:.1e}"
             if args.with_frontend else ""))


def view(args) -> None:
    from ..viewer import ViewerConfig, serve

    config = ViewerConfig(top_k=args.top_k, thresholds=args.thresholds, median=args.median,
                          max_upload_mb=args.max_upload_mb)
    serve(_tagger(args), config, host=args.host, port=args.port, extra_hosts=args.allow_host)


def detect(args) -> int:
    from .._io import prepare_output
    from ..events import write_events_tsv
    from ..infer import events_from_analysis

    output = prepare_output(args.output, inputs=args.files)
    events, n_files, failed = [], 0, []
    for name, result in _analyses(args, _tagger(args), args.files, failed):
        events += events_from_analysis(result, name, args.thresholds, args.median, args.upsample)
        n_files += 1
    write_events_tsv(output, events)
    print(f"{len(events)} events in {n_files} files -> {output}")
    return 1 if failed else 0


def sed_eval(args) -> None:
    from ..events import read_events_tsv
    from ..metrics import event_f1
    from ..metrics.detection import DETECTION_SCORES, Detections
    from ..report import markdown_table, table4

    reference, estimated = read_events_tsv(args.ref), read_events_tsv(args.est)
    scores = event_f1(reference, estimated, t_collar=args.collar, percentage_of_length=args.percentage_of_length,
                      zero_score=not args.nan_for_empty)
    found = Detections(reference, estimated, scores.labels)
    print(markdown_table(table4([(f"(collar {args.collar:g} s)", scores, found)], with_paper=False)))
    print(f"\nmacro F1 {100 * scores.macro_f1:.2f} %   micro F1 {100 * scores.micro_f1:.2f} %   "
          f"({int(scores.n_ref.sum())} reference, {int(scores.n_sys.sum())} estimated events)")
    # the detection scores one event list gives (PSDS needs frame outputs at many thresholds)
    print("   ".join(f"{score.header} {score.text(score.of(found))}" for score in DETECTION_SCORES.values()
                     if not score.needs_sweep))


def sed_tune(args) -> int:
    from .._io import prepare_output
    from ..events import read_events_tsv
    from ..report import markdown_table, tuning_table
    from ..sed import TuneGrid, tune_on

    output = prepare_output(args.output, inputs=(args.ref,))
    tagger, failed = _tagger(args), []
    analyses = dict(_analyses(args, tagger, [args.audio], failed))
    if not analyses:
        raise InputError(f"{args.audio}: no audio file could be read")
    grid = TuneGrid(args.grid, (1,) if args.thresholds_only else args.kernels, t_collar=args.collar,
                    upsample_factor=args.upsample)
    tuning = tune_on(analyses, read_events_tsv(args.ref), tagger.frame_hop, grid, progress=True)
    tuning.save(output)
    print(markdown_table(tuning_table(tuning)))
    print(f"\ntuned on {len(analyses)} files -> {args.output}")
    return 1 if failed else 0


def plot(args) -> None:
    from .._io import prepare_output
    from ..events import read_events_tsv
    from ..report import figure2

    prepare_output(args.output, inputs=(args.file,))
    reference = [e for e in read_events_tsv(args.ref) if e.filename == args.file.name] if args.ref else []
    chosen = figure2(_tagger(args), args.file, args.output, reference=reference, thresholds=args.thresholds,
                     top=args.top, classes=args.classes)
    print(f"{args.file.name}: spectrogram and activations of {', '.join(chosen)} -> {args.output}")


def download(args) -> int:
    from ..data.audioset import read_segments, write_labels_csv
    from ..data.download import check_url_template, download

    check_url_template(args.url_template)
    segments = read_segments(args.csv, skip_bad=args.skip_bad)
    print(segments.report(), file=sys.stderr)
    chosen = segments.segments[:args.limit] if args.limit else segments.segments
    report = download(chosen, args.out, jobs=args.jobs, url_template=args.url_template, retries=args.retries,
                      backoff_s=args.backoff, retry_failed=args.retry_failed, clip_timeout_s=args.clip_timeout)
    labels_csv = write_labels_csv(segments, chosen, args.out)
    print(report.text())
    if report.failed:
        print(f"failures and their reasons: {args.out / 'failures.csv'}")
    if report.requested and not report.fetched:
        _warn(args, f"error: none of the {report.requested} clips could be fetched (see {args.out / 'failures.csv'})")
        return 1
    print(f"train on it: --data folder:{args.out / 'audio'} --labels {labels_csv}")
    return 0


def pack(args) -> None:
    from ..data import DataSpec
    from ..data.store import pack
    from ..strong import StrongLabels

    dataset = DataSpec.parse(args.data, args.labels).open_clips(purpose="packing")
    strong = None if args.strong_labels is None else StrongLabels.read(args.strong_labels, dataset.label_set,
                                                                        dataset.keys)
    index = pack(dataset.clips, args.out, dataset.label_set, shard_bytes=int(args.shard_mb * 2**20), strong=strong)
    stored = "" if strong is None else f" ({len(strong.events)} with their events)"
    print(f"packed {len(dataset.clips)} clips{stored} -> {index}")


def verify(args) -> int:
    from ..data.store import verify

    report = verify(args.shards)
    for problem in report.problems:
        _warn(args, problem)
    print(f"{args.shards}: {report.n_shards} shards, {report.n_clips} clips, "
          f"{'all checksums and members good' if report.ok else f'{len(report.problems)} problems'}")
    return 0 if report.ok else 1


def demo(args) -> None:
    from ..demo import DemoConfig, run_demo

    print(run_demo(args.out, DemoConfig(seed=args.seed)))
