"""Label sets: the 527 AudioSet labels and their ontology, the 10 DCASE 2018 task 4 classes.

>>> from audioscene import labels
>>> audioset = labels.audioset()
>>> len(audioset), audioset.index("Dog"), audioset.names[74]
(527, 74, 'Dog')
>>> labels.DCASE2018_AUDIOSET_NAMES["Electric_shaver_toothbrush"]
('Electric shaver, electric razor', 'Electric toothbrush')
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import InputError, UnknownLabelError


@dataclass(frozen=True)
class LabelSet:
    """An ordered list of class names (and optional AudioSet mids); position = output index."""

    names: tuple[str, ...]
    mids: tuple[str, ...] | None = None

    def __post_init__(self):
        if len(set(self.names)) != len(self.names):
            raise InputError("label names must be unique")
        if self.mids is not None and len(self.mids) != len(self.names):
            raise InputError("need one mid per label name")

    def __len__(self) -> int:
        return len(self.names)

    @cached_property
    def _index_by_name(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @cached_property
    def _index_by_mid(self) -> dict[str, int]:
        return {mid: i for i, mid in enumerate(self.mids or ())}

    def index(self, name: str) -> int:
        """Output index of a display name; an unknown name raises with the closest names."""
        try:
            return self._index_by_name[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownLabelError(f"unknown label {name!r}{hint}") from None

    def index_of_mid(self, mid: str) -> int:
        """Output index of an AudioSet machine id such as '/m/0bt9lr'."""
        try:
            return self._index_by_mid[mid]
        except KeyError:
            raise UnknownLabelError(f"unknown label mid {mid!r}") from None

    def multi_hot(self, names: list[str] | tuple[str, ...]) -> np.ndarray:
        """float32 vector with ones at the given label names."""
        target = np.zeros(len(self), dtype=np.float32)
        target[[self.index(name) for name in names]] = 1.0
        return target


def _resource_text(name: str) -> str:
    return resources.files("audioscene").joinpath("resources", name).read_text(encoding="utf-8")


@cache
def audioset() -> LabelSet:
    """The 527 AudioSet labels in the order of `class_labels_indices.csv`."""
    rows = list(csv.DictReader(io.StringIO(_resource_text("class_labels_indices.csv"))))
    if [int(row["index"]) for row in rows] != list(range(len(rows))):
        raise InputError("class_labels_indices.csv: indices are not 0..N-1 in order")
    return LabelSet(tuple(row["display_name"] for row in rows), tuple(row["mid"] for row in rows))


@dataclass(frozen=True)
class OntologyNode:
    mid: str
    name: str
    description: str
    child_ids: tuple[str, ...]
    restrictions: tuple[str, ...]


class Ontology:
    """The AudioSet ontology (632 nodes): names, children and parents by mid."""

    def __init__(self, nodes: list[OntologyNode]):
        self.nodes = {node.mid: node for node in nodes}
        self._parents: dict[str, list[str]] = {mid: [] for mid in self.nodes}
        for node in nodes:
            for child in node.child_ids:
                self._parents[child].append(node.mid)

    def __len__(self) -> int:
        return len(self.nodes)

    def node(self, mid: str) -> OntologyNode:
        try:
            return self.nodes[mid]
        except KeyError:
            raise UnknownLabelError(f"unknown ontology mid {mid!r}") from None

    def children(self, mid: str) -> list[OntologyNode]:
        return [self.nodes[child] for child in self.node(mid).child_ids]

    def parents(self, mid: str) -> list[OntologyNode]:
        self.node(mid)
        return [self.nodes[parent] for parent in self._parents[mid]]


@cache
def ontology() -> Ontology:
    """The AudioSet ontology shipped with the package."""
    raw = json.loads(_resource_text("ontology.json"))
    return Ontology([
        OntologyNode(n["id"], n["name"], n["description"], tuple(n["child_ids"]), tuple(n["restrictions"]))
        for n in raw
    ])


# DCASE 2018 task 4 classes → AudioSet display names (ours, docs/protocol.md §5). A DCASE class's score is
# the max over its AudioSet labels.
DCASE2018_AUDIOSET_NAMES: dict[str, tuple[str, ...]] = {
    "Alarm_bell_ringing": ("Alarm", "Alarm clock", "Bell", "Telephone bell ringing",
                           "Smoke detector, smoke alarm", "Fire alarm"),
    "Blender": ("Blender",),
    "Cat": ("Cat",),
    "Dishes": ("Dishes, pots, and pans",),
    "Dog": ("Dog",),
    "Electric_shaver_toothbrush": ("Electric shaver, electric razor", "Electric toothbrush"),
    "Frying": ("Frying (food)",),
    "Running_water": ("Water tap, faucet", "Sink (filling or washing)"),
    "Speech": ("Speech", "Male speech, man speaking", "Female speech, woman speaking",
               "Child speech, kid speaking", "Conversation"),
    "Vacuum_cleaner": ("Vacuum cleaner",),
}

# The "broad" mapping (`class_mapping("broad")`): the paper's names, all their descendants in the
# ontology that are AudioSet labels, and a few related labels that are not descendants; minus the
# descendants of "Alarm" that are not bells or alarms ringing (sirens, horns, whistles, tones).
BROAD_EXTRA: dict[str, tuple[str, ...]] = {
    "Running_water": ("Bathtub (filling or washing)", "Water", "Pour", "Trickle, dribble"),
    "Dishes": ("Cutlery, silverware",),
}
BROAD_EXCLUDE = ("siren", "horn", "whistle", "toot", "tuning fork", "dial tone", "busy signal")
MAPPINGS = ("paper", "broad")


def class_mapping(name: str) -> dict[str, tuple[str, ...]]:
    """DCASE 2018 class → the AudioSet label names whose max scores it: "paper" (the one-label
    groups of `DCASE2018_AUDIOSET_NAMES`), "broad" (see `BROAD_EXTRA`), or a JSON file
    `{"Cat": ["Cat", "Meow", ...], ...}` whose names must be AudioSet labels."""
    known = set(audioset().names)
    if name == "paper":
        return dict(DCASE2018_AUDIOSET_NAMES)
    if name == "broad":
        tree = ontology()
        mid_of = {node.name: mid for mid, node in reversed(list(tree.nodes.items()))}

        def descendants(mid: str) -> list[str]:
            return [n for child in tree.children(mid) for n in (child.name, *descendants(child.mid))]

        mapping = {}
        for cls, names in DCASE2018_AUDIOSET_NAMES.items():
            below = [n for group in names for n in descendants(mid_of[group])
                     if not any(word in n.lower() for word in BROAD_EXCLUDE)]
            mapping[cls] = tuple(dict.fromkeys(n for n in (*names, *below, *BROAD_EXTRA.get(cls, ())) if n in known))
        return mapping
    try:
        raw = json.loads(Path(name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{name}: no such mapping file (or choose one of {', '.join(MAPPINGS)})") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{name}: not a JSON mapping ({exc})") from None
    if not isinstance(raw, dict) or not all(isinstance(v, list) and all(isinstance(n, str) for n in v)
                                            for v in raw.values()):
        raise InputError(f"{name}: expected a JSON object of class → list of AudioSet label names")
    unknown = [n for names in raw.values() for n in names if n not in known]
    if unknown:
        raise InputError(f"{name}: {unknown[0]!r} is not an AudioSet label name")
    return {cls: tuple(names) for cls, names in raw.items()}


# Coarser class sets a model's labels can be mapped onto (`infer.to_classes`): `--classes NAME`.
CLASS_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {"dcase2018": DCASE2018_AUDIOSET_NAMES}


def dcase2018() -> LabelSet:
    """The 10 DCASE 2018 task 4 classes, alphabetical as in the challenge."""
    return LabelSet(tuple(DCASE2018_AUDIOSET_NAMES))


def class_columns(labels: Sequence[str], groups: Mapping[str, Sequence[str]]) -> dict[str, list[int]]:
    """For each coarser class of `groups`, the indices in `labels` of its labels, by name (the
    class's own name included, so a model trained on the coarse classes keeps its scores): what
    `map_classes` takes. A class none of whose labels the model has raises `InputError`."""
    index = {name: k for k, name in enumerate(labels)}
    columns = {}
    for cls, names in groups.items():
        members = sorted({index[n] for n in (cls, *names) if n in index})
        if not members:
            raise InputError(f"class {cls!r}: the model has none of its labels {list(names)}")
        columns[cls] = members
    return columns


def map_classes(frames: np.ndarray, groups: Mapping[str, Sequence[int]]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Scores `[..., C]` of coarser classes, each the max over a group of the model's class indices
    (docs/protocol.md §5: a DCASE class's score is the max over its AudioSet labels,
    `DCASE2018_AUDIOSET_NAMES`; `infer.to_classes` applies it by label name)."""
    frames = np.asarray(frames)
    mapped = np.stack([frames[..., list(indices)].max(axis=-1) for indices in groups.values()], axis=-1)
    return mapped, tuple(groups)
