"""The Table-1 models as configurations of one `AudioResNet` (docs/protocol.md §2): a trunk of
residual blocks (`blocks.py`) and a pooling head (`heads.py`); each variant is a line of `VARIANTS`.

>>> import torch
>>> from audioscene import models
>>> model = models.create("resnet_b_att", n_classes=10, width=16)
>>> out = model(torch.zeros(2, 998, 64))
>>> out["clipwise"].shape, out["framewise"].shape, out["frame_hop"]
(torch.Size([2, 10]), torch.Size([2, 32, 10]), 0.32)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from torch import Tensor, nn

from ..errors import InputError, check_number
from ..features import FrontendConfig
from .blocks import ResNetTrunk, time_strides
from .heads import HEADS
from .registry import register_family


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (stored in every checkpoint)."""

    name: str
    family: str = "resnet"  # the registry entry that rebuilds it (`registry.from_config`)
    n_classes: int = 527
    width: int = 64  # base channels of the first stage (64 in the paper)
    block: str = "bottleneck"  # "basic" (ResNet34) or "bottleneck" (ResNet50/101)
    layers: tuple[int, ...] = (3, 4, 6, 3)
    stem_stride: int = 2
    time_stride: int | None = None  # down-sampling in time; default the trunk's (32): 8 gives 0.08 s frames
    pooling: str = "global"  # "global" or "attention"
    example_frames: int | None = None  # cut the input into examples of this many frames (ResNet A)
    n_mels: int = 64
    input_hop_s: float = 0.01  # hop of the log-mel frames fed to the model
    input_norm: bool = False  # a BatchNorm over the mel bands at the input, as PANNs' bn0 (recipe.py)
    # Inputs are padded with the front end's value for digital silence, not 0 (a loud log-mel value).
    pad_value: float = FrontendConfig().silence

    def __post_init__(self):
        for name in ("width", "stem_stride", "n_mels"):
            check_number(name, getattr(self, name), integer=True, low=1)
        if self.time_stride is not None and self.example_frames:
            raise InputError("time_stride does not apply to models that cut examples (example_frames)")
        if self.time_stride is not None:
            check_number("time_stride", self.time_stride, integer=True, low=1)
            try:
                time_strides([self.stem_stride, 2] + [2] * (len(self.layers) - 1), self.time_stride)
            except ValueError as exc:
                raise InputError(str(exc)) from None
        if self.example_frames is not None:
            check_number("example_frames", self.example_frames, integer=True, low=1)
        if self.block not in ("basic", "bottleneck") or self.pooling not in HEADS:
            raise InputError(f"block {self.block!r} / pooling {self.pooling!r}: expected basic or bottleneck / "
                             f"{' or '.join(HEADS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def frontend_settings(frontend: FrontendConfig) -> dict:
        """The fields that follow the front end: input bands, frame hop, the padding value."""
        return dict(n_mels=frontend.n_mels, input_hop_s=frontend.hop_ms / 1000, pad_value=frontend.silence)


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


@register_family("resnet", ModelConfig, VARIANTS)
class AudioResNet(nn.Module):
    """Log-mel `[B, T, n_mels]` → `{"clipwise": [B, K], "framewise": [B, T', K], "frame_hop": s}`.

    Attention models also return `"attention"` `[B, T', K]` (weights summing to 1 over time).
    With `input_norm`, each mel band is normalised by a BatchNorm first (PANNs' `bn0`); `augment`
    (training only, e.g. SpecAugment: the recipe's feature stage) transform the log-mel after that
    normalisation, before the trunk.
    With `example_frames` set (ResNet A), the input is cut into examples of that many frames (the
    last one padded: a 10 s clip gives 11 examples, as docs/protocol.md §2 has it, rather than dropping the
    last 0.38 s as VGGish does), which run as one batch; clipwise is the mean of the example
    predictions and framewise is the per-example prediction. Inputs shorter than the model needs
    are padded. Padding uses `pad_value`, the log-mel of digital silence, so it sounds like silence.
    """

    head_prefix = "head."  # the classifier's state-dict keys: replaced when fine-tuning onto new labels
    takes_audio = exportable = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.trunk = ResNetTrunk(config.block, config.layers, config.width, in_channels=1,
                                 stem_stride=config.stem_stride, time_stride=config.time_stride)
        self.head = HEADS[config.pooling](self.trunk.out_channels, config.n_classes)
        self.input_norm = nn.BatchNorm1d(config.n_mels) if config.input_norm else None

    @property
    def min_frames(self) -> int:
        """Input frames per output frame: shorter inputs are padded to this many."""
        return self.config.example_frames or self.trunk.time_stride

    @property
    def frame_hop(self) -> float:
        """Seconds between framewise outputs."""
        return round(self.min_frames * self.config.input_hop_s, 6)

    @property
    def normalises_input(self) -> bool:
        return self.input_norm is not None

    def forward(self, logmel: Tensor, augment: Sequence[Callable[[Tensor], Tensor]] = ()) -> dict[str, Tensor | float]:
        if logmel.dim() != 3 or logmel.shape[2] != self.config.n_mels:
            raise InputError(f"expected log-mel of shape [batch, frames, {self.config.n_mels}], "
                             f"got {tuple(logmel.shape)}")
        batch, n_frames, n_mels = logmel.shape
        unit = self.min_frames
        padded = -(-n_frames // unit) * unit if self.config.example_frames else max(n_frames, unit)
        x = nn.functional.pad(logmel, (0, 0, 0, padded - n_frames), value=self.config.pad_value)  # (batch, time, mel)
        if self.input_norm is not None:
            x = self.input_norm(x.transpose(1, 2)).transpose(1, 2)
        for transform in augment:
            x = transform(x)
        if self.config.example_frames:
            x = x.reshape(-1, unit, n_mels)  # (batch · examples, example_frames, mel)
        out = self.head(self.trunk(x[:, None]))  # trunk input (batch, 1, time, mel)
        if self.config.example_frames:
            examples = out["clipwise"].reshape(batch, -1, self.config.n_classes)  # (batch, examples, classes)
            vectors = out["embedding"].reshape(batch, examples.shape[1], -1)  # (batch, examples, channels)
            out = {"clipwise": examples.mean(dim=1), "framewise": examples, "embedding": vectors.mean(dim=1),
                   "frame_embedding": vectors}
        return {**out, "frame_hop": self.frame_hop}
