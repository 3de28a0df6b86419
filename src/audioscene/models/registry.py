"""The Table-1 models as configurations of one `AudioResNet`, the embedding baselines of Table 2
(`embedding`), and `create(name, ...)` to build any of them.

>>> import torch
>>> from audioscene import models
>>> model = models.create("resnet_b_att", n_classes=10, width=16)
>>> out = model(torch.zeros(2, 998, 64))
>>> out["clipwise"].shape, out["framewise"].shape, out["frame_hop"]
(torch.Size([2, 10]), torch.Size([2, 32, 10]), 0.32)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable, Protocol

from torch import Tensor, nn

from ..errors import InputError, check_number
from ..features import FrontendConfig
from . import embedding
from .blocks import ResNetTrunk
from .embedding import EmbeddingModel, EmbeddingModelConfig
from .heads import HEADS


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (stored in every checkpoint)."""

    name: str
    family: str = "resnet"  # which builder in FAMILIES rebuilds it (see `from_config`)
    n_classes: int = 527
    width: int = 64  # base channels of the first stage (64 in the paper)
    block: str = "bottleneck"  # "basic" (ResNet34) or "bottleneck" (ResNet50/101)
    layers: tuple[int, ...] = (3, 4, 6, 3)
    stem_stride: int = 2
    pooling: str = "global"  # "global" or "attention"
    example_frames: int | None = None  # cut the input into examples of this many frames (ResNet A)
    n_mels: int = 64
    input_hop_s: float = 0.01  # hop of the log-mel frames fed to the model
    input_norm: bool = False  # a BatchNorm over the mel bands at the input, as PANNs' bn0 (recipe.py)
    # Inputs are padded with the front end's value for digital silence, not 0 (a loud log-mel value).
    pad_value: float = FrontendConfig().silence

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        return cls(**{**values, "layers": tuple(values["layers"])})


RESNET34 = dict(block="basic", layers=(3, 4, 6, 3))
RESNET50 = dict(block="bottleneck", layers=(3, 4, 6, 3))
RESNET101 = dict(block="bottleneck", layers=(3, 4, 23, 3))

VARIANTS: dict[str, dict] = {
    "resnet_a": dict(**RESNET50, pooling="global", stem_stride=1, example_frames=96),
    "resnet_b": dict(**RESNET50, pooling="global"),
    "resnet_b_att": dict(**RESNET50, pooling="attention"),
    "resnet_c_att": dict(**RESNET34, pooling="attention"),
    "resnet_d_att": dict(**RESNET101, pooling="attention"),
}


class AudioResNet(nn.Module):
    """Log-mel `[B, T, n_mels]` → `{"clipwise": [B, K], "framewise": [B, T', K], "frame_hop": s}`.

    Attention models also return `"attention"` `[B, T', K]` (weights summing to 1 over time).
    With `input_norm`, each mel band is normalised by a BatchNorm first (PANNs' `bn0`); `augment`
    (training only, e.g. SpecAugment from `recipe.Recipe.masking`) transforms the log-mel after that
    normalisation, before the trunk.
    With `example_frames` set (ResNet A), the input is cut into examples of that many frames (the
    last one padded: a 10 s clip gives 11 examples, as docs/protocol.md §2 has it, rather than dropping the
    last 0.38 s as VGGish does), which run as one batch; clipwise is the mean of the example
    predictions and framewise is the per-example prediction. Inputs shorter than the model needs
    are padded. Padding uses `pad_value`, the log-mel of digital silence, so it sounds like silence.
    """

    head_prefix = "head."  # the classifier's state-dict keys: replaced when fine-tuning onto new labels
    input_kind = "logmel"

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.trunk = ResNetTrunk(config.block, config.layers, config.width, in_channels=1,
                                 stem_stride=config.stem_stride)
        self.head = HEADS[config.pooling](self.trunk.out_channels, config.n_classes)
        self.input_norm = nn.BatchNorm1d(config.n_mels) if config.input_norm else None

    @property
    def min_frames(self) -> int:
        """Input frames per output frame: shorter inputs are padded to this many."""
        return self.config.example_frames or self.trunk.stride

    @property
    def frame_hop(self) -> float:
        """Seconds between framewise outputs."""
        return round(self.min_frames * self.config.input_hop_s, 6)

    @property
    def normalises_input(self) -> bool:
        return self.input_norm is not None

    def forward(self, logmel: Tensor, augment: Callable[[Tensor], Tensor] | None = None) -> dict[str, Tensor | float]:
        if logmel.dim() != 3 or logmel.shape[2] != self.config.n_mels:
            raise InputError(f"expected log-mel of shape [batch, frames, {self.config.n_mels}], "
                             f"got {tuple(logmel.shape)}")
        batch, n_frames, n_mels = logmel.shape
        unit = self.min_frames
        padded = -(-n_frames // unit) * unit if self.config.example_frames else max(n_frames, unit)
        x = nn.functional.pad(logmel, (0, 0, 0, padded - n_frames), value=self.config.pad_value)  # (batch, time, mel)
        if self.input_norm is not None:
            x = self.input_norm(x.transpose(1, 2)).transpose(1, 2)
        if augment is not None:
            x = augment(x)
        if self.config.example_frames:
            x = x.reshape(-1, unit, n_mels)  # (batch · examples, example_frames, mel)
        out = self.head(self.trunk(x[:, None]))  # trunk input (batch, 1, time, mel)
        if self.config.example_frames:
            examples = out["clipwise"].reshape(batch, -1, self.config.n_classes)  # (batch, examples, classes)
            out = {"clipwise": examples.mean(dim=1), "framewise": examples}
        return {**out, "frame_hop": self.frame_hop}


def available(family: str | None = None) -> list[str]:
    """Names accepted by `create`: the Table-1 ResNets ("resnet" family), then the embedding
    baselines ("embedding"), or only those of `family`."""
    names = {"resnet": list(VARIANTS), "embedding": list(embedding.VARIANTS)}
    return names[family] if family else [name for group in names.values() for name in group]


def config_for(name: str, n_classes: int = 527, width: int | None = None, frontend: FrontendConfig | None = None,
               input_norm: bool | None = None, **overrides) -> ModelConfig | EmbeddingModelConfig:
    """The config of a named model (`width`: the variant's own by default), with any field
    overridden; a ResNet's input bands, frame hop and padding follow `frontend` if given, and its
    input normalisation `input_norm` if given (embedding models keep their paper's own)."""
    check_number("n_classes", n_classes, integer=True, low=1)
    if width is not None:
        check_number("width", width, integer=True, low=1)
    if name in VARIANTS:
        if frontend is not None:
            overrides = dict(n_mels=frontend.n_mels, input_hop_s=frontend.hop_ms / 1000, pad_value=frontend.silence,
                             **overrides)
        if input_norm is not None:
            overrides = dict(input_norm=input_norm, **overrides)
        config = ModelConfig(name=name, n_classes=n_classes, width=width or 64, **VARIANTS[name])
    elif name in embedding.VARIANTS:
        config = EmbeddingModelConfig(name=name, n_classes=n_classes, **embedding.VARIANTS[name])
        config = config if width is None else replace(config, width=width)
    else:
        raise InputError(f"unknown model {name!r}; available: {', '.join(available())}")
    try:
        return replace(config, **overrides)
    except TypeError as exc:
        raise InputError(f"bad model override for {name!r}: {exc}") from None


def create(name: str, n_classes: int = 527, width: int | None = None, **overrides) -> AudioModel:
    """Build a named model: a Table-1 ResNet (`resnet_a`, `resnet_b`, `resnet_b_att`, `resnet_c_att`,
    `resnet_d_att`) or an embedding baseline (`yu_multilevel_att`, `kong_att`)."""
    return from_config(config_for(name, n_classes, width, **overrides))


class AudioModel(Protocol):
    """What the package needs of a model family (training, evaluation, tagging, export): a config
    that serialises with a `family` key, the hop of its frame outputs, the fewest input frames it
    takes, the prefix of its classifier's state-dict keys, its input (`input_kind`: "logmel" from
    the front end, or "embeddings", AudioSet's released features), whether it normalises its input
    (`normalises_input`) and a forward pass from `[B, T, features]` to `{"clipwise": [B, K],
    "framewise": [B, T', K]}`; a log-mel model's forward also takes `augment`, a training-time
    transform of its (normalised) log-mel."""

    config: ModelConfig | EmbeddingModelConfig
    head_prefix: str
    input_kind: str
    normalises_input: bool

    @property
    def frame_hop(self) -> float: ...

    @property
    def min_frames(self) -> int: ...

    def __call__(self, logmel: Tensor) -> dict[str, Tensor | float]: ...


# family → builder from a stored config dict; a new family (e.g. the embedding baselines) adds itself here
FAMILIES: dict[str, Callable[[dict], AudioModel]] = {
    "resnet": lambda values: AudioResNet(ModelConfig.from_dict(values)),
    "embedding": lambda values: EmbeddingModel(EmbeddingModelConfig.from_dict(values)),
}


def frontend_for(model: AudioModel, config: FrontendConfig) -> nn.Module:
    """What turns a data set's items into the model's input: the log-mel front end, or nothing for
    models on embeddings (their data already holds the input)."""
    from ..features import LogMel

    return LogMel(config) if model.input_kind == "logmel" else nn.Identity()


def from_config(config: ModelConfig | dict) -> AudioModel:
    """Rebuild a model from a stored config (as saved in checkpoints), by its `family`."""
    if isinstance(config, ModelConfig):
        return AudioResNet(config)
    if isinstance(config, EmbeddingModelConfig):
        return EmbeddingModel(config)
    family = config.get("family", "resnet")  # checkpoints from before families were resnets
    if family not in FAMILIES:
        raise InputError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[family](config)
