"""Figures: a log-mel spectrogram with its events, and the paper's Figure 2 (a spectrogram above the
framewise activations of its top classes). Matplotlib's object API only: the caller's backend (e.g.
a notebook's) is left alone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..events import Event

if TYPE_CHECKING:
    from ..infer import Analysis, Tagger
    from ..sed import Tuning


def plot_logmel(logmel: np.ndarray, path: str | os.PathLike, hop_s: float = 0.01,
                events: Sequence[Event] = (), title: str = "") -> None:
    """Save a log-mel spectrogram `[frames, mels]` as a PNG, with events drawn as labelled bars."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    labels = sorted({e.label for e in events})
    fig = Figure(figsize=(10, 4 + 0.25 * len(labels)))
    ax, ax_events = fig.subplots(
        2, 1, sharex=True,
        gridspec_kw={"height_ratios": [3, max(len(labels), 1) * 0.25 + 0.3]})
    duration = logmel.shape[0] * hop_s
    ax.imshow(logmel.T, origin="lower", aspect="auto", cmap="magma", extent=(0, duration, 0, logmel.shape[1]))
    ax.set_ylabel("mel band")
    ax.set_title(title)
    colours = colormaps["tab10"]
    for event in events:
        row = labels.index(event.label)
        ax_events.barh(row, event.offset - event.onset, left=event.onset, color=colours(row % 10), height=0.8)
    ax_events.set_yticks(range(len(labels)), labels, fontsize=8)
    ax_events.set_ylim(-0.6, max(len(labels), 1) - 0.4)
    ax_events.set_xlabel("time (s)")
    ax_events.set_xlim(0, duration)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_activations(logmel: np.ndarray, hop_s: float, times: np.ndarray, scores: np.ndarray,
                     labels: Sequence[str], path: str | os.PathLike, top: int = 2,
                     reference: Sequence[Event] = (), thresholds: Sequence[float] | None = None,
                     title: str = "") -> list[str]:
    """Figure 2 of the paper: the log-mel spectrogram above the framewise activation curves of the
    `top` classes (highest peak activation); reference events of those classes are shaded and
    per-class thresholds drawn as dashed lines. Returns the classes drawn."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    order = np.argsort(-scores.max(axis=0), kind="stable")[:top]
    chosen = [labels[k] for k in order]
    duration = logmel.shape[0] * hop_s
    fig = Figure(figsize=(10, 5.5))
    ax, ax_act = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ax.imshow(logmel.T, origin="lower", aspect="auto", cmap="magma", extent=(0, duration, 0, logmel.shape[1]))
    ax.set_ylabel("mel band")
    ax.set_title(title)
    colours = colormaps["tab10"]
    frame_hop = times[1] - times[0] if len(times) > 1 else duration
    for i, k in enumerate(order):
        colour = colours(i)
        for event in reference:
            if event.label == labels[k]:
                ax_act.axvspan(event.onset, event.offset, color=colour, alpha=0.15, lw=0)
        ax_act.step(np.append(times, times[-1] + frame_hop), np.append(scores[:, k], scores[-1, k]),
                    where="post", color=colour, label=labels[k])
        if thresholds is not None:
            ax_act.axhline(thresholds[k], color=colour, ls="--", lw=0.8)
    ax_act.set_ylim(0, 1.02)
    ax_act.set_xlim(0, duration)
    ax_act.set_ylabel("activation")
    ax_act.set_xlabel("time (s)" + ("; shaded: reference events" if len(reference) else ""))
    ax_act.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return chosen


def figure2(tagger: Tagger, path: str | os.PathLike, output: str | os.PathLike, analysis: Analysis | None = None,
            reference: Sequence[Event] = (), thresholds: Tuning | None = None, top: int = 2, classes: str = "all",
            title: str | None = None) -> list[str]:
    """Figure 2 for one audio file: its log-mel spectrogram (the tagger's front end) above the
    activations of its `top` classes (`analysis`, or the tagger's analysis of the file mapped to
    `classes`), with the file's `reference` events shaded and a tuning's thresholds dashed.
    Returns the classes drawn."""
    from ..features import logmel_from_file

    path = Path(path)
    if analysis is None:
        [(_, _, analysis)] = tagger.analyze_files([path], classes=classes)
        if isinstance(analysis, Exception):
            raise analysis
    logmel = logmel_from_file(path, tagger.frontend).cpu().numpy()
    return plot_activations(logmel, tagger.frontend.config.hop_ms / 1000, analysis.times, analysis.framewise,
                            analysis.labels, output, top=top, reference=reference,
                            thresholds=None if thresholds is None else thresholds.for_labels(analysis.labels)[0],
                            title=path.name if title is None else title)
