"""The model registry: every family registers itself once, and everything else (training,
evaluation, tagging, export, the CLI) builds models and asks about them through this module.

A family is a model class and its config dataclass, registered with its named variants:

    @register_family("toy", ToyConfig, {"toy_small": dict(width=4)})
    class ToyModel(nn.Module):
        takes_audio = exportable = True
        head_prefix = "head."
        ...

The config dataclass has the fields `name`, `family` and `n_classes` (the rest are the family's own
settings, set per run by `model_args`, e.g. `--model-arg width=16`), `to_dict()`, and
`frontend_settings(frontend) -> dict`: the fields that follow the log-mel front end (none for models
that do not take audio). The model class meets `AudioModel`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Protocol

from torch import Tensor, nn

from ..errors import ConfigError, InputError, check_number
from ..features import FrontendConfig
from ..typed import from_values

FIXED_SETTINGS = ("name", "family", "n_classes")  # set by the registry, never by model_args


class AudioModel(Protocol):
    """What the package needs of a model family.

    Capabilities, asked for rather than inferred from names: `takes_audio` (its input is the log-mel
    front end's output, so it tags audio files and trains on audio data; otherwise its data holds
    its input, e.g. AudioSet's released embeddings), `exportable` (`export-onnx` can write it), the
    hop of its frame outputs `frame_hop`, the fewest input frames it takes `min_frames`, whether it
    normalises its input `normalises_input`, the prefix of its classifier's state-dict keys
    `head_prefix` (replaced when fine-tuning onto new labels). Its forward takes `[B, T, features]`
    (and, when it takes audio, `augment`: the training-time transforms of its normalised log-mel, applied
    in order: the recipe's feature stage) and
    returns `{"clipwise": [B, K], "framewise": [B, T', K], "frame_hop": s}` and, for the families of the
    package, `"embedding"` `[B, D]` and `"frame_embedding"` `[B, T', D]`: the vectors its clip and frame
    outputs are read from (before the classifier), one per output frame."""

    config: object
    head_prefix: str
    takes_audio: bool
    exportable: bool
    normalises_input: bool

    @property
    def frame_hop(self) -> float: ...

    @property
    def min_frames(self) -> int: ...

    def __call__(self, features: Tensor) -> dict[str, Tensor | float]: ...


@dataclass(frozen=True)
class Family:
    """A registered model family: its model and config classes and its named variants (each a dict
    of config fields)."""

    name: str
    model_class: type
    config_class: type
    variants: dict[str, dict]

    @property
    def takes_audio(self) -> bool:
        return self.model_class.takes_audio


FAMILIES: dict[str, Family] = {}


def register_family(name: str, config_class: type, variants: dict[str, dict]) -> Callable[[type], type]:
    """Class decorator: register a model class as family `name` with its config class and variants."""
    def register(model_class: type) -> type:
        taken = [v for v in variants if any(v in family.variants for family in FAMILIES.values() if family.name != name)]
        if taken:
            raise ValueError(f"model name {taken[0]!r} belongs to another family already")
        FAMILIES[name] = Family(name, model_class, config_class, dict(variants))
        return model_class
    return register


def available(family: str | None = None) -> list[str]:
    """Names accepted by `create`, family by family in registration order (or only `family`'s)."""
    return [name for entry in FAMILIES.values() if family in (None, entry.name) for name in entry.variants]


def family_of(model: str | dict) -> Family:
    """The family of a model name, or of a stored config dict (as saved in checkpoints, by its
    `family` key): ask it what the model can do without building the model."""
    if isinstance(model, dict):
        family = FAMILIES.get(model.get("family"))
        if family is None:
            raise InputError(f"unknown model family {model.get('family')!r}; known: {', '.join(FAMILIES)}")
        return family
    name = model
    for family in FAMILIES.values():
        if name in family.variants:
            return family
    raise InputError(f"unknown model {name!r}; available: {', '.join(available())}")


def settings(family: Family) -> list[str]:
    """The settings `model_args` may set for a family."""
    return [f.name for f in fields(family.config_class) if f.name not in FIXED_SETTINGS]


def variant_config(name: str, n_classes: int = 527, frontend: FrontendConfig | None = None,
               input_norm: bool | None = None, **model_args):
    """The config of a named model: its variant's settings, those that follow `frontend` (when it
    takes audio), its input normalisation `input_norm` if given and the family has one (models on
    embeddings keep their paper's own), then `model_args`, each checked against the config's field
    types."""
    check_number("n_classes", n_classes, integer=True, low=1)
    family = family_of(name)
    values = {**family.variants[name], "name": name, "family": family.name, "n_classes": n_classes}
    if family.takes_audio:
        if frontend is not None:
            values.update(family.config_class.frontend_settings(frontend))
        if input_norm is not None and "input_norm" in settings(family):
            values["input_norm"] = input_norm
    fixed = sorted(set(model_args) & set(FIXED_SETTINGS))
    unknown = sorted(set(model_args) - set(settings(family)))
    if fixed or unknown:
        raise ConfigError(f"model_args {', '.join(fixed or unknown)}: not a setting of the {family.name} family "
                          f"({name}); its settings: {', '.join(settings(family))}")
    return from_values(family.config_class, {**values, **model_args})


def create(name: str, n_classes: int = 527, **model_args) -> AudioModel:
    """Build a named model, e.g. a Table-1 ResNet (`resnet_b_att`, …) or an embedding baseline
    (`yu_multilevel_att`, `kong_att`); `model_args` override the variant's settings."""
    return from_config(variant_config(name, n_classes, **model_args))


def stored_config(config: dict):
    """A stored config dict (as saved in checkpoints) as its family's config dataclass, each value
    checked, without building the model."""
    family = family_of(config)
    return from_values(family.config_class, {"family": family.name, **config})


def from_config(config) -> AudioModel:
    """Build a model from its config (`variant_config`) or a stored config dict (`stored_config`)."""
    config = stored_config(config) if isinstance(config, dict) else config
    return FAMILIES[config.family].model_class(config)


def run_settings(config) -> dict:
    """The family settings of a stored config that differ from its variant's (what `model_args`
    must say to rebuild it), leaving out those that follow the front end and the input normalisation
    (a run sets those itself)."""
    values = config if isinstance(config, dict) else config.to_dict()
    family = family_of(values["name"])
    default = variant_config(values["name"], values.get("n_classes", 527)).to_dict()
    follow = set(family.config_class.frontend_settings(FrontendConfig())) | {"input_norm"}
    return {key: value for key, value in values.items()
            if key in settings(family) and key not in follow and value != default.get(key)
            and not (isinstance(value, list) and tuple(value) == default.get(key))}


def frontend_for(model: AudioModel, config: FrontendConfig) -> nn.Module:
    """What turns a data set's items into the model's input: the log-mel front end, or nothing for
    models whose data holds their input (e.g. embeddings)."""
    from ..features import LogMel

    return LogMel(config) if model.takes_audio else nn.Identity()
