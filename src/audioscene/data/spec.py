"""Data specs: the one string form that names a data set, parsed once, and the two kinds of data set
they open. Each form is a `DataForm` record in `DATA_FORMS` (`register_form` adds one).

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
from ..registries import register
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


@dataclass(frozen=True)
class DataForm:
    """One way of naming a data set: `name:PATH` (the plain folder form has no prefix), how it
    opens, whether it streams, what it holds, whether a labels CSV goes with it, whether its path
    ends in `:SPLIT`, and, for audio a mean teacher may learn from without labels, its files. A new
    form is one of these and one `register_form` line."""

    name: str
    syntax: str  # how it reads in a help text
    open: Callable[["DataSpec", OpenOptions], ClipSet | ClipStream]
    streamed: bool = False  # a `ClipStream` read in sequence, not a map-style `ClipSet`
    holds: str = "audio"  # "audio", or "embeddings" (AudioSet's released features)
    labels_file: bool = False  # labelled by a CSV given beside it (`--labels`)
    split: str = ""  # the splits a `PATH:SPLIT` names (empty: the form has no split)
    audio_files: Callable[["DataSpec"], list[Path]] | None = None  # its audio, for the mean teacher

    def spell(self, path: str, split: str = "") -> str:
        body = f"{path}:{split}" if self.split else path
        return f"{self.name}:{body}" if self.name != PLAIN else body


PLAIN = "dir"  # the form without a prefix: DIR with weak.csv and audio/
DATA_FORMS: dict[str, DataForm] = {}


def register_form(form: DataForm) -> DataForm:
    """Add a data-spec form (then `FORM:PATH` works wherever a data spec is taken)."""
    if not form.name.isidentifier():  # it is the spec's prefix, before a ':'
        raise ConfigError(f"data form {form.name!r}: a name of letters, digits and _")
    return register(DATA_FORMS, form.name, form, "data form")


def described(forms: list[DataForm]) -> str:
    """Forms as a phrase for messages: "a folder, folder: or dcase2018: spec", "an embeddings: spec"."""
    names = ["a folder" if form.name == PLAIN else f"{form.name}:" for form in forms]
    if len(names) == 1:
        article = "" if names[0] == "a folder" else ("an " if names[0][0] in "aeiou" else "a ")
        return f"{article}{names[0]} spec"
    return ", ".join(names[:-1]) + " or " + names[-1] + " spec"


def forms_where(**properties) -> list[DataForm]:
    """The registered forms whose attributes equal `properties` (e.g. `streamed=False, holds="audio"`)."""
    return [form for form in DATA_FORMS.values() if all(getattr(form, k) == v for k, v in properties.items())]


def _files_under(spec: "DataSpec") -> list[Path]:
    from ..audio import expand_paths

    root = Path(spec.path)
    if not root.is_dir():
        raise DataSetError(f"{spec}: no such data folder")
    root = root / "audio" if spec.kind == PLAIN and (root / "audio").is_dir() else root
    return [path for path, _ in expand_paths([root])]


def _open_dir(spec: "DataSpec", options: OpenOptions) -> ClipSet:
    return ClipDataset.from_folder(spec.path, options.label_set, options.clip_seconds, options.sample_rate)


def _open_folder(spec: "DataSpec", options: OpenOptions) -> ClipSet:
    return ClipDataset.from_labels_csv(spec.path, spec.labels or Path(spec.path) / "labels.csv", options.label_set,
                                       options.clip_seconds, options.sample_rate)


def _open_dcase2018(spec: "DataSpec", options: OpenOptions) -> ClipSet:
    from . import dcase2018

    return dcase2018.dataset(spec.path, spec.split, options.clip_seconds, options.sample_rate)


def _dcase2018_files(spec: "DataSpec") -> list[Path]:
    from . import dcase2018

    return dcase2018.files(spec.path, spec.split)


def _open_shards(spec: "DataSpec", options: OpenOptions) -> ClipStream:
    from .store import ShardDataset

    return ShardDataset(spec.path, options.label_set, options.clip_seconds, seed=options.seed,
                        skip_corrupt=options.skip_corrupt, rank=options.rank, world_size=options.world_size,
                        sample_rate=options.sample_rate)


def _open_embeddings(spec: "DataSpec", options: OpenOptions) -> ClipSet:
    from .embeddings import EmbeddingDataset

    return EmbeddingDataset.from_folder(spec.path, options.label_set, skip_bad=options.skip_corrupt)


for _form in (
    DataForm(PLAIN, "DIR (weak.csv + audio/)", _open_dir, audio_files=_files_under),
    DataForm("folder", "folder:DIR (labelled by --labels)", _open_folder, labels_file=True, audio_files=_files_under),
    DataForm("dcase2018", "dcase2018:ROOT:SPLIT", _open_dcase2018, split="train_weak, test, eval",
             audio_files=_dcase2018_files),
    DataForm("shards", "shards:DIR", _open_shards, streamed=True),
    DataForm("embeddings", "embeddings:DIR (AudioSet's released features, for models on embeddings)",
             _open_embeddings, holds="embeddings"),
):
    register_form(_form)


def forms_help(kinds: tuple[str, ...] | None = None) -> str:
    """The data-spec forms a command accepts, for its help text (default: the map-style ones)."""
    names = [form.syntax for form in DATA_FORMS.values() if (form.name in kinds if kinds else not form.streamed)]
    return ", ".join(names[:-1]) + " or " + names[-1]


@dataclass(frozen=True)
class DataSpec:
    """A data set named once: `kind`, `path`, the DCASE `split`, and `labels`, the labels CSV of a
    `folder:` spec (each spec carries its own). Parsed where the text comes in (a flag, a TOML key,
    a Python argument) and passed on as it is: library functions take one (or parse a plain text
    with `of`)."""

    kind: str
    path: str
    split: str = ""
    labels: str = ""

    @classmethod
    def parse(cls, text: str | Path, labels: str | Path = "") -> "DataSpec":
        text, labels = str(text), str(labels or "")
        prefix, _, rest = text.partition(":")
        kind, path = (prefix, rest) if prefix in DATA_FORMS and prefix != PLAIN and ":" in text else (PLAIN, text)
        if not path:
            raise DataSetError(f"data spec {text!r}: empty path")
        form, split = DATA_FORMS[kind], ""
        if form.split:
            path, _, split = path.rpartition(":")
            if not path:
                raise DataSetError(f"{text!r}: expected {form.syntax} with SPLIT one of {form.split}")
        if labels and not form.labels_file:
            raise DataSetError(f"{text!r}: a labels CSV ({labels}) applies to "
                               f"{' or '.join(f.name + ': specs' for f in DATA_FORMS.values() if f.labels_file)} only; "
                               f"a {kind} spec carries its own labels")
        return cls(kind, path, split, labels)

    @classmethod
    def of(cls, data: "DataSpec | str | Path") -> "DataSpec":
        """`data` itself, or its text parsed (a spec that needs no labels CSV beside it)."""
        return data if isinstance(data, DataSpec) else cls.parse(data)

    def __str__(self) -> str:
        return self.form.spell(self.path, self.split)

    @property
    def form(self) -> DataForm:
        return DATA_FORMS[self.kind]

    @property
    def streamed(self) -> bool:
        """True for a `ClipStream` (shards), False for a map-style `ClipSet`."""
        return self.form.streamed

    @property
    def sources(self) -> tuple[Path, ...]:
        """What the spec reads: its folder (or file) and its labels CSV, if any; an output must not
        replace a file among them."""
        return (Path(self.path),) + ((Path(self.labels),) if self.labels else ())

    @property
    def name(self) -> str:
        """A file-name-safe short name (the last path part, or the split)."""
        return self.split or Path(self.path.rstrip("/")).name or "data"

    def require_input(self, takes_audio: bool, model: str) -> None:
        """Refuse data that does not hold what `model` takes (audio when it `takes_audio`, else
        AudioSet's released embeddings), naming both."""
        holds_audio = self.form.holds == "audio"
        if holds_audio != takes_audio:
            wants = f"audio ({described(forms_where(holds='audio'))})" if takes_audio else \
                f"AudioSet's released embeddings ({described(forms_where(holds='embeddings'))})"
            has = "audio" if holds_audio else "AudioSet's released embeddings"
            raise ConfigError(f"{self}: holds {has}, but {model} takes {wants}")

    def open(self, options: OpenOptions = OpenOptions()) -> ClipSet | ClipStream:
        return self.form.open(self, options)

    def open_unlabelled(self, options: OpenOptions = OpenOptions()) -> ClipDataset:
        """The audio of this spec as clips without labels (for the mean teacher): every audio file
        of a form that lists them (`DataForm.audio_files`: under `DIR` (its `audio/` when there is
        one) or `folder:DIR`, or a DCASE 2018 split's files, `dcase2018:ROOT:unlabel_in_domain`)."""
        if self.form.audio_files is None:
            listing = described([form for form in DATA_FORMS.values() if form.audio_files is not None])
            raise ConfigError(f"{self}: unlabelled data must be audio files: {listing}")
        return ClipDataset([Clip(path, ()) for path in self.form.audio_files(self)], options.label_set,
                           options.clip_seconds, options.sample_rate)

    def open_clips(self, options: OpenOptions = OpenOptions(), purpose: str = "evaluation") -> ClipSet:
        """The map-style set this spec names; a stream is refused, naming `purpose`."""
        if self.streamed:
            raise ConfigError(f"{self}: {purpose} needs a map-style data set "
                              f"({described(forms_where(streamed=False, holds='audio'))}), "
                               f"not {self.kind}")
        return self.open(options)
