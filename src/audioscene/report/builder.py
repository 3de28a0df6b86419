"""`audioscene report`: the inputs checked before any work, the report built in a staging folder and
swapped in whole, and written as `report.md`, `index.html`, `table2.csv`, `per_class_RUN.csv` and
`provenance.json`."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .._io import atomic_open, make_folder, staged_folder
from ..checkpoints import Run
from ..data import DataSpec
from ..errors import ConfigError, InputError
from ..metrics import SCORES
from .document import Block, Heading, Paragraph, Table, to_html, to_markdown
from .segmentation import FigureChoice, dcase_segmentation, folder_segmentation
from .tables import Table2Row, table2, write_per_class_csv
from .tagging import ensemble_row, table2_rows, takes_audio


@dataclass(frozen=True)
class ReportRequest:
    """What `audioscene report` was asked for (its flags)."""

    runs: dict[str, Path | Run]
    eval_data: DataSpec
    out: Path
    select_data: DataSpec | None = None
    embeddings_data: DataSpec | None = None
    n_resamples: int = 1000
    seed: int = 0
    device: str = "auto"
    dcase: Path | None = None
    sed_splits: tuple[Path, Path] | None = None  # (tune, eval) folders with strong.tsv, instead of `dcase`
    sed_runs: tuple[str, ...] = ()  # names of `runs` (default the first)
    checkpoint: str = "best"
    weights: str = "auto"
    mapping: str = "paper"
    figure_clips: tuple[str, ...] = ()
    ensembles: dict[str, tuple[Path, ...]] = field(default_factory=dict)  # name → its runs: a row of their mean

    def sed_run_names(self) -> list[str]:
        """The runs whose frame outputs Tables 3–4 show, side by side."""
        unknown = [name for name in self.sed_runs if name not in self.runs]
        if unknown:
            raise InputError(f"--sed-run {unknown[0]!r} is none of the --runs names ({', '.join(self.runs)})")
        return list(dict.fromkeys(self.sed_runs or tuple(self.runs)[:1]))


def check_inputs(request: ReportRequest) -> dict[str, Run]:
    """Open the runs (each once, for the whole report) and name a missing run, data folder, DCASE
    split, mapping file or figure clip, or a run that cannot do what it is asked (a model that does
    not take audio for Tables 3–4), before any work starts (one error)."""
    from ..data import dcase2018
    from ..data.folder import DataSetError
    from ..labels import class_mapping

    runs = {name: Run.open(run) for name, run in request.runs.items()}
    for members in request.ensembles.values():
        for member in members:
            Run.open(member)
    for run in runs.values():
        if request.embeddings_data is None and not takes_audio(run):
            raise ConfigError(f"{run}: a model on AudioSet's released embeddings; give --embeddings-data "
                              "embeddings:DIR to score it")
    for data in (request.eval_data, request.select_data, request.embeddings_data):
        if data is not None and not Path(data.path).exists():
            raise DataSetError(f"{data}: no such data folder")
    sed_runs = {name: runs[name] for name in request.sed_run_names()}
    if request.dcase is not None and request.sed_splits is not None:
        raise ConfigError("Tables 3-4 come from --dcase or from --sed-splits, not both")
    segmentation = request.dcase is not None or request.sed_splits is not None  # Tables 3-4 asked for
    if segmentation:
        for run in sed_runs.values():
            if not takes_audio(run):
                raise ConfigError(f"{run}: a model on AudioSet's released embeddings has no audio front end; "
                                  "Tables 3-4 need a model that takes audio (choose others with --sed-run)")
    for folder in request.sed_splits or ():
        for part in ("audio", "strong.tsv"):
            if not (Path(folder) / part).exists():
                raise DataSetError(f"--sed-splits: {folder} has no {part} (a split with strong labels: audio/ and "
                                   "strong.tsv)")
    if request.dcase is not None:
        for split in ("test", "eval"):
            dcase2018.paths(request.dcase, split)
        class_mapping(request.mapping)
    if segmentation:  # Figure 2 shows DCASE's test split, or the eval split
        audio_dir = Path(dcase2018.paths(request.dcase, "test")[0] if request.dcase else request.sed_splits[1] / "audio")
        missing = [clip for clip in request.figure_clips if not (audio_dir / clip).is_file()]
        if missing:
            raise DataSetError(f"--figure-clips: {missing[0]} is not a file of {audio_dir}")
    return runs


def is_report_folder(folder: Path) -> bool:
    """Whether `folder` holds a report `write` made (so a new one may replace it)."""
    return (folder / "report.md").is_file() and (folder / "provenance.json").is_file()


def build(request: ReportRequest, progress: bool = True) -> Path:
    """Check the inputs, then build the whole report in a staging folder and swap it in for
    `request.out` (no figure or table of an earlier report lingers, and a report that fails leaves
    the earlier one as it was). Returns the path of report.md."""
    runs = check_inputs(request)
    sed_runs = {name: runs[name] for name in request.sed_run_names()}
    with staged_folder(request.out, is_report_folder, "report folder") as staging:
        rows, provenance = table2_rows(runs, request.eval_data, select_data=request.select_data,
                                       device=request.device, n_resamples=request.n_resamples, seed=request.seed,
                                       progress=progress, embeddings_data=request.embeddings_data)
        for name, members in request.ensembles.items():
            row, provenance["ensembles"][name] = ensemble_row(name, members, request.eval_data, request.checkpoint,
                                                              request.device, request.n_resamples, request.seed)
            rows.append(row)
        sections: list[Block] = []
        if request.dcase:
            sections, provenance["segmentation"] = dcase_segmentation(
                sed_runs, request.dcase, staging, mapping=request.mapping, checkpoint=request.checkpoint,
                weights=request.weights, device=request.device, figure_clips=request.figure_clips)
        elif request.sed_splits:
            sections, provenance["segmentation"] = folder_segmentation(
                sed_runs, *request.sed_splits, staging / "sed", checkpoint=request.checkpoint,
                weights=request.weights, device=request.device, figures=FigureChoice(clips=request.figure_clips))
        write(rows, provenance, staging, sections)
    return request.out / "report.md"


def _provenance_table(provenance: dict) -> Table:
    """The provenance record as KEY / VALUE rows (nested keys joined with dots)."""
    rows = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            rows.append((prefix, value if isinstance(value, str) else json.dumps(value, default=str)))

    walk("", provenance)
    return Table(("key", "value"), rows, align="ll")


def write(rows: list[Table2Row], provenance: dict, out_dir: str | os.PathLike, sections: list[Block] = (),
          title: str = "Table 2, reproduced") -> Path:
    """`report.md`, `index.html`, `table2.csv`, `per_class_RUN.csv` (AP and AUC per class of each
    row) and `provenance.json` in `out_dir` (each atomically); `sections`: more blocks (Tables 3–4,
    Figure 2) after Table 2."""
    out_dir = make_folder(out_dir)
    for run in dict.fromkeys(row.run for row in rows):
        mine = [row for row in rows if row.run == run]
        write_per_class_csv(out_dir / f"per_class_{run}.csv", mine[0].labels, [(row.variant, row.summary) for row in mine])
    note = Paragraph(f"Peak epoch chosen on {provenance['selected_on']}; intervals: "
                     f"{provenance['bootstrap']['interval']} bootstrap over clips, "
                     f"{provenance['bootstrap']['resamples']} resamples. Paper rows: AudioSet eval set, 527 classes. "
                     f"{provenance['package']}, commit {provenance['git_commit']}, {provenance['date']}; full "
                     "provenance in provenance.json.")
    blocks = [Heading(title, 1), table2(rows), note, *sections]
    with atomic_open(out_dir / "report.md", "w", encoding="utf-8") as f:
        f.write(to_markdown(blocks, out_dir))
    with atomic_open(out_dir / "index.html", "w", encoding="utf-8") as f:
        f.write(to_html([*blocks, Heading("Provenance"), _provenance_table(provenance)], title))
    with atomic_open(out_dir / "table2.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("run", "variant", "epoch", *(f"{k}{s}" for k in SCORES for s in ("", "_low", "_high")),
                         "n_clips", "classes_scored", "paper_row"))
        for row in rows:
            writer.writerow((row.run, row.variant, row.epoch or "",
                             *(f"{v:.6f}" for k in SCORES for v in (row.summary[k], *row.intervals[k])),
                             row.n_clips, row.summary.classes, row.paper or ""))
    with atomic_open(out_dir / "provenance.json", "w", encoding="utf-8") as f:
        json.dump(provenance, f, indent=2, default=str)
        f.write("\n")
    return out_dir / "report.md"
