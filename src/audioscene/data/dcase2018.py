"""DCASE 2018 task 4 ("Large-scale weakly labeled semi-supervised sound event detection in domestic
environments") in its released folder layout, on the 10 DCASE classes (docs/protocol.md §5)::

    ROOT/metadata/train/weak.csv     filename<TAB>event_labels       (labels comma-separated)
    ROOT/metadata/test/test.csv      filename<TAB>onset<TAB>offset<TAB>event_label
    ROOT/metadata/eval/eval.csv      (same as test)
    ROOT/metadata/train/unlabel_in_domain.csv   filename (clips without labels)
    ROOT/audio/train/weak/*.wav, ROOT/audio/train/unlabel_in_domain/*.wav, ROOT/audio/test/*.wav, ROOT/audio/eval/*.wav

`ROOT` is the challenge repository's `dataset/` folder. The strong-label files are DCASE TSVs, so
`audioscene sed-tune --audio ROOT/audio/test --ref ROOT/metadata/test/test.csv` and `sed-eval` run
on them as they are; a model trained on AudioSet's 527 labels is scored on the DCASE classes with
`--classes dcase2018` (each class the max over its AudioSet labels).
"""

from __future__ import annotations

import os
from pathlib import Path

from .._io import csv_rows
from ..audio import SAMPLE_RATE
from ..events import Event, read_events_tsv
from ..labels import dcase2018
from .folder import ClipDataset, DataSetError

SPLITS = {  # split → (audio folder, metadata file, strong labels?)
    "train_weak": ("audio/train/weak", "metadata/train/weak.csv", False),
    "unlabel_in_domain": ("audio/train/unlabel_in_domain", "metadata/train/unlabel_in_domain.csv", False),
    "test": ("audio/test", "metadata/test/test.csv", True),
    "eval": ("audio/eval", "metadata/eval/eval.csv", True),
}


def paths(root: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """(audio folder, metadata file) of a split; missing ones raise `DataSetError`."""
    if split not in SPLITS:
        raise DataSetError(f"unknown DCASE 2018 split {split!r}; choose one of {', '.join(SPLITS)}")
    audio_dir, metadata, _ = SPLITS[split]
    audio_dir, metadata = Path(root) / audio_dir, Path(root) / metadata
    for path in (audio_dir, metadata):
        if not path.exists():
            raise DataSetError(f"{path}: missing (expected the DCASE 2018 task 4 layout under {root})")
    return audio_dir, metadata


def events(root: str | os.PathLike, split: str) -> list[Event]:
    """Strong labels of the `test` or `eval` split."""
    _, metadata = paths(root, split)
    if not SPLITS[split][2]:
        raise DataSetError(f"the {split} split has weak labels only")
    return read_events_tsv(metadata)


def files(root: str | os.PathLike, split: str) -> list[Path]:
    """The audio files a split's metadata lists (each once, in its order); a listed file that is
    missing is named with its line."""
    audio_dir, metadata = paths(root, split)
    lines = csv_rows(metadata, DataSetError, delimiter="\t")
    next(lines, None)  # the header
    found = {}
    for first, _, row in lines:
        if row and row[0].strip():
            path = audio_dir / row[0].strip()
            if not path.is_file():
                raise DataSetError(f"{metadata}:{first}: {row[0].strip()} is not a file of {audio_dir}")
            found.setdefault(path, None)
    return list(found)


def dataset(root: str | os.PathLike, split: str, clip_seconds: float = 10.0, sample_rate: int = SAMPLE_RATE,
            ) -> ClipDataset:
    """Clips of a split with weak labels (for test/eval: the classes of each file's events)."""
    if split == "unlabel_in_domain":
        raise DataSetError(f"{root}: the unlabel_in_domain split has no labels; give it as unlabelled data "
                           f"(--unlabelled-data dcase2018:{root}:unlabel_in_domain)")
    audio_dir, metadata = paths(root, split)
    classes = dcase2018()
    if SPLITS[split][2]:
        by_file: dict[str, set[str]] = {}
        for event in read_events_tsv(metadata):
            by_file.setdefault(event.filename, set()).add(event.label)
        for path in sorted(audio_dir.glob("*.wav")):  # files without any event have no label
            by_file.setdefault(path.name, set())
        rows = [(name, tuple(sorted(labels)), 0) for name, labels in sorted(by_file.items())]
    else:
        lines = csv_rows(metadata, DataSetError, delimiter="\t")  # UTF-8, no NUL, quotes closed: file:line
        _, _, header = next(lines, (1, 1, None))
        if header is None or [h.strip() for h in header[:2]] != ["filename", "event_labels"]:
            raise DataSetError(f"{metadata}:1: expected the header 'filename<TAB>event_labels', got {header}")
        rows = []
        for first, last, row in lines:
            if not row or not row[0].strip():
                continue
            if first != last:
                raise DataSetError(f"{metadata}:{first}: a quote opened on this line is not closed before line {last}")
            if len(row) < 2 or any(cell.strip() for cell in row[2:]):
                raise DataSetError(f"{metadata}:{first}: expected 'filename<TAB>labels', got {row!r}")
            rows.append((row[0].strip(), tuple(x.strip() for x in row[1].split(",") if x.strip()), first))
    return ClipDataset._from_rows(rows, audio_dir, metadata, classes, clip_seconds, sample_rate)
