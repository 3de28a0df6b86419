"""Strong labels in training: where each sound starts and ends, as frame targets on the model's own
output grid (`train --strong-labels FILE.tsv --strong-weight W`).

The TSV is a DCASE event file (`filename onset offset event_label`, file names relative to the
training data's audio folder; a clip's key is its file's stem, as everywhere). Clips named there get
a frame-level BCE on `framewise` beside the clip-level loss, weighted by `strong_weight`; clips not
named keep the clip loss only.

A frame's target is the share of it the class's events cover: 1 inside an event, the covered
fraction on a frame an onset or offset cuts (a 0.1 s event in a 0.32 s frame gives 0.31), 0
elsewhere; events of one class that overlap are merged first, and the part of an event past the
clip's end covers nothing. Mixup mixes these targets as it mixes the clip targets (a mixed clip
keeps frame supervision only when both its clips have it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .data.folder import DataSetError
from .events import read_events_lines
from .labels import LabelSet


@dataclass(frozen=True)
class StrongLabels:
    """The events of each strongly labelled clip: key → `[E, 3]` (onset s, offset s, class index),
    one class's overlapping events merged."""

    path: Path
    events: dict[str, np.ndarray]

    @classmethod
    def read(cls, path: str | os.PathLike, label_set: LabelSet, keys: Sequence[str] | None = None) -> "StrongLabels":
        """Read and check a strong-label TSV against the training labels and (map-style data) its
        clips: an unknown label or clip, or a malformed line, is one error naming file and line."""
        path = Path(path)
        index = {name: k for k, name in enumerate(label_set.names)}
        known = None if keys is None else set(keys)
        by_clip: dict[str, list[tuple[float, float, int]]] = {}
        for line, event in read_events_lines(path):
            if event.label not in index:
                raise DataSetError(f"{path}:{line}: unknown label {event.label!r} (not a label of the training data)")
            key = Path(event.filename).stem
            if known is not None and key not in known:
                raise DataSetError(f"{path}:{line}: {event.filename} is not a clip of the training data")
            by_clip.setdefault(key, []).append((event.onset, event.offset, index[event.label]))
        if not by_clip:
            raise DataSetError(f"{path}: holds no events")
        return cls(path, {key: _merged(events) for key, events in by_clip.items()})

    def batch(self, keys: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Events of a batch's clips as `[B, E, 4]` (onset, offset, class, weight; padding has weight
        0) and which clips are strongly labelled `[B]`."""
        found = [self.events.get(key) for key in keys]
        width = max([len(e) for e in found if e is not None] + [1])
        return torch.stack([padded(e, width) for e in found]), torch.tensor([e is not None for e in found])


def padded(events: np.ndarray | None, width: int) -> torch.Tensor:
    """A clip's `[E, 3]` events as `[width, 4]` rows (onset, offset, class, weight 1); the rows after
    its events (all rows for None) weigh 0."""
    rows = torch.zeros(width, 4)
    if events is not None and len(events):
        rows[:len(events), :3] = torch.from_numpy(np.asarray(events, dtype=np.float32))
        rows[:len(events), 3] = 1.0
    return rows


def _merged(events: list[tuple[float, float, int]]) -> np.ndarray:
    """The union of each class's events, as `[E, 3]` float32 rows."""
    rows = []
    for cls in sorted({c for _, _, c in events}):
        spans = sorted((on, off) for on, off, c in events if c == cls)
        start, end = spans[0]
        for on, off in spans[1:]:
            if on <= end:
                end = max(end, off)
            else:
                rows.append((start, end, cls))
                start, end = on, off
        rows.append((start, end, cls))
    return np.asarray(rows, dtype=np.float32).reshape(-1, 3)


def mix_events(events: torch.Tensor, strongly_labelled: torch.Tensor, lam: float, order: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The events of mixup's clips `lam · a + (1 − lam) · a[order]`: both clips' events, weighted by
    their share; a mixed clip is strongly labelled when both of its clips are."""
    mixed = torch.cat([events * torch.tensor([1, 1, 1, lam]), events[order] * torch.tensor([1, 1, 1, 1 - lam])], dim=1)
    return mixed, strongly_labelled & strongly_labelled[order]


def frame_targets(events: torch.Tensor, n_frames: int, hop: float, n_classes: int, duration: float) -> torch.Tensor:
    """`[B, n_frames, n_classes]` targets of frames `[t·hop, (t+1)·hop)` of clips of `duration`
    seconds from `[B, E, 4]` events: each event adds its weight times the share of the frame's audio
    (the part before `duration`) it covers."""
    starts = torch.arange(n_frames, dtype=torch.float32, device=events.device) * hop
    ends = torch.clamp(starts + hop, max=duration)
    onset, offset, cls, weight = (events[..., i:i + 1] for i in range(4))  # each [B, E, 1]
    covered = (torch.minimum(ends, offset) - torch.maximum(starts, onset)).clamp(min=0)  # [B, E, T] seconds
    covered = covered / (ends - starts).clamp(min=1e-9)
    onehot = torch.nn.functional.one_hot(cls[..., 0].long(), n_classes).float() * weight  # [B, E, K]
    return (covered.transpose(1, 2) @ onehot).clamp(max=1.0)
