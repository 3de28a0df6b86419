"""`audioscene report`: the paper's Tables 2–4 and Figure 2 regenerated from trained runs, with
bootstrap confidence intervals, the paper's numbers beside each row, and the provenance of every
number.

    audioscene report --runs "B+att=runs/b_att" A=runs/a Yu=runs/yu --eval-data data/eval -o report/

writes `report/report.md`, `report/index.html` (one self-contained page), `report/table2.csv` and
`report/provenance.json`. Each run contributes its peak epoch, its Avg (checkpoint-averaged outputs)
and, when it kept one, its moving average of the weights (`evaluate.evaluate_run`); each row has
mAP, mean AUC and d′ with percentile-bootstrap 95 % intervals over clips (`metrics.bootstrap`), the
number of clips and classes scored, and, for a model the paper reports, the paper's row and the
difference. The peak epoch is chosen on the scored split itself, as in the paper, unless
`select_data` names another split.

`segmentation` builds Tables 3 and 4 and Figure 2 (paper §5) from a tagger's frame outputs on splits
with strong labels: thresholds (and median kernels) tuned on one split, events scored on every
split. `audioscene report --dcase ROOT` runs it on DCASE 2018 task 4 (tuned on test; scored on test,
as the paper did, and on eval, the honest number), with the AudioSet labels mapped onto the DCASE
classes by a named mapping (`labels.class_mapping`); `make demo` runs it on the synthetic splits.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import importlib.metadata
import json
import os
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

import numpy as np

from ._io import atomic_open
from .checkpoints import Checkpoint, CheckpointError, list_epochs
from .errors import ConfigError, check_number
from .evaluate import evaluate_run
from .metrics import SCORES
from .metrics.bootstrap import MAX_RESAMPLES, MIN_RESAMPLES, confidence_intervals
from .report import PAPER_TABLE2, markdown_table

# model name → its row in the paper's Table 2 (peak; "(Avg)" rows follow by name)
PAPER_ROWS = {"resnet_a": "ResNet A", "resnet_b": "ResNet B", "resnet_b_att": "ResNet B + att",
              "resnet_c_att": "ResNet C + att", "resnet_d_att": "ResNet D + att",
              "yu_multilevel_att": "Yu et al.", "kong_att": "Kong et al."}
VARIANTS = {"peak": "peak", "avg": "Avg", "ema": "EMA weights"}


@dataclass(frozen=True)
class Row:
    run: str
    variant: str  # peak, avg or ema
    epoch: int | None
    scores: dict  # mAP, mAUC, d_prime → value
    intervals: dict  # same keys → (low, high)
    n_clips: int
    n_classes: str  # "scored/total"
    paper: tuple[str, float, float, float] | None  # the paper's row, if it reports this model
    labels: tuple[str, ...] = ()
    per_class: dict | None = None  # {"ap": [K], "auc": [K]}


def _paper_row(model: str, variant: str) -> tuple[str, float, float, float] | None:
    name = PAPER_ROWS.get(model)
    if name is None:
        return None
    wanted = f"{name} (Avg)" if variant == "avg" else name
    return next((row for row in PAPER_TABLE2 if row[0] == wanted), None)


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown (not a git checkout)"
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"


def check_inputs(runs: dict[str, str | os.PathLike], eval_data: str, labels_csv: str = "",
                 select_data: str | None = None, dcase: str | os.PathLike | None = None,
                 embeddings_data: str | None = None, select_labels_csv: str = "", sed_run: str | os.PathLike = "",
                 mapping: str = "paper", figure_clips: tuple[str, ...] = ()) -> None:
    """Name a missing run, data folder, DCASE split, mapping file or figure clip, or a run that
    cannot do what it is asked (an embedding model for Tables 3–4), before any work starts (one
    error)."""
    from .data import DataSpec, dcase2018
    from .data.folder import DataSetError
    from .labels import class_mapping

    for run in runs.values():
        if not list_epochs(run):
            raise CheckpointError(f"{run}: no epoch_NNN.pt checkpoints")
        if embeddings_data is None and _family(str(run)) == "embedding":
            raise ConfigError(f"{run}: a model on AudioSet's released embeddings; give --embeddings-data "
                              "embeddings:DIR to score it")
    if select_labels_csv and select_data is None:
        raise ConfigError("--select-labels labels the --select-data split; give --select-data too")
    for data, labels in ((eval_data, labels_csv), (select_data, select_labels_csv), (embeddings_data, "")):
        if data is not None and not Path(DataSpec.parse(data, labels).path).exists():
            raise DataSetError(f"{data}: no such data folder")
    if dcase is not None:
        for split in ("test", "eval"):
            dcase2018.paths(dcase, split)
        if sed_run and _family(str(sed_run)) == "embedding":
            raise ConfigError(f"{sed_run}: a model on AudioSet's released embeddings has no audio front end; Tables "
                              "3-4 need a log-mel model (choose another with --sed-run)")
        class_mapping(mapping)
        audio_dir = dcase2018.paths(dcase, "test")[0]
        missing = [clip for clip in figure_clips if not (Path(audio_dir) / clip).is_file()]
        if missing:
            raise DataSetError(f"--figure-clips: {missing[0]} is not a file of {audio_dir}")


def is_report_folder(folder: Path) -> bool:
    """Whether `folder` holds a report `write` made (so a new one may replace it)."""
    return (folder / "report.md").is_file() and (folder / "provenance.json").is_file()


@cache
def _family(run: str) -> str:
    """The model family of a run (read once per process)."""
    return Checkpoint.load(list_epochs(run)[0]).model_config.get("family", "resnet")


def table2(runs: dict[str, str | os.PathLike], eval_data: str, labels_csv: str = "", select_data: str | None = None,
           device: str = "auto", n_resamples: int = 1000, seed: int = 0, progress: bool = True,
           embeddings_data: str | None = None, select_labels_csv: str = "") -> tuple[list[Row], dict]:
    """The rows of Table 2 for each named run, and the provenance record. Runs of embedding models
    are scored on `embeddings_data` (the same clips as AudioSet's released features), the others on
    `eval_data`; `select_data` picks the ResNets' peak epochs."""
    check_number("n_resamples", n_resamples, integer=True, low=MIN_RESAMPLES, high=MAX_RESAMPLES)
    rows, provenance = [], {
        "package": f"audioscene {importlib.metadata.version('audioscene')}", "git_commit": _git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "eval_data": str(eval_data),
        "embeddings_data": embeddings_data, "selected_on": str(select_data or eval_data),
        "bootstrap": {"resamples": n_resamples, "seed": seed, "interval": "percentile, 95 %"}, "runs": {}}
    for name, run in runs.items():
        on_embeddings = _family(str(run)) == "embedding"
        if on_embeddings and embeddings_data is None:
            raise ConfigError(f"{run}: a model on AudioSet's released embeddings; give --embeddings-data "
                              "embeddings:DIR to score it")
        result = evaluate_run(run, embeddings_data if on_embeddings else eval_data, device=device, progress=progress,
                              labels_csv="" if on_embeddings else labels_csv,
                              select_data=None if on_embeddings else select_data,
                              select_labels_csv="" if on_embeddings else select_labels_csv)
        stored = result["run_config"]
        model = stored["model_config"]["name"]
        provenance["runs"][name] = {
            "run": str(run), "model": model, "model_config": stored["model_config"],
            "frontend": stored["frontend_config"], "train_config": stored["train_config"],
            "epochs": len(result["epochs"]), "precision": "float32", "device": device, "n_clips": result["n_clips"],
            "clip_list_sha256": hashlib.sha256("\n".join(sorted(result["keys"])).encode()).hexdigest()}
        scored = result["peak"]["n_classes_scored"]
        total = scored + result["peak"]["n_classes_skipped"]
        for variant, outputs in result["outputs"].items():
            summary = result[variant]
            epoch = {"peak": result["peak_epoch"], "ema": result["ema_epoch"]}.get(variant)
            rows.append(Row(name, variant, epoch, {key: summary[key] for key in SCORES},
                            confidence_intervals(result["targets"], outputs, n_resamples, seed=seed),
                            result["n_clips"], f"{scored}/{total}", _paper_row(model, variant),
                            result["labels"].names, summary["per_class"]))
    return rows, provenance


def _label(row: Row) -> str:
    return f"{row.run} ({VARIANTS[row.variant]}" + (f", epoch {row.epoch})" if row.epoch else ")")


def _cells(row: Row) -> list[str]:
    cells = [_label(row)]
    for key in SCORES:
        low, high = row.intervals[key]
        cells.append(f"{row.scores[key]:.3f} [{low:.3f}, {high:.3f}]")
    cells += [str(row.n_clips), row.n_classes]
    if row.paper:
        cells += [row.paper[0], " / ".join(f"{v:.3f}" for v in row.paper[1:]),
                  " / ".join(f"{ours - theirs:+.3f}" for ours, theirs in zip(row.scores.values(), row.paper[1:]))]
    else:
        cells += ["–", "–", "–"]
    return cells


HEADER = ("run", *(f"{name} [95 % CI]" for name in SCORES.values()), "clips", "classes scored", "paper row",
          "paper mAP / AUC / d′", "ours − paper")


FIGURE_LABELS = ("Alarm_bell_ringing", "Frying", "Cat", "Electric_shaver_toothbrush")  # the paper's Figure 2


def dcase_segmentation(run: str | os.PathLike, root: str | os.PathLike, out_dir: str | os.PathLike,
                       mapping: str = "paper", checkpoint: str = "best", device: str = "auto", weights: str = "auto",
                       figure_clips: tuple[str, ...] = (), data_name: str = "DCASE 2018 task 4") -> tuple[str, dict]:
    """Tables 3–4 and Figure 2 on DCASE 2018 task 4 (`ROOT` in the released layout) for one run:
    tuned on test, scored on test and eval; the run's labels mapped onto the DCASE classes by
    `mapping` (written to `out_dir/mapping.json`). Returns (Markdown, provenance entries)."""
    from .audio import expand_paths
    from .data import dcase2018
    from .infer import Tagger
    from .labels import class_mapping

    groups = class_mapping(mapping)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_dir / "mapping.json", "w", encoding="utf-8") as f:
        json.dump({cls: list(names) for cls, names in groups.items()}, f, indent=2)
    tagger = Tagger.from_run(run, checkpoint, device=device, weights=weights)
    splits = {split: (dcase2018.paths(root, split)[0], dcase2018.events(root, split)) for split in ("test", "eval")}
    markdown = segmentation(tagger, splits, tune_split="test", out_dir=out_dir / "sed", classes=groups,
                            figure_labels=() if figure_clips else FIGURE_LABELS, figure_clips=figure_clips,
                            table4_split="test", figure_split="test",
                            title=f"{Path(run).name}, {checkpoint} checkpoint, {data_name}, mapping {mapping}")
    return markdown, {"dcase_root": str(root), "sed_run": str(run), "mapping": mapping,
                      "mapping_file": "mapping.json",
                      "n_clips": {split: len(expand_paths([audio])) for split, (audio, _) in splits.items()}}


def write(rows: list[Row], provenance: dict, out_dir: str | os.PathLike, sections: str = "",
          title: str = "Table 2, reproduced") -> Path:
    """`report.md`, `index.html`, `table2.csv`, `per_class_RUN.csv` (AP and AUC per class of each
    row) and `provenance.json` in `out_dir` (each atomically); `sections`: more Markdown (Tables
    3–4) appended to report.md and shown in the page."""
    from .report import write_per_class_csv

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for run in dict.fromkeys(row.run for row in rows):
        mine = [row for row in rows if row.run == run]
        write_per_class_csv(out_dir / f"per_class_{run}.csv", mine[0].labels,
                            [(row.variant, {"per_class": row.per_class}) for row in mine])
    table = [_cells(row) for row in rows]
    note = (f"Peak epoch chosen on {provenance['selected_on']}; intervals: {provenance['bootstrap']['interval']} "
            f"bootstrap over clips, {provenance['bootstrap']['resamples']} resamples. Paper rows: AudioSet eval set, "
            "527 classes.")
    with atomic_open(out_dir / "report.md", "w", encoding="utf-8") as f:
        f.write(f"# {title}\n\n{markdown_table(HEADER, table)}\n\n{note}\n\n"
                f"{provenance['package']}, commit {provenance['git_commit']}, {provenance['date']}; "
                f"full provenance in provenance.json\n\n{sections}")
    with atomic_open(out_dir / "table2.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("run", "variant", "epoch", *(f"{k}{s}" for k in SCORES for s in ("", "_low", "_high")),
                         "n_clips", "classes_scored", "paper_row"))
        for row in rows:
            writer.writerow((row.run, row.variant, row.epoch or "",
                             *(f"{v:.6f}" for k in SCORES for v in (row.scores[k], *row.intervals[k])),
                             row.n_clips, row.n_classes, row.paper[0] if row.paper else ""))
    with atomic_open(out_dir / "provenance.json", "w", encoding="utf-8") as f:
        json.dump(provenance, f, indent=2, default=str)
        f.write("\n")
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in line) + "</tr>" for line in table)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in HEADER)
    figures = "".join(f"<h3>{html.escape(png.name)}</h3><img src='data:image/png;base64,"
                      f"{base64.b64encode(png.read_bytes()).decode()}'>"
                      for png in sorted(out_dir.glob("sed/figure2_*.png"))) if sections else ""
    with atomic_open(out_dir / "index.html", "w", encoding="utf-8") as f:
        f.write("<!doctype html><meta charset='utf-8'><title>audioscene report</title><style>body{font-family:"
                "sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
                "text-align:right}td:first-child{text-align:left}</style>"
                f"<h1>{html.escape(title)}</h1>"
                f"<table><tr>{head}</tr>{cells}</table><p>{html.escape(note)}</p>"
                f"{f'<pre>{html.escape(sections)}</pre>' if sections else ''}{figures}"
                f"<h2>Provenance</h2><pre>{html.escape(json.dumps(provenance, indent=2, default=str))}</pre>")
    return out_dir / "report.md"


# Table 3's settings: (name, tuned thresholds?, tuned kernels?, collar s)
SED_SETTINGS = (("0.5 thresholds", False, False, 0.2), ("swept thresholds", True, False, 0.2),
                ("median filter + swept thresholds", True, True, 0.2),
                ("median filter + swept thresholds, 0.4 s collar", True, True, 0.4))
BEST_SETTING = "median filter + swept thresholds"


def segmentation(tagger, splits: dict[str, tuple[Path, list]], tune_split: str, out_dir: str | os.PathLike,
                 classes: str | dict = "all", n_figures: int = 4, figure_labels: tuple[str, ...] = (),
                 figure_clips: tuple[str, ...] = (), table4_split: str = "", figure_split: str = "",
                 title: str = "") -> str:
    """Tables 3 and 4 and Figure 2 (Markdown): `splits` maps a name to (audio folder, reference
    events); thresholds and kernels are tuned on `tune_split` and every split is scored. Writes the
    tuning JSONs, each split's events (`events_SPLIT_SETTING.tsv`) and `figure2_N.png` to `out_dir`.
    Figure 2 shows `figure_clips` (file names of `figure_split`), or for each of `figure_labels` the
    first clip of `figure_split` with that class, else its first `n_figures` clips with two or more
    events (or with one). Table 4 is on `table4_split`; both default to the last split."""
    from .events import write_events_tsv
    from .infer import events_from_analysis
    from .metrics import event_f1, segment_f1
    from .report import table3, table4
    from .sed import DEFAULT_KERNELS, tune_on

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    analyses = {name: {file: result for _, file, result in tagger.analyze_files([audio], classes=classes,
                                                                                 progress=True)
                       if not isinstance(result, Exception)} for name, (audio, _) in splits.items()}
    reference = {name: events for name, (_, events) in splits.items()}
    labels = next(iter(analyses[tune_split].values())).labels
    tunings = {}
    for kernels, file_name in (((1,), "tuned_thresholds.json"), (DEFAULT_KERNELS, "tuned_median_thresholds.json")):
        tunings[kernels] = tune_on(analyses[tune_split], reference[tune_split], tagger.frame_hop, kernels=kernels,
                                   progress=True)
        tunings[kernels].save(out_dir / file_name)
    swept, median_swept = tunings.values()
    scores: dict[str, dict] = {name: {} for name in splits}
    segments = {}  # split → segment-based scores (1 s) of the best setting
    for name in splits:
        for setting, tuned, filtered, collar in SED_SETTINGS:
            thresholds = (median_swept if filtered else swept) if tuned else 0.5
            events = [e for file, result in analyses[name].items()
                      for e in events_from_analysis(result, file, thresholds, median_swept if filtered else 1)]
            scores[name][setting] = event_f1(reference[name], events, t_collar=collar, labels=labels)
            if setting == BEST_SETTING:
                segments[name] = segment_f1(reference[name], events, 1.0, labels)
            if collar == 0.2:
                write_events_tsv(out_dir / f"events_{name}_{setting.split()[0].replace('.', '')}.tsv", events)
    psds_line = ", ".join(f"{name} split {v[0]:.3f} / {v[1]:.3f}" for name, v in
                          _psds_scores(analyses, reference, median_swept, labels, out_dir).items())
    in_sample = " (tuned in-sample, like the paper's test column)"
    rows = [(f"{setting} — {name} split{in_sample if name == tune_split else ''}", scores[name][setting])
            for name in splits for setting, *_ in SED_SETTINGS if name != tune_split or setting != "0.5 thresholds"]
    last = list(splits)[-1]
    per_class, shown = table4_split or last, figure_split or last
    figures = _figures(tagger, analyses[shown], splits[shown][0], reference[shown], median_swept, out_dir, n_figures,
                       figure_labels, figure_clips)
    sizes = ", ".join(f"{name} {len(a)} clips" for name, a in analyses.items())
    return (f"## Table 3 style: segmentation, macro event F1 ({title}, frame hop {tagger.frame_hop} s; "
            f"thresholds/kernels tuned on the {tune_split} split; {sizes})\n\n{table3(rows)}\n\n"
            f"Segment-based F1 (1 s segments, sed_eval's rule), {BEST_SETTING}: "
            + ", ".join(f"{name} split macro {100 * s.macro_f1:.2f} % / micro {100 * s.micro_f1:.2f} %"
                        for name, s in segments.items()) + "\n\n"
            f"PSDS1 / PSDS2 (DCASE 2021 settings; {len(PSDS_THRESHOLDS)} thresholds, the tuned median kernels): "
            f"{psds_line}\n\n"
            f"## Table 4 style: per-class event F1 on the {per_class} split (200 ms collar)\n\n"
            f"{table4([(BEST_SETTING, scores[per_class][BEST_SETTING]), ('0.5 thresholds', scores[per_class]['0.5 thresholds'])])}"
            f"\n\nFigure 2 style plots: {', '.join(figures)} (in {out_dir})\n")


PSDS_THRESHOLDS = tuple(np.linspace(0.01, 0.99, 50))  # operating points: one threshold for every class


def _psds_scores(analyses: dict, reference: dict, tuning, labels, out_dir: Path) -> dict[str, tuple[float, float]]:
    """(PSDS1, PSDS2) of each split, over `PSDS_THRESHOLDS` with the tuning's median kernels. The
    inputs are written as `psds_eval` reads them: `out_dir/psds_SPLIT/` holds `ground_truth.tsv`,
    `metadata.tsv` (filename, duration) and one `detections_THRESHOLD.tsv` per operating point."""
    from .events import write_events_tsv
    from .infer import events_from_analysis
    from .metrics.psds import PSDS1, PSDS2, psds

    scores = {}
    for name, files in analyses.items():
        folder = out_dir / f"psds_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        durations = {file: result.duration for file, result in files.items()}
        events = [e for e in reference[name] if e.filename in durations]
        write_events_tsv(folder / "ground_truth.tsv", events)
        with atomic_open(folder / "metadata.tsv", "w", encoding="utf-8") as f:
            f.write("filename\tduration\n" + "".join(f"{file}\t{seconds:.3f}\n" for file, seconds in durations.items()))
        points = []
        for threshold in PSDS_THRESHOLDS:
            points.append([e for file, result in files.items()
                           for e in events_from_analysis(result, file, threshold, tuning)])
            write_events_tsv(folder / f"detections_{threshold:.2f}.tsv", points[-1])
        scores[name] = tuple(psds(events, points, durations, labels, **setting) for setting in (PSDS1, PSDS2))
    return scores


def _figures(tagger, analyses: dict, audio_dir: Path, reference: list, tuning, out_dir: Path, n_figures: int,
             figure_labels: tuple[str, ...], figure_clips: tuple[str, ...]) -> list[str]:
    from .errors import InputError
    from .report import figure2

    events_of = {name: [e for e in reference if e.filename == name] for name in analyses}
    missing = [clip for clip in figure_clips if clip not in analyses]
    if missing:
        raise InputError(f"--figure-clips: {missing[0]!r} is not a readable file of {audio_dir}")
    chosen = list(figure_clips) or [next((n for n in analyses if any(e.label == label for e in events_of[n])), None)
                                    for label in figure_labels]
    chosen = [n for n in chosen if n] or [n for n in analyses if len(events_of[n]) >= 2][:n_figures] or \
        [n for n in analyses if events_of[n]][:n_figures]
    names = []
    for i, name in enumerate(chosen, start=1):
        path = out_dir / f"figure2_{i}.png"
        figure2(tagger, audio_dir / name, path, analysis=analyses[name], reference=events_of[name], thresholds=tuning,
                title=f"{name}: reference " + ", ".join(sorted({e.label for e in events_of[name]})))
        names.append(path.name)
    return names
