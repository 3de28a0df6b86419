"""The `audioscene` subcommands and their options (`build_parser`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..metrics.bootstrap import MAX_RESAMPLES, MIN_RESAMPLES
from ..sed import DEFAULT_KERNELS, DEFAULT_THRESHOLDS, MAX_UPSAMPLE
from . import commands
from .arguments import (
    PROG,
    Parser,
    add_compute_options,
    add_config_flags,
    add_data_option,
    add_event_options,
    add_model_options,
    add_weights_option,
    count,
    named_run,
    number,
    per_class_values,
    positive,
    positive_int,
    snr_range,
)


def _synth(sub) -> None:
    p = sub.add_parser("synth", help="generate the synthetic soundscape data set",
                       description="Generate deterministic synthetic 10 s soundscapes with the 10 DCASE 2018 class names.",
                       epilog="example: audioscene synth --out data/synth/train --n-clips 2000 --seed 1 --snr-db 0,15",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (audio/, weak.csv, strong.tsv)")
    p.add_argument("--n-clips", type=positive_int, default=100, help="number of clips (default 100)")
    p.add_argument("--seed", type=count, default=0, help="random seed; same seed, same bytes (default 0)")
    p.add_argument("--snr-db", type=snr_range, default=None,
                   help="event-to-background ratio in dB: a value or LOW,HIGH (default 0,15)")
    p.add_argument("--max-events", type=count, default=4, help="events per clip: 0 to this many (default 4)")
    p.add_argument("--workers", type=positive_int, help="processes rendering clips (default: one per CPU)")
    p.set_defaults(func=commands.synth)


def _synth_embeddings(sub) -> None:
    p = sub.add_parser("synth-embeddings", help="AudioSet-style embedding TFRecords of a synthetic split (offline "
                                                "stand-in for the released features)",
                       description="Write a synthetic split as TFRecords in the layout of AudioSet's released "
                                   "embeddings (pooled log-mel through a fixed random projection, 8-bit quantised), "
                                   "for the embedding baselines (--model yu_multilevel_att / kong_att).",
                       epilog="example: audioscene synth-embeddings --data data/synth/train --out data/emb/train")
    p.add_argument("--data", type=Path, required=True, help="synthetic split folder (weak.csv + audio/)")
    p.add_argument("--out", type=Path, required=True, help="folder for the .tfrecord files")
    p.add_argument("--seed", type=count, default=0, help="seed of the projection; use the same for every split "
                                                        "(default 0)")
    p.set_defaults(func=commands.synth_embeddings)


def _train(sub) -> None:
    from ..config import TrainConfig

    p = sub.add_parser("train", help="train a Table-1 model or an embedding baseline (checkpoint every epoch, "
                                     "resumable)",
                       description="Train a model on a data folder (weak.csv + audio/), evaluating after every epoch.",
                       epilog="examples:\n  audioscene train --train-data data/train --eval-data data/eval --model resnet_b_att "
                              "--model-arg width=16 --epochs 5 --out runs/b_att\n  audioscene train --config run.toml --seed 3\n"
                              "  audioscene train --resume runs/b_att --epochs 10\n"
                              "  torchrun --nproc-per-node 4 -m audioscene train --data shards:shards/train "
                              "--eval-data data/eval --batch-size 128 --out runs/ddp\n"
                              "  audioscene train --data folder:my_clips --labels my_clips/labels.csv --eval-data "
                              "folder:my_eval --init runs/b_att/epoch_050.pt --epochs 5 --out runs/mine\n"
                              "  audioscene train --data embeddings:audioset_v1_embeddings/bal_train --eval-data "
                              "embeddings:audioset_v1_embeddings/eval --model yu_multilevel_att --lr 1e-3 "
                              "--batch-size 500 --sampler balanced --out runs/yu",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="TOML file with TrainConfig keys; flags override it")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint")
    add_config_flags(p, TrainConfig)
    p.set_defaults(func=commands.train)


def _evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="Table-2 style scores of a run: peak epoch and checkpoint-averaged outputs",
                       description="Score every checkpoint of a run on a data folder; report the peak epoch and 'Avg' "
                                   "(the mean of all checkpoints' outputs, scored).",
                       epilog="examples:\n  audioscene evaluate --run runs/b_att --data data/eval\n"
                              "  audioscene evaluate --run runs/b_att --data data/eval --sed-tune data/tune",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="run folder with epoch_NNN.pt files")
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
    p.set_defaults(func=commands.evaluate)


def _predict(sub) -> None:
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
    p.set_defaults(func=commands.predict)


def _report(sub) -> None:
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
    p.set_defaults(func=commands.report)


def _tag(sub) -> None:
    p = sub.add_parser("tag", help="top labels of audio files (any length)",
                       description="Tag audio files: clip scores (max over ~10 s windows) and the top-k labels. "
                                   "Folders expand to the audio files in them; files that cannot be read are named "
                                   "on stderr and skipped (exit code 1 at the end).",
                       epilog="examples:\n  audioscene tag recordings/ --run runs/b_att --top-k 3\n"
                              "  audioscene tag a.wav --run model.onnx --format json > tags.json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATHS", help="audio files or folders of them")
    p.add_argument("--top-k", type=positive_int, default=5, help="labels per file (default 5)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format (default table)")
    p.add_argument("--workers", type=count, default=2, help="threads decoding the next files (default 2; 0: none)")
    add_model_options(p)
    p.set_defaults(func=commands.tag)


def _export_onnx(sub) -> None:
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
    p.set_defaults(func=commands.export_onnx)


def _view(sub) -> None:
    p = sub.add_parser("view", help="a local web page: drop a file, see tags, activations and events",
                       description="Serve a page (loopback only by default) where you drop or pick an audio file and "
                                   "see its log-mel spectrogram, top tags, activation curves and detected events, "
                                   "with playback and a moving cursor. Works offline.",
                       epilog="example: audioscene view --run runs/b_att --thresholds tuned.json --median tuned.json")
    p.add_argument("--port", type=number(integer=True, low=1, high=65535), default=8765, help="port (default 8765)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to this host name (e.g. the machine's DNS name when "
                        "serving on 0.0.0.0); others get 400, which stops DNS-rebinding attacks")
    p.add_argument("--top-k", type=positive_int, default=5, help="tags shown (default 5)")
    add_event_options(p)
    p.add_argument("--max-upload-mb", type=positive, default=100.0, help="largest upload accepted (default 100 MB)")
    add_model_options(p)
    p.set_defaults(func=commands.view)


def _detect(sub) -> None:
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
    add_event_options(p)
    p.add_argument("--upsample", type=number(integer=True, low=1, high=MAX_UPSAMPLE),
                   help=f"interpolate the frame scores onto a grid this many times finer first, at most {MAX_UPSAMPLE} "
                        "(default: the tuning JSON's, else 1)")
    add_model_options(p)
    p.set_defaults(func=commands.detect)


def _sed_eval(sub) -> None:
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
    p.set_defaults(func=commands.sed_eval)


def _sed_tune(sub) -> None:
    p = sub.add_parser("sed-tune", help="per-class thresholds and median kernels that maximise event F1",
                       description="Sweep a threshold grid and odd median kernels per class on a tuning set with "
                                   "reference events; writes the best setting of each class as JSON for detect.",
                       epilog="example: audioscene sed-tune --run runs/b_att --audio data/tune/audio "
                              "--ref data/tune/strong.tsv -o tuned.json")
    p.add_argument("--audio", type=Path, required=True, help="folder of the tuning set's audio files")
    p.add_argument("--ref", type=Path, required=True, help="their reference events (DCASE TSV)")
    p.add_argument("-o", "--output", type=Path, required=True, help="tuning JSON to write")
    p.add_argument("--grid", type=per_class_values(float, 0, 1, tuning=False), default=list(DEFAULT_THRESHOLDS),
                   help="thresholds to try, comma-separated (default 0.05,0.10,...,0.95)")
    p.add_argument("--kernels", type=per_class_values(int, 1, odd=True, tuning=False), default=list(DEFAULT_KERNELS),
                   help="odd median kernels to try, comma-separated (default 1,3,5,7,9,11)")
    p.add_argument("--thresholds-only", action="store_true", help="no median filter (kernel 1 for every class)")
    p.add_argument("--upsample", type=number(integer=True, low=1, high=MAX_UPSAMPLE), default=1,
                   help=f"interpolate the frame scores onto a grid this many times finer (at most {MAX_UPSAMPLE}) "
                        "before filtering and "
                        "thresholds (e.g. 4: 0.32 s frames -> 0.08 s); stored in the JSON for detect (default 1)")
    p.add_argument("--collar", type=positive, default=0.2, help="collar in seconds for the F1 (default 0.2)")
    add_model_options(p)
    p.set_defaults(func=commands.sed_tune)


def _plot(sub) -> None:
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
    p.set_defaults(func=commands.plot)


def _download(sub) -> None:
    p = sub.add_parser("download", help="fetch AudioSet clips (yt-dlp + ffmpeg), resumable, with a shrinkage report",
                       description="Fetch the [start, end] section of each segment of an AudioSet CSV as 16 kHz mono "
                                   "FLAC (OUT/audio/YTID_STARTMS.flac). Re-running resumes: fetched clips and "
                                   "permanent failures (OUT/failures.csv) are skipped. Writes OUT/labels.csv.",
                       epilog="example: audioscene download --csv balanced_train_segments.csv --out data/audioset/"
                              "balanced --jobs 8")
    p.add_argument("--csv", type=Path, required=True, help="AudioSet segment CSV (# YTID, start, end, labels)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--jobs", type=positive_int, default=8, help="parallel downloads (default 8)")
    p.add_argument("--retries", type=count, default=3, help="retries of a transient failure (default 3)")
    p.add_argument("--backoff", type=number(low=0), default=2.0, help="first retry delay in seconds, doubled each time (default 2)")
    p.add_argument("--url-template", default="https://www.youtube.com/watch?v={ytid}",
                   help="source URL with {ytid} (and {start}, {end}); default the YouTube watch URL")
    p.add_argument("--clip-timeout", type=positive, default=300.0,
                   help="seconds one attempt at one clip may take before it is killed and retried (default 300)")
    p.add_argument("--retry-failed", action="store_true", help="try the clips in failures.csv again")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed CSV lines (counted) instead of stopping")
    p.add_argument("--limit", type=positive_int, help="only the first N segments")
    p.set_defaults(func=commands.download)


def _pack(sub) -> None:
    p = sub.add_parser("pack", help="write a data set into tar shards (WebDataset layout) with a checksummed index",
                       description="Pack clips into shards of about --shard-mb (key.flac + key.json per clip) and "
                                   "index.json with each shard's clip count and sha256; files are written atomically.",
                       epilog="examples:\n  audioscene pack --data data/train --out shards/train\n"
                              "  audioscene pack --data folder:my_clips --labels my_clips/labels.csv --out shards/mine\n"
                              "  audioscene pack --data data/train --strong-labels data/train/strong.tsv --out shards/strong",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(p, "--data", "data to pack", kinds=("dir", "folder", "dcase2018"))
    p.add_argument("--out", type=Path, required=True, help="shard folder to write")
    p.add_argument("--shard-mb", type=positive, default=1000.0, help="shard size in MB (default 1000)")
    p.add_argument("--strong-labels", type=Path, metavar="FILE.tsv",
                   help="a DCASE event TSV of some of the clips: each stores its events, and training on the shards "
                        "uses them as with train --strong-labels")
    p.set_defaults(func=commands.pack)


def _verify(sub) -> None:
    p = sub.add_parser("verify", help="check every shard against its index (size, sha256, members)",
                       description="Check that every shard listed in index.json exists, has the recorded size and "
                                   "sha256, and holds one .flac and one .json per clip. Exit code 1 on any problem.",
                       epilog="example: audioscene verify shards/train")
    p.add_argument("shards", type=Path, metavar="SHARDS", help="shard folder (with index.json)")
    p.set_defaults(func=commands.verify)


def _demo(sub) -> None:
    p = sub.add_parser("demo", help="run the pipeline on the embedded synthetic data set",
                       description="Run the whole pipeline offline on synthetic data.",
                       epilog="example: audioscene demo --out demo_output")
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default demo_output)")
    p.add_argument("--seed", type=count, default=0, help="random seed (default 0)")
    p.set_defaults(func=commands.demo)


def _import_panns(sub) -> None:
    from ..pretrained import RELEASES

    p = sub.add_parser("import-panns", help="a released PANNs checkpoint (Cnn14, ...) as a run for every command",
                       description="Check a PANNs AudioSet checkpoint (from the Zenodo record 10.5281/zenodo.3987831) "
                                   "against its architecture, load it without executing anything, and write it as a "
                                   "run folder (epoch_001.pt) with its front end and the 527 AudioSet labels.",
                       epilog="example: audioscene import-panns Cnn14_mAP=0.431.pth --arch Cnn14 --out runs/cnn14")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="the released .pth file")
    p.add_argument("--arch", choices=tuple(RELEASES), default="Cnn14", help="its architecture (default Cnn14)")
    p.add_argument("--out", type=Path, required=True, help="run folder to write (new, or without checkpoints)")
    p.set_defaults(func=commands.import_panns)


SUBCOMMANDS = (_synth, _synth_embeddings, _train, _evaluate, _predict, _report, _tag, _export_onnx, _view, _detect,
               _sed_eval, _sed_tune, _plot, _download, _pack, _verify, _demo, _import_panns)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Audio tagging and sound event detection with the paper's ResNets.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser
