"""Data sets. `open_dataset` turns a data spec string into a data set:

- `PATH`: a folder with `weak.csv` and `audio/` (the synthetic layout);
- `folder:PATH`: any folder of audio files, labelled by a CSV `filename,labels` (`;`-separated
  names or mids; `labels_csv`, default `PATH/labels.csv`);
- `dcase2018:ROOT:SPLIT`: DCASE 2018 task 4 (`train_weak`, `test`, `eval`);
- `shards:PATH`: tar shards written by `audioscene pack` (streamed; training only).
"""

from __future__ import annotations

from pathlib import Path

from ..audio import SAMPLE_RATE
from ..labels import LabelSet
from .folder import ClipDataset, DataSetError


def open_dataset(spec: str, label_set: LabelSet | None = None, clip_seconds: float = 10.0,
                 labels_csv: str = "", shuffle_seed: int = 0, skip_corrupt: bool = False,
                 sample_rate: int = SAMPLE_RATE):
    """The data set a spec names (see the module docstring), its clips decoded at `sample_rate`
    (the front end's); `skip_corrupt` applies to shards."""
    kind, _, rest = spec.partition(":") if ":" in spec and spec.split(":", 1)[0] in KINDS else ("", "", spec)
    if kind == "folder":
        return ClipDataset.from_labels_csv(rest, labels_csv or Path(rest) / "labels.csv", label_set, clip_seconds,
                                           sample_rate)
    if kind == "dcase2018":
        from . import dcase2018

        root, _, split = rest.rpartition(":")
        if not root:
            raise DataSetError(f"{spec!r}: expected dcase2018:ROOT:SPLIT with SPLIT one of train_weak, test, eval")
        return dcase2018.dataset(root, split, clip_seconds, sample_rate)
    if kind == "shards":
        from .store import ShardDataset

        return ShardDataset(rest, label_set, clip_seconds, seed=shuffle_seed, skip_corrupt=skip_corrupt,
                            sample_rate=sample_rate)
    return ClipDataset.from_folder(rest, label_set, clip_seconds, sample_rate)


KINDS = ("folder", "dcase2018", "shards")
