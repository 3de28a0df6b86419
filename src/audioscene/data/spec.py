"""Data specs: the one string form that names a data set, parsed once, and the two kinds of data set
they open.

| spec                   | opens                                                              | protocol  |
|------------------------|--------------------------------------------------------------------|-----------|
| `DIR`                  | `DIR/weak.csv` + `DIR/audio/` (the synthetic layout)               | `ClipSet` |
| `folder:DIR`           | audio files under DIR, labelled by a CSV `filename,labels` (`labels`, default `DIR/labels.csv`) | `ClipSet` |
| `dcase2018:ROOT:SPLIT` | DCASE 2018 task 4 (`train_weak`, `test`, `eval`)                   | `ClipSet` |
| `shards:DIR`           | tar shards written by `audioscene pack`                            | `ClipStream` |
| `embeddings:DIR`       | AudioSet's released 128-d embeddings, `DIR/*.tfrecord` (`embeddings`) | `ClipSet` |

A `ClipSet` is map-style: clips in a fixed order with their targets, so it can be scored (evaluation)
or sampled in any order (training: shuffled or class-balanced). Its items are waveforms, or, for
`embeddings:`, embedding sequences (the models that take them have no log-mel front end). A `ClipStream` is read in sequence,
each clip once per epoch; `set_epoch` fixes the epoch's order and each DDP rank reads its own share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np
import torch

from ..audio import SAMPLE_RATE
from ..errors import ConfigError
from ..labels import LabelSet
from .folder import Clip, ClipDataset, DataSetError


class ClipSet(Protocol):
    """Map-style clips: `dataset[i]` is `(input, target [K])`, `targets` `[N, K]`, `keys` the clips'
    keys (file stems, as shards name their members); the input is a waveform `[clip_samples]` or an
    embedding sequence `[frames, 128]`."""

    label_set: LabelSet
    targets: np.ndarray
    keys: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]: ...


class WithUnlabelled:
    """A labelled `ClipSet` followed by clips without labels (targets all 0, `unlabelled` True):
    a `ClipSet` whose unlabelled clips train only through the mean teacher's consistency loss."""

    def __init__(self, labelled: ClipSet, unlabelled: ClipDataset):
        self.parts, self.label_set = (labelled, unlabelled), labelled.label_set
        self.targets = np.concatenate([labelled.targets, unlabelled.targets.reshape(-1, len(self.label_set))])
        self.keys = list(labelled.keys) + list(unlabelled.keys)
        self.unlabelled = np.r_[np.zeros(len(labelled), bool), np.ones(len(unlabelled), bool)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        first = len(self.parts[0])
        return self.parts[0][index] if index < first else self.parts[1][index - first]


class ClipStream(Protocol):
    """Streamed clips: iterating yields this rank's `(waveform, target, key)` of the epoch set by
    `set_epoch`; `shares()` is the number of clips each rank reads in that epoch."""

    label_set: LabelSet
    clip_samples: int
    n_clips_total: int
    rank: int
    world_size: int
    stores_events: bool  # packed with strong labels; `with_events = True` adds them to each item
    with_events: bool

    def set_epoch(self, epoch: int) -> None: ...

    def shares(self) -> list[int]: ...

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, str]]: ...


@dataclass(frozen=True)
class OpenOptions:
    """How a spec is opened: the run's label set (None: the data's own), the clip length, the front
    end's sample rate, and for streams the shuffling seed, corrupt-clip policy and this rank."""

    label_set: LabelSet | None = None
    clip_seconds: float = 10.0
    sample_rate: int = SAMPLE_RATE
    seed: int = 0
    skip_corrupt: bool = False
    rank: int = 0
    world_size: int = 1


def _open_dir(spec: "DataSpec", options: OpenOptions) -> ClipSet:
    return ClipDataset.from_folder(spec.path, options.label_set, options.clip_seconds, options.sample_rate)


def _open_folder(spec: "DataSpec", options: OpenOptions) -> ClipSet:
    return ClipDataset.from_labels_csv(spec.path, spec.labels or Path(spec.path) / "labels.csv", options.label_set,
                                       options.clip_seconds, options.sample_rate)


def _open_dcase2018(spec: "DataSpec", options: OpenOptions) -> ClipSet:
    from . import dcase2018

    return dcase2018.dataset(spec.path, spec.split, options.clip_seconds, options.sample_rate)


def _open_shards(spec: "DataSpec", options: OpenOptions) -> ClipStream:
    from .store import ShardDataset

    return ShardDataset(spec.path, options.label_set, options.clip_seconds, seed=options.seed,
                        skip_corrupt=options.skip_corrupt, rank=options.rank, world_size=options.world_size,
                        sample_rate=options.sample_rate)


def _open_embeddings(spec: "DataSpec", options: OpenOptions) -> ClipSet:
    from .embeddings import EmbeddingDataset

    return EmbeddingDataset.from_folder(spec.path, options.label_set, skip_bad=options.skip_corrupt)


# kind → (opener, streamed); the kind is the spec's prefix ("dir" has none)
OPENERS: dict[str, tuple[Callable[["DataSpec", OpenOptions], ClipSet | ClipStream], bool]] = {
    "dir": (_open_dir, False),
    "folder": (_open_folder, False),
    "dcase2018": (_open_dcase2018, False),
    "shards": (_open_shards, True),
    "embeddings": (_open_embeddings, False),
}
WITH_LABELS_FILE = ("folder",)

# how each form reads in a help text, in the table's order
FORMS = {"dir": "DIR (weak.csv + audio/)", "folder": "folder:DIR (labelled by --labels)",
         "dcase2018": "dcase2018:ROOT:SPLIT", "shards": "shards:DIR",
         "embeddings": "embeddings:DIR (AudioSet's released features, for models on embeddings)"}


def forms_help(kinds: tuple[str, ...] | None = None) -> str:
    """The data-spec forms a command accepts, for its help text (default: the map-style ones)."""
    names = [text for kind, text in FORMS.items() if (kind in kinds if kinds else not OPENERS[kind][1])]
    return ", ".join(names[:-1]) + " or " + names[-1]


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec: `kind`, `path`, the DCASE `split`, and `labels`, the labels CSV of a
    `folder:` spec (each spec carries its own)."""

    kind: str
    path: str
    split: str = ""
    labels: str = ""

    @classmethod
    def parse(cls, text: str | Path, labels: str | Path = "") -> "DataSpec":
        text, labels = str(text), str(labels or "")
        prefix, _, rest = text.partition(":")
        kind, path = (prefix, rest) if prefix in OPENERS and prefix != "dir" and ":" in text else ("dir", text)
        if not path:
            raise DataSetError(f"data spec {text!r}: empty path")
        split = ""
        if kind == "dcase2018":
            path, _, split = path.rpartition(":")
            if not path:
                raise DataSetError(f"{text!r}: expected dcase2018:ROOT:SPLIT with SPLIT one of train_weak, test, eval")
        if labels and kind not in WITH_LABELS_FILE:
            raise DataSetError(f"{text!r}: a labels CSV ({labels}) applies to folder: specs only; a {kind} spec "
                               "carries its own labels")
        return cls(kind, path, split, labels)

    def __str__(self) -> str:
        body = f"{self.path}:{self.split}" if self.kind == "dcase2018" else self.path
        return body if self.kind == "dir" else f"{self.kind}:{body}"

    @property
    def streamed(self) -> bool:
        """True for a `ClipStream` (shards), False for a map-style `ClipSet`."""
        return OPENERS[self.kind][1]

    @property
    def sources(self) -> tuple[Path, ...]:
        """What the spec reads: its folder (or file) and its labels CSV, if any; an output must not
        replace a file among them."""
        return (Path(self.path),) + ((Path(self.labels),) if self.labels else ())

    @property
    def name(self) -> str:
        """A file-name-safe short name (the last path part, or the DCASE split)."""
        return self.split or Path(self.path.rstrip("/")).name or "data"

    def require_input(self, takes_audio: bool, model: str) -> None:
        """Refuse data that does not hold what `model` takes (audio when it `takes_audio`, else
        AudioSet's released embeddings), naming both."""
        holds_audio = self.kind != "embeddings"
        if holds_audio != takes_audio:
            wants = "audio (a folder, folder:, dcase2018: or shards: spec)" if takes_audio else \
                "AudioSet's released embeddings (an embeddings: spec)"
            has = "audio" if holds_audio else "AudioSet's released embeddings"
            raise ConfigError(f"{self}: holds {has}, but {model} takes {wants}")

    def open(self, options: OpenOptions = OpenOptions()) -> ClipSet | ClipStream:
        return OPENERS[self.kind][0](self, options)

    def open_unlabelled(self, options: OpenOptions = OpenOptions()) -> ClipDataset:
        """The audio of this spec as clips without labels (for the mean teacher): every audio file
        under `DIR` (its `audio/` when there is one) or `folder:DIR`, or a DCASE 2018 split's files
        (`dcase2018:ROOT:unlabel_in_domain`)."""
        from ..audio import expand_paths

        if self.kind == "dcase2018":
            from . import dcase2018

            files = dcase2018.files(self.path, self.split)
        elif self.kind in ("dir", "folder"):
            root = Path(self.path)
            if not root.is_dir():
                raise DataSetError(f"{self}: no such data folder")
            root = root / "audio" if self.kind == "dir" and (root / "audio").is_dir() else root
            files = [path for path, _ in expand_paths([root])]
        else:
            raise ConfigError(f"{self}: unlabelled data must be audio files: a folder, folder: or dcase2018: spec")
        return ClipDataset([Clip(path, ()) for path in files], options.label_set, options.clip_seconds,
                           options.sample_rate)

    def open_clips(self, options: OpenOptions = OpenOptions(), purpose: str = "evaluation") -> ClipSet:
        """The map-style set this spec names; a stream is refused, naming `purpose`."""
        if self.streamed:
            raise ConfigError(f"{self}: {purpose} needs a map-style data set (a folder, folder: or dcase2018: spec), "
                               f"not {self.kind}")
        return self.open(options)
