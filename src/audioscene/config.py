"""`TrainConfig`: everything a training run depends on, as one typed, validated dataclass.

Each field carries its command-line view in its metadata (help text, flag names, choices), so
`audioscene train` generates its flags from the fields and TOML files use the field names (a
`[frontend]` table for the front end). Values are checked on construction: types from the
annotations (an int where a float is expected becomes a float), ranges from `CONFIG_RANGES`,
choices from the metadata; a bad value raises `ConfigError` naming the key.
"""

from __future__ import annotations

import os
import tomllib
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Callable

from . import models
from .devices import check_device
from .errors import ConfigError, InputError, check_number
from .features import FrontendConfig
from .data.spec import DATA_FORMS, DataSpec, forms_help
from .metrics import SCORES
from .recipe import RECIPES, ingredient_settings, preset_value, resolve_settings
from .typed import MISMATCH, conform, type_name


def _field(default, help: str, *flags: str, choices: tuple[str, ...] | Callable[[], list[str]] | None = None):
    """A config field with the command line's view of it: help text, flag names (default
    `--field-name`) and choices (or a function giving them, asked when they are checked, e.g. the
    models registered so far). `audioscene train` generates its flags from these."""
    metadata = {"help": help, "flags": flags, "choices": choices}
    if isinstance(default, (FrontendConfig, dict)):
        return field(default_factory=type(default), metadata=metadata)
    return field(default=default, metadata=metadata)


SAMPLERS = ("shuffle", "balanced")


# Allowed ranges of the numeric TrainConfig fields (types come from the annotations).
# Fields of earlier versions that are model settings now (`model_args`): TOML keys and flags that
# name them are refused with where they go (`from_dict`, `cli.arguments.RETIRED_FLAGS`).
MOVED_TO_MODEL_ARGS = ("width", "stem_stride")

CONFIG_RANGES: dict[str, dict] = {
    "epochs": dict(integer=True, low=1),
    "batch_size": dict(integer=True, low=1), "eval_batch_size": dict(integer=True, low=1),
    "micro_batch_size": dict(integer=True, low=1), "lr": dict(low=0, low_open=True), "weight_decay": dict(low=0),
    "seed": dict(integer=True, low=0), "clip_seconds": dict(low=0, low_open=True), "workers": dict(integer=True, low=0),
    "timeout_s": dict(low=0, low_open=True), "kd_lambda": dict(low=0, high=1),
    "kd_temperature": dict(low=0, low_open=True), "balance_buffer": dict(integer=True, low=1),
    "strong_weight": dict(low=0), "consistency_weight": dict(low=0), "consistency_rampup": dict(low=0, high=1),
    "unlabelled_share": dict(low=0, high=0.9),
}


@dataclass(frozen=True, init=False)
class TrainConfig:
    """Everything a training run depends on; defaults are the paper's (batch size is ours).

    The settings of the recipe's ingredients (`recipe.INGREDIENTS`: `mixup_alpha`, `ema_decay`, ...)
    are keyword arguments and attributes like the fields, stored together in `recipe_settings`,
    each resolved from the arguments, the recipe and the ingredient's default."""

    train_data: str = _field("", f"training data: {forms_help(tuple(DATA_FORMS))}", "--train-data", "--data")
    eval_data: str = _field("", f"evaluation data, scored after every epoch: {forms_help()}")
    labels_csv: str = _field("", "for folder: training data, its CSV filename,labels (labels ;-separated names or "
                                 "mids; default DIR/labels.csv)", "--labels")
    eval_labels_csv: str = _field("", "for folder: evaluation data, its CSV filename,labels (default DIR/labels.csv)",
                                  "--eval-labels")
    sampler: str | None = _field(None, "shuffle, or balanced: classes drawn in turn, for imbalanced label sets (shards: "
                                     "within a buffer of --balance-buffer clips per worker)", choices=SAMPLERS)
    balance_buffer: int = _field(1000, "shards with the balanced sampler: clips each loader worker holds to draw "
                                       "classes in turn from")
    init: str = _field("", "start from this checkpoint: its trunk, and its head if the labels are the same "
                           "(fine-tuning)")
    skip_corrupt: bool = _field(False, "shards and embeddings: skip (and log) clips that cannot be decoded instead of "
                                       "stopping")
    out_dir: str = _field("runs/run", "run folder for checkpoints and metrics", "--out")
    model: str = _field("resnet_b_att", "a registered model: a Table-1 ResNet, or an embedding baseline of Table 2 "
                                        "(on embeddings: data)", choices=models.available)
    model_args: dict[str, int | float | str | bool | list] = _field(
        {}, "the model family's own settings (TOML table [model_args]), e.g. width = 16 (a ResNet's base channels, "
            "the paper's 64; an embedding model's hidden units), stem_stride = 1; default: the variant's",
        "--model-arg")
    epochs: int = _field(50, "number of epochs")
    batch_size: int = _field(32, "clips per optimizer step (the global batch under torchrun)")
    lr: float = _field(1e-4, "Adam learning rate")
    weight_decay: float = _field(5e-7, "Adam weight decay")
    betas: tuple[float, float] = _field((0.95, 0.999), "Adam betas, as B1,B2")
    seed: int = _field(0, "random seed: the same seed and data give the same weights")
    clip_seconds: float = _field(10.0, "clips are cropped or padded to this length")
    frontend: FrontendConfig = _field(FrontendConfig(), "the log-mel front end (TOML table [frontend]): data is "
                                                       "decoded at its rate, the model takes its bands and the "
                                                       "output frame hop follows its hop")
    workers: int = _field(0, "data loader worker processes")
    device: str = _field("auto", "auto, cpu, cuda, cuda:N or mps")
    amp: bool = _field(True, "mixed precision on CUDA (bf16 where supported, else fp16 with loss scaling)")
    cpu_bf16: bool = _field(False, "bf16 autocast on CPU (slower than float32 on CPUs without bf16 units)")
    channels_last: bool = _field(True, "channels_last memory format (faster on CPU for every Table-1 model)")
    compile: bool = _field(False, "torch.compile the model (no gain measured on CPU, see bench_train.py)")
    eval_batch_size: int = _field(64, "clips per batch when evaluating")
    # torchrun: batch_size stays the global batch per optimizer step; each rank runs micro-batches of
    # micro_batch_size (default batch_size / ranks) and accumulates the rest
    micro_batch_size: int | None = _field(None, "clips per forward pass on each process; the rest of the batch is "
                                                "accumulated (default: batch size / processes)")
    sync_batchnorm: bool = _field(False, "BatchNorm statistics over all processes (torchrun; CUDA only)")
    timeout_s: float = _field(600.0, "seconds a process waits for the others before failing")
    best_metric: str = _field("mAP", "the eval score that picks the best epoch", choices=lambda: tuple(SCORES))
    # --- the recipe (recipe/): each ingredient off in the paper recipe ---------------------------------
    recipe: str = _field("paper", "paper (the paper's recipe) or modern (input normalisation, balanced sampling, "
                                  "mixup, SpecAugment, cosine schedule with warm-up, EMA of the weights): the values "
                                  "of the recipe flags below that are not given (default: the recipe's)",
                         choices=tuple(RECIPES))
    input_norm: bool | None = _field(None, "log-mel models: a BatchNorm over the mel bands at the model's input "
                                           "(PANNs' bn0); embedding models keep their paper's own")
    # one key (and flag) per setting of a registered ingredient (recipe.ingredient_settings())
    recipe_settings: dict[str, int | float | str | bool] = _field({}, "the recipe ingredients' settings")
    teacher: str = _field("", "knowledge distillation: a teacher from `audioscene predict` (a store folder, or an "
                              ".npz of clip keys and probabilities)")
    kd_lambda: float = _field(0.0, "weight of the teacher's targets in the loss: (1 - l) BCE(labels) + l BCE(teacher)")
    kd_temperature: float = _field(1.0, "teacher logits are divided by this before the sigmoid")
    # --- detection from strong labels (strong.py) --------------------------------------------------------
    strong_labels: str = _field("", "a DCASE event TSV (filename onset offset event_label; file names relative to "
                                    "the training data's audio folder): the clips named there also learn their frame "
                                    "outputs (frame-level BCE on the model's output grid)")
    strong_weight: float = _field(1.0, "weight of the frame-level loss of strongly labelled clips beside the clip loss")
    unlabelled_data: str = _field("", "clips without labels for the mean teacher: DIR, folder:DIR (every audio file "
                                      "under it) or dcase2018:ROOT:unlabel_in_domain", "--unlabelled-data")
    consistency_weight: float = _field(0.0, "mean teacher (Tarvainen & Valpola 2017): weight of the consistency loss, "
                                            "the squared difference of the student's clip and frame outputs from the "
                                            "teacher's (the moving average of the weights: needs --ema-decay); 0: off")
    consistency_rampup: float = _field(0.3, "share of all optimizer steps over which the consistency weight rises "
                                            "(exp(-5 (1 - t)^2)) to its value")
    unlabelled_share: float = _field(0.5, "share of each batch drawn from the unlabelled clips; an epoch passes once "
                                          "over the labelled clips, and their loss is the mean over the labelled "
                                          "clips of a batch")

    def __init__(self, **values):
        settings = dict(values.pop("recipe_settings", None) or {})
        known = {item.name for item in fields(self)}
        unknown = sorted(set(values) - known - set(ingredient_settings()))
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(unknown)}; known keys: "
                              f"{', '.join(sorted(known - {'recipe_settings'} | set(ingredient_settings())))}")
        settings.update({name: values.pop(name) for name in list(values) if name not in known})
        for item in fields(self):
            default = item.default_factory() if item.default is MISSING else item.default
            object.__setattr__(self, item.name, values.get(item.name, default))
        object.__setattr__(self, "recipe_settings", settings)
        self.__post_init__()

    def __getattr__(self, name: str):
        """An ingredient's setting (called only for names that are not fields)."""
        settings = self.__dict__.get("recipe_settings", {})
        if name in settings:
            return settings[name]
        raise AttributeError(f"TrainConfig has no field or recipe setting {name!r}")

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        for name in ("sampler", "input_norm"):  # unset, they take the recipe's value
            if getattr(self, name) is None:
                object.__setattr__(self, name, preset_value(self.recipe, name))
        object.__setattr__(self, "recipe_settings", resolve_settings(self.recipe_settings, self.recipe))
        hints = typing.get_type_hints(type(self))
        for item in fields(self):
            value = getattr(self, item.name)
            try:
                converted = conform(value, hints[item.name])
            except ConfigError as exc:  # a nested config names its own key
                raise ConfigError(f"{item.name}: {exc}") from None
            if converted is MISMATCH:
                raise ConfigError(f"{item.name} = {value!r}: expected {type_name(hints[item.name])}")
            object.__setattr__(self, item.name, converted)  # e.g. an int lr becomes a float
            if item.name in CONFIG_RANGES and converted is not None:
                try:
                    check_number(item.name, converted, **CONFIG_RANGES[item.name])
                except InputError as exc:
                    raise ConfigError(str(exc)) from None
            choices = choices_of(item)
            if choices and converted not in choices:
                raise ConfigError(f"unknown {item.name} {converted!r}; choose one of {', '.join(choices)}")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ConfigError(f"betas = {self.betas}: expected two numbers in [0, 1)")
        if not models.family_of(self.model).takes_audio and self.frontend != FrontendConfig():
            raise ConfigError(f"front-end settings do not apply to {self.model}: it does not take audio (leave out "
                              "the front-end flags and the [frontend] table)")
        try:
            self.model_config(1)  # model_args named and typed as the family's settings
        except (InputError, ConfigError) as exc:
            raise ConfigError(str(exc) if str(exc).startswith("model_args") else f"model_args: {exc}") from None
        specs = (("train_data", self.labels_csv), ("eval_data", self.eval_labels_csv), ("unlabelled_data", ""))
        object.__setattr__(self, "_specs", {key: DataSpec.parse(getattr(self, key), labels) for key, labels in specs
                                            if getattr(self, key)})  # parsed once, here
        if self.kd_lambda > 0 and not self.teacher:
            raise ConfigError("kd_lambda > 0 needs a teacher file (--teacher, from `audioscene predict`)")
        if self.consistency_weight > 0 and self.ema_decay == 0:
            raise ConfigError("the mean teacher is the moving average of the weights: give --ema-decay (e.g. 0.999) "
                              "with --consistency-weight")
        if self.unlabelled_data and self.consistency_weight == 0:
            raise ConfigError("unlabelled clips teach only through the mean teacher; give --consistency-weight "
                              "(e.g. 2) and --ema-decay")
        if self.teacher and self.kd_lambda == 0:
            raise ConfigError("a teacher file without kd_lambda teaches nothing; give --kd-lambda (e.g. 0.5), the "
                              "weight of the teacher's targets in the loss")
        check_device(self.device)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        """A config from plain values (TOML, stored checkpoints). A model setting given as a key
        of its own (`width = 8`, as before `model_args`) is refused with where it goes now."""
        retired = [key for key in MOVED_TO_MODEL_ARGS if key in values]
        if retired:
            raise ConfigError(f"{source}: {retired[0]} is a model setting now: put it under [model_args] "
                              f"({retired[0]} = {values[retired[0]]!r})")
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike, **overrides) -> "TrainConfig":
        """Read a TOML file of `key = value` lines (the field names; a `[frontend]` table for the
        front end); `overrides` win, key by key also inside `frontend`."""
        return cls.from_dict(_merge(_read_toml(path), overrides), source=str(path))

    @classmethod
    def for_new_run(cls, values: dict, toml: str | os.PathLike | None = None, init=None) -> "TrainConfig":
        """The configuration `audioscene train` starts: `values` (its flags) over the TOML file, if
        any (`train.configure` reads both and the checkpoint `init` names). Fine-tuning from `init`
        (a `checkpoints.Checkpoint`) without a model takes its model and settings, its front end
        (each setting given overriding it) and its input normalisation unless `input_norm` is given.
        Training and evaluation data are required."""
        merged = cls.merged(values, toml)
        if init is not None and not all(key in merged for key in ("model", "input_norm", "frontend")):
            source = init.model_config
            merged["frontend"] = {**init.frontend_config, **merged.get("frontend", {})}
            merged.setdefault("input_norm", source.get("input_norm", False))
            if "model" not in merged:
                merged["model"] = source["name"]
                merged["model_args"] = {**models.run_settings(source), **merged.get("model_args", {})}
        config = cls.from_dict(merged, source=str(toml or "command line"))
        if not (config.train_data and config.eval_data):
            raise ConfigError("need --train-data and --eval-data (or a --config that sets train_data and eval_data)")
        return config

    @staticmethod
    def merged(values: dict, toml: str | os.PathLike | None = None) -> dict:
        """`values` over the TOML file's, key by key also inside its tables."""
        return _merge(_read_toml(toml), values) if toml else dict(values)

    @property
    def train_spec(self) -> DataSpec | None:
        """`train_data` with its labels CSV, parsed (None when not set)."""
        return self._specs.get("train_data")

    @property
    def eval_spec(self) -> DataSpec | None:
        return self._specs.get("eval_data")

    @property
    def unlabelled_spec(self) -> DataSpec | None:
        return self._specs.get("unlabelled_data")

    def to_dict(self) -> dict:
        """Plain values, the recipe's settings among the fields (TOML's and checkpoints' form)."""
        values = asdict(self)
        return {**values, **values.pop("recipe_settings")}

    def model_config(self, n_classes: int):
        """The model's configuration (its family's config class): the variant's settings, those that
        follow `frontend` (input bands, frame hop, padding), `input_norm`, then `model_args`."""
        return models.variant_config(self.model, n_classes=n_classes, frontend=self.frontend, input_norm=self.input_norm,
                                 **self.model_args)


def _read_toml(path: str | os.PathLike) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read as a config file ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def _merge(values: dict, overrides: dict) -> dict:
    """`overrides` over `values`, key by key also inside the `frontend` and `model_args` tables."""
    merged = {**values, **overrides}
    for table in ("frontend", "model_args"):
        if isinstance(values.get(table), dict) and isinstance(overrides.get(table), dict):
            merged[table] = {**values[table], **overrides[table]}
    return merged


def choices_of(item) -> tuple[str, ...] | None:
    """The choices of a config field (asked now, when they come from a function)."""
    choices = item.metadata.get("choices")
    return tuple(choices()) if callable(choices) else choices
