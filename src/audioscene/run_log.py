"""What a run writes beside its checkpoints after every epoch: `metrics.csv` (one column per score of
`metrics.SCORES`), TensorBoard scalars and the epoch's log line."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from ._io import atomic_open
from .metrics import SCORES

log = logging.getLogger("audioscene.train")


def metric_columns(weight_average: bool = False) -> tuple[str, ...]:
    """metrics.csv's columns: one per score of `metrics.SCORES`, and for a run with a weight average
    the raw weights' scores beside them (`raw_<score>`)."""
    return ("epoch", "train_loss", *SCORES, "train_clips_per_s", "seconds",
            *(f"raw_{key}" for key in SCORES if weight_average))


def record_epoch(run_dir: Path, history: list[dict], writer, epochs: int) -> None:
    """The last epoch's row in metrics.csv (rewritten atomically), TensorBoard and the log."""
    row, epoch = history[-1], history[-1]["epoch"]
    write_metrics_csv(run_dir, history)
    for key in row.keys() - {"epoch", "train_clips_per_s", "seconds"}:
        writer.add_scalar(f"epoch/{key}", row[key], epoch)
    writer.flush()
    log.info("epoch %d/%d: loss %.4f, eval %s%s (%.0f s, %.1f clips/s)", epoch, epochs, row["train_loss"],
             ", ".join(f"{score.display} {row[key]:.3f}" for key, score in SCORES.items()),
             " (weight average; raw weights mAP %.3f)" % row["raw_mAP"] if "raw_mAP" in row else "",
             row["seconds"], row["train_clips_per_s"])


def write_metrics_csv(run_dir: Path, history: list[dict]) -> None:
    columns = metric_columns(weight_average=f"raw_{next(iter(SCORES))}" in history[-1])
    with atomic_open(run_dir / "metrics.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: row.get(k, "") for k in columns} for row in history)
