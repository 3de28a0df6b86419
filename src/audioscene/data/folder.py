"""Clip data sets: audio (a file path or an array) with multi-hot weak labels.

`ClipDataset` is the map-style `ClipSet` of audio (`data/spec.py`): the synthetic set, own folders,
downloaded AudioSet clips and DCASE 2018 all become one by listing `(source, labels)` pairs; shards
(`store/`) and released embeddings (`embeddings.py`) are the other kinds of data set.

A folder data set is `DIR/weak.csv` (`filename,labels`: labels `;`-separated; empty for a clip
with no label) with the audio in `DIR/audio/` (or `DIR/` itself).

Own data (`from_labels_csv`) is any folder of audio files plus a CSV `filename,labels` whose labels
are `;`-separated AudioSet display names (75 of them contain commas, hence `;`) or mids, or names
of your own.

File names in these CSVs are untrusted data: each must be a relative path that stays inside the
audio folder (subfolders allowed; no absolute path, no `..`, no control characters), else the
line is refused with file:line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np
import soxr
import torch
from torch.utils.data import Dataset

from .._io import csv_rows
from ..audio import SAMPLE_RATE, AudioError, load
from ..errors import DataSetError
from ..events import UNSTORABLE
from ..labels import LabelSet, UnknownLabelError, audioset


@dataclass(frozen=True)
class Clip:
    source: Path | np.ndarray  # audio file, or float32 mono samples at audio.SAMPLE_RATE
    labels: tuple[str, ...]


def fix_length(wave: np.ndarray, n_samples: int) -> np.ndarray:
    """Crop or zero-pad a mono signal to exactly `n_samples`."""
    if len(wave) >= n_samples:
        return wave[:n_samples]
    return np.pad(wave, (0, n_samples - len(wave)))


class ClipDataset(Dataset):
    """`(waveform [clip_samples] float32, target [n_classes] float32)` items.

    Every clip is decoded at `sample_rate` (the front end's) and cropped or zero-padded to
    `clip_seconds` so that clips batch together.
    """

    def __init__(self, clips: Sequence[Clip], label_set: LabelSet, clip_seconds: float = 10.0,
                 sample_rate: int = SAMPLE_RATE):
        self.clips = list(clips)
        self.label_set = label_set
        self.sample_rate = sample_rate
        self.clip_samples = int(round(clip_seconds * sample_rate))
        self.targets = np.stack([label_set.multi_hot(c.labels) for c in self.clips]) if self.clips \
            else np.zeros((0, len(label_set)), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def keys(self) -> list[str]:
        """Each clip's key: its file's stem (as `pack` names shard members), `clip_NNNNNN` for arrays."""
        return [c.source.stem if isinstance(c.source, Path) else f"clip_{i:06d}" for i, c in enumerate(self.clips)]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        clip = self.clips[index]
        if isinstance(clip.source, np.ndarray):
            wave = clip.source if self.sample_rate == SAMPLE_RATE else \
                soxr.resample(clip.source, SAMPLE_RATE, self.sample_rate, quality="HQ")
        else:
            wave = load(clip.source, sr=self.sample_rate)
        return torch.from_numpy(fix_length(np.asarray(wave, dtype=np.float32), self.clip_samples)), \
            torch.from_numpy(self.targets[index])

    @classmethod
    def from_folder(cls, root: str | os.PathLike, label_set: LabelSet | None = None,
                    clip_seconds: float = 10.0, sample_rate: int = SAMPLE_RATE) -> "ClipDataset":
        """Read `root/weak.csv`; without `label_set`, the labels are the sorted names in the CSV."""
        root = Path(root)
        csv_path = root / "weak.csv"
        if not root.is_dir():
            raise DataSetError(f"{root}: no such data folder")
        if not csv_path.is_file():
            raise DataSetError(f"{csv_path}: missing (a data folder needs weak.csv with columns filename,labels)")
        audio_dir = root / "audio" if (root / "audio").is_dir() else root
        rows = read_weak_csv(csv_path)
        if label_set is None:  # weak.csv once separated labels by commas: refuse such a file, not misread it
            known = set(audioset().names)
            for _, labels, line in rows:
                joined = [label for label in labels if "," in label and label not in known]
                if joined:
                    raise DataSetError(f"{csv_path}:{line}: label {joined[0]!r} contains a comma; labels are separated "
                                       "by ';' (e.g. \"Dog;Cat\")")
        return cls._from_rows(rows, audio_dir, csv_path, label_set, clip_seconds, sample_rate)

    @classmethod
    def from_labels_csv(cls, audio_dir: str | os.PathLike, csv_path: str | os.PathLike,
                        label_set: LabelSet | None = None, clip_seconds: float = 10.0,
                        sample_rate: int = SAMPLE_RATE) -> "ClipDataset":
        """Own data: audio files under `audio_dir` listed in `csv_path` (`filename,labels`, labels
        `;`-separated display names or AudioSet mids such as `/m/0bt9lr`, which become display names)."""
        audio_dir, csv_path = Path(audio_dir), Path(csv_path)
        if not audio_dir.is_dir():
            raise DataSetError(f"{audio_dir}: no such audio folder")
        if not csv_path.is_file():
            raise DataSetError(f"{csv_path}: no such label file (a CSV with columns filename,labels)")
        names = audioset()
        rows = []
        for filename, labels, line in read_weak_csv(csv_path):
            try:
                labels = tuple(names.names[names.index_of_mid(x)] if MID.match(x) else x for x in labels)
            except UnknownLabelError as exc:
                raise DataSetError(f"{csv_path}:{line}: {exc}") from None
            rows.append((filename, labels, line))
        return cls._from_rows(rows, audio_dir, csv_path, label_set, clip_seconds, sample_rate)

    @classmethod
    def _from_rows(cls, rows, audio_dir: Path, csv_path: Path, label_set: LabelSet | None,
                   clip_seconds: float, sample_rate: int = SAMPLE_RATE) -> "ClipDataset":
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
            path = audio_dir / checked_relative_name(filename, f"{csv_path}:{line}", audio_dir)
            if not path.is_file():
                raise AudioError(path, f"no such file (listed in {csv_path}:{line})")
            clips.append(Clip(path, labels))
        return cls(clips, label_set, clip_seconds, sample_rate)


MID = re.compile(r"^/[a-z]/[0-9a-z_]+$")


def checked_relative_name(name: str, where: str, folder: Path) -> str:
    """`name` if it is a relative path that stays inside `folder` (no absolute path, `..` part,
    backslash or control character); else `DataSetError` naming `where`."""
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or ".." in parts or "\\" in name or UNSTORABLE.search(name):
        raise DataSetError(f"{where}: file name {name!r} must be a relative path inside {folder} (no absolute path, "
                           "'..', backslash or control character)")
    return name


def read_weak_csv(path: Path) -> list[tuple[str, tuple[str, ...], int]]:
    """`(filename, labels, line number)` rows of a `filename,labels` CSV (labels `;`-separated);
    malformed rows (wrong columns, a quote left open, bad encoding) raise `DataSetError` naming
    file and line."""
    rows = []
    for first, last, row in csv_rows(path, DataSetError):
        if first == 1:
            if [h.strip() for h in row[:2]] != ["filename", "labels"]:
                raise DataSetError(f"{path}:1: expected the header 'filename,labels', got {row}")
            continue
        if not row or not any(cell.strip() for cell in row):
            continue
        if last != first:
            raise DataSetError(f"{path}:{first}: a quote opened on this line is not closed before line {last}")
        if len(row) != 2 or not row[0].strip():
            raise DataSetError(f"{path}:{first}: expected 2 columns (filename, labels separated by ';'), got {row}")
        labels = tuple(label.strip() for label in row[1].split(";") if label.strip())
        rows.append((row[0].strip(), labels, first))
    if not rows:
        raise DataSetError(f"{path}: no clips listed (or no header 'filename,labels')")
    return rows
