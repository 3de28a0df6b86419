"""Clip data sets: audio (a file path or an array) with multi-hot weak labels.

The training loop only sees `ClipDataset`; the synthetic set, own folders and, later, AudioSet
and DCASE all become one by listing `(source, labels)` pairs.

A folder data set is `DIR/weak.csv` (`filename,labels`: labels comma-separated inside quotes;
empty for a clip with no label) with the audio in `DIR/audio/` (or `DIR/` itself).

Own data (`from_labels_csv`) is any folder of audio files plus a CSV `filename,labels` whose labels
are `;`-separated AudioSet display names (which may contain commas) or mids, or names of your own.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..audio import SAMPLE_RATE, AudioError, load
from ..labels import LabelSet, UnknownLabelError, audioset


class DataSetError(ValueError):
    """A data set folder or label file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Clip:
    source: Path | np.ndarray  # audio file, or float32 mono samples at SAMPLE_RATE
    labels: tuple[str, ...]


def fix_length(wave: np.ndarray, n_samples: int) -> np.ndarray:
    """Crop or zero-pad a mono signal to exactly `n_samples`."""
    if len(wave) >= n_samples:
        return wave[:n_samples]
    return np.pad(wave, (0, n_samples - len(wave)))


class ClipDataset(Dataset):
    """`(waveform [clip_samples] float32, target [n_classes] float32)` items.

    Every clip is cropped or zero-padded to `clip_seconds` so that clips batch together.
    """

    def __init__(self, clips: Sequence[Clip], label_set: LabelSet, clip_seconds: float = 10.0):
        self.clips = list(clips)
        self.label_set = label_set
        self.clip_samples = int(round(clip_seconds * SAMPLE_RATE))
        self.targets = np.stack([label_set.multi_hot(c.labels) for c in self.clips]) if self.clips \
            else np.zeros((0, len(label_set)), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        clip = self.clips[index]
        wave = clip.source if isinstance(clip.source, np.ndarray) else load(clip.source)
        return torch.from_numpy(fix_length(np.asarray(wave, dtype=np.float32), self.clip_samples)), \
            torch.from_numpy(self.targets[index])

    @classmethod
    def from_folder(cls, root: str | os.PathLike, label_set: LabelSet | None = None,
                    clip_seconds: float = 10.0) -> "ClipDataset":
        """Read `root/weak.csv`; without `label_set`, the labels are the sorted names in the CSV."""
        root = Path(root)
        csv_path = root / "weak.csv"
        if not root.is_dir():
            raise DataSetError(f"{root}: no such data folder")
        if not csv_path.is_file():
            raise DataSetError(f"{csv_path}: missing (a data folder needs weak.csv with columns filename,labels)")
        audio_dir = root / "audio" if (root / "audio").is_dir() else root
        return cls._from_rows(read_weak_csv(csv_path), audio_dir, csv_path, label_set, clip_seconds)

    @classmethod
    def from_labels_csv(cls, audio_dir: str | os.PathLike, csv_path: str | os.PathLike,
                        label_set: LabelSet | None = None, clip_seconds: float = 10.0) -> "ClipDataset":
        """Own data: audio files under `audio_dir` listed in `csv_path` (`filename,labels`, labels
        `;`-separated display names or AudioSet mids such as `/m/0bt9lr`, which become display names)."""
        audio_dir, csv_path = Path(audio_dir), Path(csv_path)
        if not audio_dir.is_dir():
            raise DataSetError(f"{audio_dir}: no such audio folder")
        if not csv_path.is_file():
            raise DataSetError(f"{csv_path}: no such label file (a CSV with columns filename,labels)")
        names = audioset()
        rows = []
        for filename, labels, line in read_weak_csv(csv_path, separator=";"):
            try:
                labels = tuple(names.names[names.index_of_mid(x)] if MID.match(x) else x for x in labels)
            except UnknownLabelError as exc:
                raise DataSetError(f"{csv_path}:{line}: {exc}") from None
            rows.append((filename, labels, line))
        return cls._from_rows(rows, audio_dir, csv_path, label_set, clip_seconds)

    @classmethod
    def _from_rows(cls, rows, audio_dir: Path, csv_path: Path, label_set: LabelSet | None,
                   clip_seconds: float) -> "ClipDataset":
        if label_set is None:
            label_set = LabelSet(tuple(sorted({label for _, labels, _ in rows for label in labels})))
        clips = []
        for filename, labels, line in rows:
            unknown = [label for label in labels if label not in label_set.names]
            if unknown:
                try:
                    label_set.index(unknown[0])
                except UnknownLabelError as exc:
                    raise DataSetError(f"{csv_path}:{line}: {exc}") from None
            path = audio_dir / filename
            if not path.is_file():
                raise AudioError(path, f"no such file (listed in {csv_path}:{line})")
            clips.append(Clip(path, labels))
        return cls(clips, label_set, clip_seconds)


MID = re.compile(r"^/[a-z]/[0-9a-z_]+$")


def read_weak_csv(path: Path, separator: str = ",") -> list[tuple[str, tuple[str, ...], int]]:
    """`(filename, labels, line number)` rows of a `filename,labels` CSV (labels split on
    `separator`); malformed rows raise `DataSetError` naming file and line."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["filename", "labels"]:
            raise DataSetError(f"{path}:1: expected the header 'filename,labels', got {header}")
        rows = []
        for row in reader:
            line = reader.line_num
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != 2 or not row[0].strip():
                raise DataSetError(f"{path}:{line}: expected 2 columns (filename, \"labels\"; quote labels that contain commas), got {row}")
            labels = tuple(label.strip() for label in row[1].split(separator) if label.strip())
            rows.append((row[0].strip(), labels, line))
    if not rows:
        raise DataSetError(f"{path}: no clips listed")
    return rows
