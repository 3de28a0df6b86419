"""`audioscene report`: the paper's Table 2 regenerated from trained runs, with bootstrap confidence
intervals, the paper's numbers beside each row, and the provenance of every number.

    audioscene report --runs "B+att=runs/b_att" A=runs/a Yu=runs/yu --eval-data data/eval -o report/

writes `report/report.md`, `report/index.html` (one self-contained page), `report/table2.csv` and
`report/provenance.json`. Each run contributes its peak epoch, its Avg (checkpoint-averaged outputs)
and, when it kept one, its moving average of the weights (`evaluate.evaluate_run`); each row has
mAP, mean AUC and d′ with percentile-bootstrap 95 % intervals over clips (`metrics.bootstrap`), the
number of clips and classes scored, and, for a model the paper reports, the paper's row and the
difference. The peak epoch is chosen on the scored split itself, as in the paper, unless
`select_data` names another split.
"""

from __future__ import annotations

import csv
import hashlib
import html
import importlib.metadata
import json
import os
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ._io import atomic_open
from .checkpoints import Checkpoint, list_epochs
from .evaluate import evaluate_run
from .metrics import SCORES
from .metrics.bootstrap import confidence_intervals
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


def table2(runs: dict[str, str | os.PathLike], eval_data: str, labels_csv: str = "", select_data: str | None = None,
           device: str = "auto", n_resamples: int = 1000, seed: int = 0, progress: bool = True,
           ) -> tuple[list[Row], dict]:
    """The rows of Table 2 for each named run, and the provenance record."""
    rows, provenance = [], {
        "package": f"audioscene {importlib.metadata.version('audioscene')}", "git_commit": _git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "eval_data": str(eval_data),
        "selected_on": str(select_data or eval_data), "bootstrap": {"resamples": n_resamples, "seed": seed,
                                                                   "interval": "percentile, 95 %"}, "runs": {}}
    for name, run in runs.items():
        result = evaluate_run(run, eval_data, device=device, progress=progress, labels_csv=labels_csv,
                              select_data=select_data)
        last = Checkpoint.load(list_epochs(run)[-1])
        model = last.model_config["name"]
        keys = result["keys"] or []
        provenance["runs"][name] = {
            "run": str(run), "model": model, "model_config": last.model_config, "frontend": last.frontend_config,
            "train_config": last.train_config, "epochs": len(result["epochs"]), "precision": "float32",
            "device": device, "n_clips": result["n_clips"],
            "clip_list_sha256": hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest() if keys else None}
        scored = result["peak"]["n_classes_scored"]
        total = scored + result["peak"]["n_classes_skipped"]
        for variant, outputs in result["outputs"].items():
            summary = result[variant]
            epoch = {"peak": result["peak_epoch"], "ema": result["ema_epoch"]}.get(variant)
            rows.append(Row(name, variant, epoch, {key: summary[key] for key in SCORES},
                            confidence_intervals(result["targets"], outputs, n_resamples, seed=seed),
                            result["n_clips"], f"{scored}/{total}", _paper_row(model, variant)))
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


def write(rows: list[Row], provenance: dict, out_dir: str | os.PathLike) -> Path:
    """`report.md`, `index.html`, `table2.csv` and `provenance.json` in `out_dir` (each atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = [_cells(row) for row in rows]
    note = (f"Peak epoch chosen on {provenance['selected_on']}; intervals: {provenance['bootstrap']['interval']} "
            f"bootstrap over clips, {provenance['bootstrap']['resamples']} resamples. Paper rows: AudioSet eval set, "
            "527 classes.")
    with atomic_open(out_dir / "report.md", "w", encoding="utf-8") as f:
        f.write(f"# Table 2, reproduced\n\n{markdown_table(HEADER, table)}\n\n{note}\n\n"
                f"{provenance['package']}, commit {provenance['git_commit']}, {provenance['date']}; "
                "full provenance in provenance.json\n")
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
    with atomic_open(out_dir / "index.html", "w", encoding="utf-8") as f:
        f.write("<!doctype html><meta charset='utf-8'><title>audioscene report</title><style>body{font-family:"
                "sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
                "text-align:right}td:first-child{text-align:left}</style><h1>Table 2, reproduced</h1>"
                f"<table><tr>{head}</tr>{cells}</table><p>{html.escape(note)}</p>"
                f"<h2>Provenance</h2><pre>{html.escape(json.dumps(provenance, indent=2, default=str))}</pre>")
    return out_dir / "report.md"
