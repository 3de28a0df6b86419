"""EfficientAT's MobileNets (Schmid, Koutini & Widmer, ICASSP 2023: "Efficient large-scale audio
tagging via transformer-to-CNN knowledge distillation") and dynamic MobileNets (DyMN, family
`efficientat_dymn`, below): MobileNetV3's inverted residual blocks
(Howard et al. 2019) on one-channel log-mel images, scaled by a width multiplier, with
squeeze-and-excitation over channels and an MLP head. Written after their `models/mn/` (public
repository fschmid56/EfficientAT, MIT licence, commit a425fdc: `models/mn/`, `models/dymn/`); the
module and parameter names follow their files', so their released weights load as they are
(`pretrained.py`).

The input is the front end of kind "efficientat" (`features.EfficientATKind`: 128 bands, 10 ms hop
at 32 kHz), laid out as their `[B, 1, bands, frames]`. A stride-2 stem and four stride-2 stages
shrink both axes 32 times. Their clip output is the head on the feature map's mean over bands and
time; our `framewise` output applies the same head to each time step of the map's mean over bands,
one frame per 32 input frames (0.32 s at their hop), so the clip output is the head on the mean of
the vectors the frame outputs come from. Probabilities are the sigmoid of the head's logits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import InputError, check_number
from .registry import register_family

# MobileNetV3-Large's blocks: (input, kernel, expanded, output channels, squeeze-excitation, hard
# swish (else ReLU), which of the config's four strides applies (None: stride 1)), before the width
# multiplier (MobileNetV3 Table 1; their `_mobilenet_v3_conf`).
BLOCKS = (
    (16, 3, 16, 16, False, False, None),
    (16, 3, 64, 24, False, False, 0),
    (24, 3, 72, 24, False, False, None),
    (24, 5, 72, 40, True, False, 1),
    (40, 5, 120, 40, True, False, None),
    (40, 5, 120, 40, True, False, None),
    (40, 3, 240, 80, False, True, 2),
    (80, 3, 200, 80, False, True, None),
    (80, 3, 184, 80, False, True, None),
    (80, 3, 184, 80, False, True, None),
    (80, 3, 480, 112, True, True, None),
    (112, 3, 672, 112, True, True, None),
    (112, 5, 672, 160, True, True, 3),
    (160, 5, 960, 160, True, True, None),
    (160, 5, 960, 160, True, True, None),
)
HEAD_CHANNELS = 1280


def make_divisible(value: float, divisor: int = 8) -> int:
    """`value` rounded to a multiple of `divisor` (at least `divisor`, never more than 10 % below),
    as MobileNets size their channels."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclass(frozen=True)
class MobileNetConfig:
    """Everything needed to rebuild one of EfficientAT's MobileNets (stored in every checkpoint)."""

    name: str
    family: str = "efficientat"
    n_classes: int = 527
    width: float = 1.0  # their width_mult: mn10 is 1.0, mn40 4.0
    strides: tuple[int, int, int, int] = (2, 2, 2, 2)  # of the four stages that downsample
    dropout: float = 0.2  # in the head, training only
    n_mels: int = 128
    input_hop_s: float = 0.01

    def __post_init__(self):
        check_number("width", self.width, low=0, low_open=True)
        check_number("dropout", self.dropout, low=0, high=1)
        if not all(stride in (1, 2) for stride in self.strides):
            raise InputError(f"strides {self.strides}: each stage's stride is 1 or 2")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def frontend_settings(frontend) -> dict:
        return dict(n_mels=frontend.n_mels, input_hop_s=frontend.hop_ms / 1000)


VARIANTS: dict[str, dict] = {f"efficientat_mn{tag}": dict(width=width) for tag, width in (
    ("04", 0.4), ("05", 0.5), ("10", 1.0), ("20", 2.0), ("30", 3.0), ("40", 4.0))}


class ConvBNAct(nn.Sequential):
    """Convolution (no bias), BatchNorm (their eps 1e-3) and an optional activation, as
    torchvision's `ConvNormActivation` that their model is built of (so the keys are `0.`, `1.`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
                 activation: type[nn.Module] | None = None):
        layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(out_channels, eps=0.001, momentum=0.01)]
        super().__init__(*layers, *([activation()] if activation else []))


class ChannelExcitation(nn.Module):
    """Squeeze-and-excitation over channels (Hu et al. 2018): the map's mean per channel → a
    bottleneck of a quarter of the channels (ReLU) → a sigmoid gate per channel. Kept in a list of
    one (`conc_se_layers`), as their concurrent block holds it."""

    def __init__(self, channels: int):
        super().__init__()
        self.conc_se_layers = nn.ModuleList([_Excitation(channels, make_divisible(channels // 4))])

    def forward(self, x: Tensor) -> Tensor:
        return self.conc_se_layers[0](x)


class _Excitation(nn.Module):
    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(channels, squeezed), nn.Linear(squeezed, channels)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * gate[:, :, None, None]


class InvertedResidual(nn.Module):
    """1×1 expansion (when it widens), a depthwise k×k convolution (strided), squeeze-excitation,
    1×1 projection; the input added back when the shape is kept."""

    def __init__(self, in_channels: int, kernel: int, expanded: int, out_channels: int, excite: bool,
                 activation: type[nn.Module], stride: int):
        super().__init__()
        layers = [ConvBNAct(in_channels, expanded, 1, activation=activation)] if expanded != in_channels else []
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, activation=activation))
        if excite:
            layers.append(ChannelExcitation(expanded))
        layers.append(ConvBNAct(expanded, out_channels, 1))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return out + x if self.residual else out


def _head(channels: int, hidden: int, config) -> nn.Sequential:
    """Their MLP head; the indices of its pooling (0) and flattening (1) kept so that the weights'
    names match theirs."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(channels, hidden), nn.Hardswish(),
                         nn.Dropout(config.dropout), nn.Linear(hidden, config.n_classes))


@register_family("efficientat", MobileNetConfig, VARIANTS)
class MobileNet(nn.Module):
    """Log-mel `[B, T, n_mels]` (front end of kind "efficientat") → `{"clipwise": [B, K],
    "framewise": [B, ceil(T / 32), K], "frame_hop": s}` (see the module docstring)."""

    takes_audio = exportable = True
    normalises_input = False  # their front end normalises with fixed constants
    head_prefix = "classifier.5."
    min_frames = 1

    def __init__(self, config: MobileNetConfig):
        super().__init__()
        self.config = config
        channels = lambda c: make_divisible(c * config.width)  # noqa: E731
        layers: list[nn.Module] = [ConvBNAct(1, channels(BLOCKS[0][0]), 3, 2, activation=nn.Hardswish)]
        for c_in, kernel, expanded, c_out, excite, hard_swish, stage in BLOCKS:
            layers.append(InvertedResidual(channels(c_in), kernel, channels(expanded), channels(c_out), excite,
                                           nn.Hardswish if hard_swish else nn.ReLU,
                                           1 if stage is None else config.strides[stage]))
        last = channels(BLOCKS[-1][3])
        layers.append(ConvBNAct(last, 6 * last, 1, activation=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.classifier = _head(6 * last, channels(HEAD_CHANNELS), config)

    def feature_map(self, x: Tensor) -> Tensor:
        """`[B, 1, bands, frames]` → the last feature map `[B, C, bands / 32, frames / 32]`."""
        return self.features(x)

    @property
    def frame_hop(self) -> float:
        downsampling = 2 * int(torch.tensor(self.config.strides).prod())
        return round(downsampling * self.config.input_hop_s, 6)

    def forward(self, logmel: Tensor, augment=()) -> dict[str, Tensor | float]:
        if logmel.dim() != 3 or logmel.shape[2] != self.config.n_mels:
            raise InputError(f"expected log-mel of shape [batch, frames, {self.config.n_mels}], "
                             f"got {tuple(logmel.shape)}")
        for transform in augment:
            logmel = transform(logmel)
        x = self.feature_map(logmel.transpose(1, 2)[:, None])  # (batch, channels, bands', frames')
        head = self.classifier[2:]
        embedding, frame_embedding = x.mean(dim=(2, 3)), x.mean(dim=2).transpose(1, 2)  # their "features", per frame
        return {"clipwise": torch.sigmoid(head(embedding)), "framewise": torch.sigmoid(head(frame_embedding)),
                "embedding": embedding, "frame_embedding": frame_embedding, "frame_hop": self.frame_hop}


# --- the dynamic MobileNets (DyMN) ---------------------------------------------------------------------

@dataclass(frozen=True)
class DynamicMobileNetConfig:
    """Everything needed to rebuild one of EfficientAT's dynamic MobileNets (Schmid et al. 2024,
    "Dynamic convolutional neural networks as efficient pre-trained audio models")."""

    name: str
    family: str = "efficientat_dymn"
    n_classes: int = 527
    width: float = 1.0
    strides: tuple[int, int, int, int] = (2, 2, 2, 2)
    dropout: float = 0.2
    kernels: int = 4  # their dyconv_k: kernels a dynamic convolution mixes
    relu_pieces: int = 2  # their dyrelu_k: linear pieces of a dynamic ReLU
    temperature: float = 1.0  # of the softmax over kernels; their released models run at 1
    n_mels: int = 128
    input_hop_s: float = 0.01

    def __post_init__(self):
        MobileNetConfig.__post_init__(self)
        check_number("kernels", self.kernels, integer=True, low=1)
        check_number("relu_pieces", self.relu_pieces, integer=True, low=1)
        check_number("temperature", self.temperature, low=0, low_open=True)

    def to_dict(self) -> dict:
        return asdict(self)

    frontend_settings = MobileNetConfig.frontend_settings


class DynamicConv(nn.Module):
    """A convolution whose kernel is, per clip, a softmax-weighted mix of `kernels` kernels, the
    weights computed from the block's context vector. `weight` keeps their layout
    `[1, 1, kernels, out · in/groups · k · k]`."""

    def __init__(self, in_channels: int, out_channels: int, context: int, kernel: int, kernels: int, temperature: float,
                 stride: int = 1, groups: int = 1):
        super().__init__()
        self.shape = (out_channels, in_channels // groups, kernel, kernel)
        self.stride, self.groups, self.temperature = stride, groups, temperature
        self.residuals = nn.Sequential(nn.Linear(context, kernels))
        weight = torch.empty(kernels, *self.shape)
        for k in range(kernels):
            nn.init.kaiming_normal_(weight[k], mode="fan_out")
        self.weight = nn.Parameter(weight.reshape(1, 1, kernels, -1))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        batch = x.shape[0]
        attention = torch.softmax(self.residuals(context) / self.temperature, dim=-1)  # (batch, kernels)
        kernel = (attention[:, None, None] @ self.weight).reshape(batch * self.shape[0], *self.shape[1:])
        # each clip its own kernel: the batch folded into the channels, one group per clip
        out = nn.functional.conv2d(x.reshape(1, -1, *x.shape[2:]), kernel, stride=self.stride,
                                   padding=(self.shape[2] - 1) // 2, groups=self.groups * batch)
        return out.reshape(batch, self.shape[0], *out.shape[2:])


class DynamicReLU(nn.Module):
    """Dy-ReLU-B (Chen et al. 2020): per clip and channel, the maximum of `pieces` linear maps
    whose slopes and offsets come from the context vector."""

    def __init__(self, channels: int, context: int, pieces: int):
        super().__init__()
        self.channels, self.pieces = channels, pieces
        self.coef_net = nn.Sequential(nn.Linear(context, 2 * pieces * channels))
        self.register_buffer("lambdas", torch.tensor([1.0] * pieces + [0.5] * pieces))
        self.register_buffer("init_v", torch.tensor([1.0] + [0.0] * (2 * pieces - 1)))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        theta = 2 * torch.sigmoid(self.coef_net(context)) - 1
        coefs = theta.reshape(-1, self.channels, 1, 1, 2 * self.pieces) * self.lambdas + self.init_v
        return (x[..., None] * coefs[..., :self.pieces] + coefs[..., self.pieces:]).max(dim=-1).values


class ContextGenerator(nn.Module):
    """The block's context: its input's means over time and over frequency, through one shared
    1×1 convolution (BatchNorm, hard swish); their mean is the context vector of the dynamic
    convolutions and ReLU, and each sequence, pooled to the block's stride, gives a coordinate
    attention over frequency and over time."""

    def __init__(self, context: int, in_channels: int, expanded: int, stride: int):
        super().__init__()
        self.joint_conv = nn.Conv2d(in_channels, context, 1, bias=False)
        self.joint_norm = nn.BatchNorm2d(context, eps=0.001, momentum=0.01)
        self.conv_f, self.conv_t = nn.Conv2d(context, expanded, 1), nn.Conv2d(context, expanded, 1)
        self.stride = stride

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        over_time, over_freq = x.mean(dim=3, keepdim=True), x.mean(dim=2, keepdim=True).transpose(2, 3)
        joint = nn.functional.hardswish(self.joint_norm(self.joint_conv(torch.cat([over_time, over_freq], dim=2))))
        freq, time = joint.split([over_time.shape[2], over_freq.shape[2]], dim=2)
        if self.stride > 1:
            freq = nn.functional.avg_pool2d(freq, (3, 1), (self.stride, 1), (1, 0))
            time = nn.functional.avg_pool2d(time, (3, 1), (self.stride, 1), (1, 0))
        return joint.mean(dim=2).flatten(1), self.conv_f(freq), self.conv_t(time).transpose(2, 3)


class DynamicBlock(nn.Module):
    """An inverted residual block with dynamic convolutions (expansion, depthwise, projection), a
    dynamic ReLU after the depthwise convolution and coordinate attention, all steered by the
    context of the block's input."""

    def __init__(self, c_in: int, kernel: int, expanded: int, c_out: int, hard_swish: bool, stride: int,
                 config: DynamicMobileNetConfig):
        super().__init__()
        context = int(np.clip(make_divisible(expanded // 4), make_divisible(32 * config.width),
                              make_divisible(128 * config.width)))
        dynamic = dict(kernels=config.kernels, temperature=config.temperature)
        self.expands = expanded != c_in
        if self.expands:
            self.exp_conv = DynamicConv(c_in, expanded, context, 1, **dynamic)
            self.exp_norm = nn.BatchNorm2d(expanded, eps=0.001, momentum=0.01)
        self.activation = nn.functional.hardswish if hard_swish else nn.functional.relu
        self.depth_conv = DynamicConv(expanded, expanded, context, kernel, stride=stride, groups=expanded, **dynamic)
        self.depth_norm = nn.BatchNorm2d(expanded, eps=0.001, momentum=0.01)
        self.depth_act = DynamicReLU(expanded, context, config.relu_pieces)
        self.proj_conv = DynamicConv(expanded, c_out, context, 1, **dynamic)
        self.proj_norm = nn.BatchNorm2d(c_out, eps=0.001, momentum=0.01)
        self.context_gen = ContextGenerator(context, c_in, expanded, stride)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        context, freq, time = self.context_gen(x)
        out = self.activation(self.exp_norm(self.exp_conv(x, context))) if self.expands else x
        out = self.depth_act(self.depth_norm(self.depth_conv(out, context)), context)
        out = out * torch.sigmoid(freq) * torch.sigmoid(time)  # coordinate attention
        out = self.proj_norm(self.proj_conv(out, context))
        return out + x if self.residual else out


DYNAMIC_VARIANTS = {f"efficientat_dymn{tag}": dict(width=width) for tag, width in (("04", 0.4), ("10", 1.0),
                                                                                    ("20", 2.0))}


@register_family("efficientat_dymn", DynamicMobileNetConfig, DYNAMIC_VARIANTS)
class DynamicMobileNet(MobileNet):
    """EfficientAT's DyMN: the MobileNet's stem, stages and head with every block dynamic (their
    `use_dy_blocks="all"`); inputs and outputs as `MobileNet`'s."""

    exportable = False
    onnx_blocker = ("each clip convolves with its own mix of kernels, a convolution whose groups grow with the "
                    "batch, which ONNX's fixed groups cannot express")

    def __init__(self, config: DynamicMobileNetConfig):
        nn.Module.__init__(self)
        self.config = config
        channels = lambda c: make_divisible(c * config.width)  # noqa: E731
        self.in_c = ConvBNAct(1, channels(BLOCKS[0][0]), 3, 2, activation=nn.Hardswish)
        self.layers = nn.ModuleList(
            DynamicBlock(channels(c_in), kernel, channels(expanded), channels(c_out), hard_swish,
                         1 if stage is None else config.strides[stage], config)
            for c_in, kernel, expanded, c_out, _, hard_swish, stage in BLOCKS)
        last = channels(BLOCKS[-1][3])
        self.out_c = ConvBNAct(last, 6 * last, 1, activation=nn.Hardswish)
        self.classifier = _head(6 * last, channels(HEAD_CHANNELS), config)

    def feature_map(self, x: Tensor) -> Tensor:
        x = self.in_c(x)
        for layer in self.layers:
            x = layer(x)
        return self.out_c(x)
