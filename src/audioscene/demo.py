"""`audioscene demo`: the whole pipeline on the embedded synthetic data set, offline on a CPU."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .data import synthetic
from .features import logmel_from_file
from .report import event_summary, plot_logmel
from .sed import read_events_tsv

log = logging.getLogger(__name__)


def run_demo(out_dir: str | os.PathLike, n_clips: int = 200, seed: int = 0) -> str:
    """Generate a synthetic set under `out_dir/data`, draw its first clip, return a summary."""
    out_dir = Path(out_dir)
    data_dir = synthetic.generate(out_dir / "data" / "demo", n_clips=n_clips, seed=seed)
    events = read_events_tsv(data_dir / "strong.tsv")
    first = sorted((data_dir / "audio").glob("*.flac"))[0]
    figure = out_dir / "spectrogram.png"
    plot_logmel(logmel_from_file(first).numpy(), figure, events=[e for e in events if e.filename == first.name],
                title=f"{first.name}: log-mel spectrogram and its strong labels")
    return f"{event_summary(events, n_clips)}\n\nspectrogram of {first.name}: {figure}"
