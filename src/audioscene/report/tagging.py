"""Table 2 from trained runs: each run's peak epoch, its Avg and (when kept) its moving average of
the weights (`evaluate.evaluate_run`), every score with a percentile-bootstrap interval over clips
(`metrics.bootstrap`), beside the paper's row for the model; and the provenance of every number."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from .. import models
from ..checkpoints import Run
from ..data import DataSpec
from ..errors import ConfigError, check_number
from ..evaluate import evaluate_ensemble, evaluate_run
from ..metrics.bootstrap import MAX_RESAMPLES, MIN_RESAMPLES, confidence_intervals
from . import paper
from .tables import Table2Row


def takes_audio(run: Run) -> bool:
    """Whether a run's model takes audio."""
    return models.family_of(run.first.model_config).takes_audio


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown (not a git checkout)"
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"


def table2_rows(runs: dict[str, str | os.PathLike | Run], eval_data: DataSpec | str,
                select_data: DataSpec | str | None = None, device: str = "auto", n_resamples: int = 1000, seed: int = 0,
                progress: bool = True, embeddings_data: DataSpec | str | None = None) -> tuple[list[Table2Row], dict]:
    """The rows of Table 2 for each named run, and the provenance record. Runs of models that do not
    take audio are scored on `embeddings_data` (the same clips as AudioSet's released features), the
    others on `eval_data`; `select_data` picks the peak epochs of the latter."""
    check_number("n_resamples", n_resamples, integer=True, low=MIN_RESAMPLES, high=MAX_RESAMPLES)
    rows, provenance = [], {
        "package": f"audioscene {importlib.metadata.version('audioscene')}", "git_commit": _git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "eval_data": str(eval_data),
        "embeddings_data": embeddings_data, "selected_on": str(select_data or eval_data),
        "bootstrap": {"resamples": n_resamples, "seed": seed, "interval": "percentile, 95 %"}, "runs": {},
        "ensembles": {}}
    for name, run in runs.items():
        run = Run.open(run)
        audio = takes_audio(run)
        if not audio and embeddings_data is None:
            raise ConfigError(f"{run}: a model on AudioSet's released embeddings; give --embeddings-data "
                              "embeddings:DIR to score it")
        result = evaluate_run(run, eval_data if audio else embeddings_data, device=device, progress=progress,
                              select_data=select_data if audio else None)
        model = result.run_config["model_config"]["name"]
        provenance["runs"][name] = {
            "run": str(run), "model": model, **result.run_config, "epochs": len(result.epochs),
            "precision": "float32", "device": device, "n_clips": result.n_clips,
            "clip_list_sha256": hashlib.sha256("\n".join(sorted(result.keys)).encode()).hexdigest()}
        for variant, scored in result.variants.items():
            rows.append(Table2Row(name, variant, scored.epoch, scored.summary, result.n_clips,
                                  confidence_intervals(result.targets, scored.outputs, n_resamples, seed=seed),
                                  paper.table2_row(model, variant, (run.first.source or {}).get("catalogue")),
                                  result.labels.names))
    return rows, provenance


def ensemble_row(name: str, members: Sequence[str | os.PathLike | Run], eval_data: DataSpec | str,
                 checkpoint: str = "best", device: str = "auto", n_resamples: int = 1000, seed: int = 0
                 ) -> tuple[Table2Row, dict]:
    """Table 2's row for an ensemble (`evaluate.evaluate_ensemble`: the mean of its members'
    outputs, each its `checkpoint`), with bootstrap intervals, and its provenance entry."""
    result = evaluate_ensemble(members, eval_data, checkpoint, device=device, progress=False)
    scored = result.variants["ensemble"]
    row = Table2Row(name, "ensemble", None, scored.summary, result.n_clips,
                    confidence_intervals(result.targets, scored.outputs, n_resamples, seed=seed), None,
                    result.labels.names)
    return row, {"members": [str(member) for member in members], "checkpoint": checkpoint, "n_clips": result.n_clips,
                 "members_mAP": {key: value.summary["mAP"] for key, value in result.variants.items()
                                 if key != "ensemble"}}
