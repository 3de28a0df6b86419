"""Tables 3 and 4 and Figure 2 (paper §5) from a tagger's frame outputs on splits with strong
labels: thresholds (and median kernels) tuned on one split, events scored on every split, with
segment-based F1 and PSDS beside. `dcase_segmentation` runs it on DCASE 2018 task 4 (tuned on
test; scored on test, as the paper did, and on eval, the honest number), with the run's labels mapped
onto the DCASE classes by a named mapping (`labels.class_mapping`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import atomic_open
from ..errors import InputError
from ..events import Event, write_events_tsv
from ..metrics import EventScores, event_f1, segment_f1
from . import paper
from .document import Block, Figure, Heading, Paragraph
from .figures import figure2
from .tables import table3, table4

# Table 3's settings: (name, tuned thresholds?, tuned kernels?, collar s)
SED_SETTINGS = (("0.5 thresholds", False, False, 0.2), ("swept thresholds", True, False, 0.2),
                (paper.BEST_SETTING, True, True, 0.2), (f"{paper.BEST_SETTING}, 0.4 s collar", True, True, 0.4))
PSDS_THRESHOLDS = tuple(np.linspace(0.01, 0.99, 50))  # operating points: one threshold for every class


@dataclass(frozen=True)
class Split:
    """A split with strong labels: its audio folder and reference events."""

    audio: Path
    events: list[Event]


@dataclass(frozen=True)
class FigureChoice:
    """Which clips Figure 2 shows: `clips` (file names), else for each of `labels` the first clip
    with that class, else the first `n` clips with two or more events (or with one)."""

    clips: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    n: int = 4


def dcase_segmentation(run: str | os.PathLike, root: str | os.PathLike, out_dir: str | os.PathLike,
                       mapping: str = "paper", checkpoint: str = "best", device: str = "auto", weights: str = "auto",
                       figure_clips: tuple[str, ...] = (), data_name: str = "DCASE 2018 task 4"
                       ) -> tuple[list[Block], dict]:
    """Tables 3–4 and Figure 2 on DCASE 2018 task 4 (`ROOT` in the released layout) for one run:
    tuned on test, scored on test and eval; the run's labels mapped onto the DCASE classes by
    `mapping` (written to `out_dir/mapping.json`). Returns (the blocks, provenance entries)."""
    from ..audio import expand_paths
    from ..data import dcase2018
    from ..infer import Tagger
    from ..labels import class_mapping

    groups = class_mapping(mapping)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_dir / "mapping.json", "w", encoding="utf-8") as f:
        json.dump({cls: list(names) for cls, names in groups.items()}, f, indent=2)
    tagger = Tagger.from_run(run, checkpoint, device=device, weights=weights)
    splits = {name: Split(dcase2018.paths(root, name)[0], dcase2018.events(root, name)) for name in ("test", "eval")}
    figures = FigureChoice(clips=figure_clips, labels=() if figure_clips else paper.FIGURE_LABELS)
    blocks = segmentation(tagger, splits, tune_split="test", out_dir=out_dir / "sed", classes=groups, figures=figures,
                          shown_split="test",
                          title=f"{Path(run).name}, {checkpoint} checkpoint, {data_name}, mapping {mapping}")
    return blocks, {"dcase_root": str(root), "sed_run": str(run), "mapping": mapping, "mapping_file": "mapping.json",
                    "n_clips": {name: len(expand_paths([split.audio])) for name, split in splits.items()}}


def segmentation(tagger, splits: dict[str, Split], tune_split: str, out_dir: str | os.PathLike,
                 classes: str | dict = "all", figures: FigureChoice = FigureChoice(), shown_split: str = "",
                 title: str = "") -> list[Block]:
    """Tables 3 and 4 and Figure 2: thresholds and kernels are tuned on `tune_split` and every split
    is scored. Writes the tuning JSONs, each split's events (`events_SPLIT_SETTING.tsv`), the PSDS
    inputs and `figure2_N.png` to `out_dir`. Table 4 and Figure 2 are on `shown_split` (default the
    last split)."""
    from ..sed import DEFAULT_KERNELS, TuneGrid, tune_on

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    analyses = {name: {file: result for _, file, result in tagger.analyze_files([split.audio], classes=classes,
                                                                                 progress=True)
                       if not isinstance(result, Exception)} for name, split in splits.items()}
    labels = next(iter(analyses[tune_split].values())).labels
    tunings = {}
    for kernels, file_name in (((1,), "tuned_thresholds.json"), (DEFAULT_KERNELS, "tuned_median_thresholds.json")):
        tunings[kernels] = tune_on(analyses[tune_split], splits[tune_split].events, tagger.frame_hop,
                                   TuneGrid(kernels=kernels), progress=True)
        tunings[kernels].save(out_dir / file_name)
    swept, median_swept = tunings.values()
    scores, segments = {}, {}
    for name, split in splits.items():
        scores[name], segments[name] = _score_split(analyses[name], split.events, labels, swept, median_swept,
                                                    out_dir, name)
    psds = _psds_scores(analyses, splits, median_swept, labels, out_dir)
    in_sample = " (tuned in-sample, like the paper's test column)"
    rows = [(f"{setting} — {name} split{in_sample if name == tune_split else ''}", scores[name][setting])
            for name in splits for setting, *_ in SED_SETTINGS if name != tune_split or setting != "0.5 thresholds"]
    shown = shown_split or list(splits)[-1]
    pictures = _figures(tagger, analyses[shown], splits[shown], median_swept, out_dir, figures)
    sizes = ", ".join(f"{name} {len(a)} clips" for name, a in analyses.items())
    best = [(paper.BEST_SETTING, scores[shown][paper.BEST_SETTING]), ("0.5 thresholds", scores[shown]["0.5 thresholds"])]
    return [
        Heading(f"Table 3 style: segmentation, macro event F1 ({title})"),
        Paragraph(f"Frame hop {tagger.frame_hop} s; thresholds/kernels tuned on the {tune_split} split; {sizes}."),
        table3(rows),
        Paragraph(f"Segment-based F1 (1 s segments, sed_eval's rule), {paper.BEST_SETTING}: " + ", ".join(
            f"{name} split macro {100 * s.macro_f1:.2f} % / micro {100 * s.micro_f1:.2f} %"
            for name, s in segments.items()) + "."),
        Paragraph(f"PSDS1 / PSDS2 (DCASE 2021 settings; {len(PSDS_THRESHOLDS)} thresholds, the tuned median kernels): "
                  + ", ".join(f"{name} split {v[0]:.3f} / {v[1]:.3f}" for name, v in psds.items()) + "."),
        Heading(f"Table 4 style: per-class event F1 on the {shown} split (200 ms collar)"),
        table4(best),
        Heading(f"Figure 2 style: activations on the {shown} split"),
        *pictures,
    ]


def _score_split(analyses: dict, reference: list[Event], labels, swept, median_swept, out_dir: Path, name: str
                 ) -> tuple[dict[str, EventScores], EventScores]:
    """Each Table-3 setting's event scores on one split (its events written at 0.2 s collars), and the
    segment-based scores of the best setting."""
    from ..infer import events_from_analysis

    scores, segments = {}, None
    for setting, tuned, filtered, collar in SED_SETTINGS:
        thresholds = (median_swept if filtered else swept) if tuned else 0.5
        events = [e for file, result in analyses.items()
                  for e in events_from_analysis(result, file, thresholds, median_swept if filtered else 1)]
        scores[setting] = event_f1(reference, events, t_collar=collar, labels=labels)
        if setting == paper.BEST_SETTING:
            segments = segment_f1(reference, events, 1.0, labels)
        if collar == 0.2:
            write_events_tsv(out_dir / f"events_{name}_{setting.split()[0].replace('.', '')}.tsv", events)
    return scores, segments


def _psds_scores(analyses: dict, splits: dict[str, Split], tuning, labels, out_dir: Path
                 ) -> dict[str, tuple[float, float]]:
    """(PSDS1, PSDS2) of each split, over `PSDS_THRESHOLDS` with the tuning's median kernels. The
    inputs are written as `psds_eval` reads them: `out_dir/psds_SPLIT/` holds `ground_truth.tsv`,
    `metadata.tsv` (filename, duration) and one `detections_THRESHOLD.tsv` per operating point."""
    from ..infer import events_from_analysis
    from ..metrics.psds import PSDS1, PSDS2, psds

    scores = {}
    for name, files in analyses.items():
        folder = out_dir / f"psds_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        durations = {file: result.duration for file, result in files.items()}
        events = [e for e in splits[name].events if e.filename in durations]
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


def _figures(tagger, analyses: dict, split: Split, tuning, out_dir: Path, choice: FigureChoice) -> list[Figure]:
    events_of = {name: [e for e in split.events if e.filename == name] for name in analyses}
    missing = [clip for clip in choice.clips if clip not in analyses]
    if missing:
        raise InputError(f"--figure-clips: {missing[0]!r} is not a readable file of {split.audio}")
    chosen = list(choice.clips) or [next((n for n in analyses if any(e.label == label for e in events_of[n])), None)
                                    for label in choice.labels]
    chosen = [n for n in chosen if n] or [n for n in analyses if len(events_of[n]) >= 2][:choice.n] or \
        [n for n in analyses if events_of[n]][:choice.n]
    pictures = []
    for i, name in enumerate(chosen, start=1):
        path = out_dir / f"figure2_{i}.png"
        caption = f"{name}: reference " + ", ".join(sorted({e.label for e in events_of[name]}))
        figure2(tagger, split.audio / name, path, analysis=analyses[name], reference=events_of[name],
                thresholds=tuning, title=caption)
        pictures.append(Figure(path, caption))
    return pictures
