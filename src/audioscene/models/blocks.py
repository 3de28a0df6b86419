"""Residual blocks and the ResNet trunk (He et al. 2016), as torchvision's `resnet.py`, for spectrograms.

The trunk is a ResNet without its classifier ("truncated", docs/protocol.md §2): a 7×7 stem convolution with
`stem_stride`, batch norm, ReLU, 3×3 max-pool (stride 2), then four stages of blocks with
`width, 2·width, 4·width, 8·width` base channels and strides 1, 2, 2, 2.

With `time_stride` below the total stride (32 for the paper's models), the later down-sampling steps
keep the time axis (stride (1, 2) instead of 2): frequency is reduced as before and the output keeps
more frames, e.g. one per 8 input frames (0.08 s) for sound event detection. The weights are the
same; only where they are applied changes.
"""

from __future__ import annotations

from torch import Tensor, nn


Stride = int | tuple[int, int]  # (time, frequency)


def conv3x3(in_channels: int, out_channels: int, stride: Stride = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: Stride = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a skip connection (ResNet18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: Stride = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (carrying the stride, "ResNet v1.5"), 1×1 expand ×4, with a skip (ResNet50/101)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: Stride = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = conv1x1(channels, channels * self.expansion)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def time_strides(steps: list[int], time_stride: int) -> list[int]:
    """Each down-sampling step's stride in time: the steps' own strides while their product stays
    within `time_stride`, then 1. Raises ValueError unless `time_stride` is such a product."""
    strides, product = [], 1
    for step in steps:
        strides.append(step if product * step <= time_stride else 1)
        product *= strides[-1]
    if product != time_stride:
        allowed = sorted(set(_prefix_products(steps)))
        raise ValueError(f"time_stride {time_stride}: expected one of {', '.join(map(str, allowed))}")
    return strides


def _prefix_products(steps: list[int]) -> list[int]:
    products, product = [1], 1
    for step in steps:
        product *= step
        products.append(product)
    return products


class ResNetTrunk(nn.Module):
    """`[B, in_channels, time, freq]` → `[B, out_channels, time / time_stride, freq / stride]`.

    `stride` (the total down-sampling in frequency, `stem_stride · 2 · 8`), `time_stride` (the same
    unless asked for less) and `out_channels` (`8 · width · block.expansion`) are attributes, so
    heads and `frame_hop` never hard-code them.
    """

    def __init__(self, block: str, layers: tuple[int, ...], width: int = 64, in_channels: int = 1,
                 stem_stride: int = 2, time_stride: int | None = None):
        super().__init__()
        block_class = BLOCKS[block]
        steps = [stem_stride, 2] + [2] * (len(layers) - 1)  # stem, max-pool, stages 2..n
        self.stride = _prefix_products(steps)[-1]
        self.time_stride = time_stride or self.stride
        in_time = time_strides(steps, self.time_stride)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, stride=(in_time[0], stem_stride), padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=(in_time[1], 2), padding=1),
        )
        stages, channels_in = [], width
        for index, n_blocks in enumerate(layers):
            channels = width * 2**index
            stride = 1 if index == 0 else (in_time[index + 1], 2)
            stage, channels_in = self._make_stage(block_class, channels_in, channels, n_blocks, stride)
            stages.append(stage)
        self.stages = nn.Sequential(*stages)
        self.out_channels = channels_in
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _make_stage(block, channels_in: int, channels: int, n_blocks: int, stride: Stride):
        channels_out = channels * block.expansion
        downsample = None
        if stride != 1 or channels_in != channels_out:
            downsample = nn.Sequential(conv1x1(channels_in, channels_out, stride), nn.BatchNorm2d(channels_out))
        blocks = [block(channels_in, channels, stride, downsample)]
        blocks += [block(channels_out, channels) for _ in range(n_blocks - 1)]
        return nn.Sequential(*blocks), channels_out

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))
