"""Tables 3 and 4 and Figure 2 (paper §5) from taggers' frame outputs on splits with strong labels,
for one run or several side by side (a weak-only run beside one trained with strong labels or a
mean teacher): thresholds (and median kernels) tuned on one split, events scored on every split,
with event F1 at two collars, segment-based F1 and PSDS beside. `dcase_segmentation` runs it on
DCASE 2018 task 4 (tuned on test; scored on test, as the paper did, and on eval, the honest
number), with the runs' labels mapped onto the DCASE classes by a named mapping
(`labels.class_mapping`); `folder_segmentation` on two folders with a `strong.tsv` each."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from .._io import atomic_open
from ..errors import InputError
from ..events import Event, write_events_tsv
from ..metrics import EventScores, event_f1
from ..metrics.detection import DETECTION_SCORES, PSDS_THRESHOLDS, Detections
from . import paper
from .document import Block, Figure, Heading, Paragraph, Table
from .figures import figure2
from .tables import score_cell, table3, table4

if TYPE_CHECKING:
    from ..checkpoints import Run
    from ..sed import Tuning

# Table 3's settings: (name, tuned thresholds?, tuned kernels?, collar s)
SED_SETTINGS = (("0.5 thresholds", False, False, 0.2), ("swept thresholds", True, False, 0.2),
                (paper.BEST_SETTING, True, True, 0.2), (f"{paper.BEST_SETTING}, 0.4 s collar", True, True, 0.4))


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


@dataclass(frozen=True)
class Detection:
    """One run's detection on every split: its frame analyses (split → file → `infer.Analysis`),
    the tuning of the best setting, Table 3's event scores and each setting's events (split →
    setting → `EventScores` / `Detections`), and every `DETECTION_SCORES` value of the best
    setting (split → score name → value)."""

    frame_hop: float
    analyses: dict[str, dict]
    tuning: Tuning
    scores: dict[str, dict[str, EventScores]]
    settings: dict[str, dict[str, Detections]]
    summary: dict[str, dict[str, float]]


def dcase_segmentation(runs: Mapping[str, str | os.PathLike | Run], root: str | os.PathLike, out_dir: str | os.PathLike,
                       mapping: str = "paper", checkpoint: str = "best", device: str = "auto", weights: str = "auto",
                       figure_clips: tuple[str, ...] = (), data_name: str = "DCASE 2018 task 4"
                       ) -> tuple[list[Block], dict]:
    """Tables 3–4 and Figure 2 on DCASE 2018 task 4 (`ROOT` in the released layout) for the named
    runs, side by side: tuned on test, scored on test and eval; the runs' labels mapped onto the
    DCASE classes by `mapping` (written to `out_dir/mapping.json`). Returns (the blocks, provenance
    entries)."""
    from ..data import dcase2018
    from ..labels import class_mapping

    groups = class_mapping(mapping)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_dir / "mapping.json", "w", encoding="utf-8") as f:
        json.dump({cls: list(names) for cls, names in groups.items()}, f, indent=2)
    splits = {name: Split(dcase2018.paths(root, name)[0], dcase2018.events(root, name)) for name in ("test", "eval")}
    figures = FigureChoice(clips=figure_clips, labels=() if figure_clips else paper.FIGURE_LABELS)
    blocks = segmentation(_taggers(runs, checkpoint, device, weights), splits, tune_split="test",
                          out_dir=out_dir / "sed", classes=groups, figures=figures, shown_split="test",
                          title=f"{checkpoint} checkpoint, {data_name}, mapping {mapping}")
    return blocks, {"dcase_root": str(root), "sed_runs": {name: str(run) for name, run in runs.items()},
                    "mapping": mapping, "mapping_file": "mapping.json", **_sizes(splits)}


def folder_segmentation(runs: Mapping[str, str | os.PathLike | Run], tune: str | os.PathLike, scored: str | os.PathLike,
                        out_dir: str | os.PathLike, checkpoint: str = "best", device: str = "auto",
                        weights: str = "auto", figures: FigureChoice = FigureChoice()) -> tuple[list[Block], dict]:
    """Tables 3–4 (and Figure 2 unless `figures.n` is 0) for the named runs on two data folders
    with strong labels (`audio/` and `strong.tsv`, as `audioscene synth` writes them): thresholds
    and kernels tuned on `tune`, events scored on both, the runs' own labels. Returns (the blocks,
    provenance entries)."""
    from ..events import read_events_tsv

    splits = {}
    for name, folder in (("tune", Path(tune)), ("eval", Path(scored))):
        if not (folder / "strong.tsv").is_file():
            raise InputError(f"{folder}: no strong.tsv (the split's events: filename onset offset event_label)")
        splits[name] = Split(folder / "audio", read_events_tsv(folder / "strong.tsv"))
    blocks = segmentation(_taggers(runs, checkpoint, device, weights), splits, tune_split="tune", out_dir=out_dir,
                          figures=figures, title=f"{checkpoint} checkpoint, tuned on {tune}, scored on {scored}")
    return blocks, {"sed_tune": str(tune), "sed_eval": str(scored),
                    "sed_runs": {name: str(run) for name, run in runs.items()}, **_sizes(splits)}


def _taggers(runs: Mapping[str, str | os.PathLike | Run], checkpoint: str, device: str, weights: str) -> dict:
    from ..infer import Tagger

    return {name: Tagger.from_run(run, checkpoint, device=device, weights=weights) for name, run in runs.items()}


def _sizes(splits: dict[str, Split]) -> dict:
    from ..audio import expand_paths

    return {"n_clips": {name: len(expand_paths([split.audio])) for name, split in splits.items()}}


def detect_on_splits(tagger, splits: dict[str, Split], tune_split: str, out_dir: Path, classes: str | dict = "all"
                     ) -> Detection:
    """A tagger's frame outputs on every split, thresholds (and median kernels) tuned on
    `tune_split`, every split scored. Writes the tuning JSONs, each split's events
    (`events_SPLIT_SETTING.tsv`) and the PSDS inputs to `out_dir`."""
    from ..sed import DEFAULT_KERNELS, TuneGrid, tune_on

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
    scores, settings, summary = {}, {}, {}
    for name, split in splits.items():
        settings[name] = _settings_events(analyses[name], split.events, labels, swept, median_swept, out_dir, name)
        scores[name] = {setting: event_f1(split.events, found.events, t_collar=collar, labels=labels)
                        for (setting, *_, collar), found in zip(SED_SETTINGS, settings[name].values())}
        best = settings[name][paper.BEST_SETTING]
        _write_psds_inputs(best, out_dir / f"psds_{name}")
        summary[name] = {score.name: score.of(best) for score in DETECTION_SCORES.values()}
    return Detection(tagger.frame_hop, analyses, median_swept, scores, settings, summary)


def segmentation(taggers: Mapping[str, object], splits: dict[str, Split], tune_split: str,
                 out_dir: str | os.PathLike, classes: str | dict = "all", figures: FigureChoice = FigureChoice(),
                 shown_split: str = "", title: str = "") -> list[Block]:
    """Tables 3 and 4 and Figure 2 for the named taggers side by side (`detect_on_splits` for each, its files
    in `out_dir`, or in `out_dir/NAME` when there are several): Table 3 with each run's rows, a
    summary of event F1 at both collars, segment F1 and PSDS per run and split, Table 4 with one
    column per run, and Figure 2 of the first run (none when `figures.n` is 0). Table 4 and Figure 2
    are on `shown_split` (default the last split)."""
    out_dir = Path(out_dir)
    several = len(taggers) > 1
    runs = {name: detect_on_splits(tagger, splits, tune_split, out_dir / name if several else out_dir, classes)
            for name, tagger in taggers.items()}
    in_sample = " (tuned in-sample, like the paper's test column)"
    rows = [(f"{name}: " * several + f"{setting} — {split} split{in_sample if split == tune_split else ''}",
             run.scores[split][setting], run.settings[split][setting])
            for name, run in runs.items() for split in splits for setting, *_ in SED_SETTINGS
            if split != tune_split or setting != "0.5 thresholds"]
    shown = shown_split or list(splits)[-1]
    first_name, first = next(iter(runs.items()))
    sizes = ", ".join(f"{name} {len(a)} clips" for name, a in first.analyses.items())
    hops = ", ".join(f"{name} {run.frame_hop:g} s" for name, run in runs.items()) if several else f"{first.frame_hop:g} s"
    best = [(f"{name} " * several + paper.BEST_SETTING, run.scores[shown][paper.BEST_SETTING],
             run.settings[shown][paper.BEST_SETTING]) for name, run in runs.items()]
    if not several:
        best.append(("0.5 thresholds", first.scores[shown]["0.5 thresholds"], first.settings[shown]["0.5 thresholds"]))
    blocks = [
        Heading(f"Table 3 style: segmentation, macro event F1 ({', '.join(runs)}; {title})" if several else
                f"Table 3 style: segmentation, macro event F1 ({first_name}, {title})"),
        Paragraph(f"Frame hop {hops}; thresholds/kernels tuned on the {tune_split} split; {sizes}."),
        table3(rows),
        Heading(f"Detection summary: {paper.BEST_SETTING}"),
        Paragraph(f"Event F1 at 0.2 s and 0.4 s collars; segment-based F1 over 1 s segments (sed_eval's rule); "
                  f"PSDS1 / PSDS2 in the DCASE 2021 settings over {len(PSDS_THRESHOLDS)} thresholds, with the tuned "
                  "median kernels (the scores of `metrics.DETECTION_SCORES`)."),
        detection_summary(runs),
        Heading(f"Table 4 style: per-class event F1 on the {shown} split (200 ms collar)"),
        table4(best),
    ]
    if figures.n or figures.clips or figures.labels:
        blocks += [Heading(f"Figure 2 style: activations on the {shown} split ({first_name})"),
                   *_figures(taggers[first_name], first.analyses[shown], splits[shown], first.tuning,
                             out_dir / first_name if several else out_dir, figures)]
    return blocks


def detection_summary(runs: Mapping[str, Detection]) -> Table:
    """Per run and split: every score of `metrics.DETECTION_SCORES` of the best setting."""
    rows = [(name, split, *(score_cell(score, run.summary[split][score.name]) for score in DETECTION_SCORES.values()))
            for name, run in runs.items() for split in run.summary]
    return Table(("run", "split", *(score.header for score in DETECTION_SCORES.values())), rows,
                 align="ll" + "r" * len(DETECTION_SCORES))


def _settings_events(analyses: dict, reference: list[Event], labels, swept, median_swept, out_dir: Path, name: str
                     ) -> dict[str, Detections]:
    """Each Table-3 setting's events on one split (written for the 0.2 s collar settings); the
    events at a sweep of one threshold for every class (PSDS) with the tuned median kernels."""
    from ..infer import events_from_analysis

    def events(thresholds, kernels) -> list[Event]:
        return [e for file, result in analyses.items() for e in events_from_analysis(result, file, thresholds, kernels)]

    durations = {file: result.duration for file, result in analyses.items()}
    found = {}
    for setting, tuned, filtered, collar in SED_SETTINGS:
        thresholds = (median_swept if filtered else swept) if tuned else 0.5
        found[setting] = Detections(reference, events(thresholds, median_swept if filtered else 1), labels, durations,
                                    sweep=lambda threshold: events(threshold, median_swept))
        if collar == 0.2:
            tag = setting.split()[0].replace(".", "")
            write_events_tsv(out_dir / f"events_{name}_{tag}.tsv", found[setting].events)
    return found


def _write_psds_inputs(found: Detections, folder: Path) -> None:
    """The PSDS inputs as `psds_eval` reads them: `ground_truth.tsv`, `metadata.tsv` (filename,
    duration) and one `detections_THRESHOLD.tsv` per operating point."""
    folder.mkdir(parents=True, exist_ok=True)
    write_events_tsv(folder / "ground_truth.tsv", [e for e in found.reference if e.filename in found.durations])
    with atomic_open(folder / "metadata.tsv", "w", encoding="utf-8") as f:
        f.write("filename\tduration\n"
                + "".join(f"{file}\t{seconds:.3f}\n" for file, seconds in found.durations.items()))
    for threshold, points in zip(PSDS_THRESHOLDS, found.operating_points):
        write_events_tsv(folder / f"detections_{threshold:.2f}.tsv", points)


def _figures(tagger, analyses: dict, split: Split, tuning, out_dir: Path, choice: FigureChoice) -> list[Figure]:
    events_of = {name: [e for e in split.events if e.filename == name] for name in analyses}
    missing = [clip for clip in choice.clips if clip not in analyses]
    if missing:
        raise InputError(f"--figure-clips: {missing[0]!r} is not a readable file of {split.audio}")
    chosen = list(choice.clips)
    for label in () if chosen else choice.labels:  # a clip per label, none shown twice
        clip = next((n for n in analyses if n not in chosen and any(e.label == label for e in events_of[n])), None)
        chosen += [clip] if clip else []
    chosen = chosen or [n for n in analyses if len(events_of[n]) >= 2][:choice.n] or \
        [n for n in analyses if events_of[n]][:choice.n]
    pictures = []
    for i, name in enumerate(chosen, start=1):
        path = out_dir / f"figure2_{i}.png"
        caption = f"{name}: reference " + ", ".join(sorted({e.label for e in events_of[name]}))
        figure2(tagger, split.audio / name, path, analysis=analyses[name], reference=events_of[name],
                thresholds=tuning, title=caption)
        pictures.append(Figure(path, caption))
    return pictures
