"""PANNs' CNN14 family (Kong, Cao, Iqbal, Wang, Wang & Plumbley, "PANNs: Large-Scale Pretrained
Audio Neural Networks for Audio Pattern Recognition", IEEE/ACM TASLP 2020), so that its public
AudioSet checkpoints run through every command (`pretrained.import_panns`).

Written from the paper and the facts of the released code (layer sizes, state-dict key names):
`bn0`, a BatchNorm over the 64 mel bands (the front end itself is `features.LogMel` of kind
"panns"); six conv blocks, each two 3×3 convolutions (no bias) with BatchNorm and ReLU, of 64, 128,
256, 512, 1024 and 2048 channels, the first five followed by 2×2 average pooling, dropout 0.2
after every block; then the mean over frequency, giving one 2048-d feature per 32 input frames.

- `cnn14`, `cnn14_16k` (the same network; the released checkpoints differ in their front ends):
  clip features = max + mean over time, dropout 0.5, `fc1` (2048, ReLU), `fc_audioset`, sigmoid.
  Frame outputs: `fc1` and `fc_audioset` applied to every frame's feature before the pooling, as
  our ResNets read their frames before the attention pool.
- `cnn14_decision_level_max` (PANNs' detection model): each frame's feature is smoothed as max +
  mean over 3 neighbouring frames, then `fc1`, `fc_audioset` and sigmoid per frame; the clip
  output is the max over frames. Frame outputs are those per-frame probabilities (PANNs then
  repeats each 32 times to the input frame rate; `sed-tune --upsample` does the equivalent).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..errors import InputError, check_number
from .registry import register_family

CHANNELS = (64, 128, 256, 512, 1024, 2048)
POOLINGS = ("global", "decision_max")


@dataclass(frozen=True)
class PannsConfig:
    """Everything needed to rebuild a CNN14 (stored in every checkpoint)."""

    name: str
    family: str = "panns"
    n_classes: int = 527
    pooling: str = "global"  # "global" (Cnn14) or "decision_max" (Cnn14_DecisionLevelMax)
    dropout: float = 0.5  # before and after fc1 (0.2 after each conv block)
    n_mels: int = 64
    input_hop_s: float = 0.01
    pad_value: float = -100.0  # inputs shorter than 32 frames are padded with the front end's silence

    def __post_init__(self):
        check_number("n_mels", self.n_mels, integer=True, low=32)  # five halvings leave at least one band
        check_number("dropout", self.dropout, low=0, high=1)
        if self.pooling not in POOLINGS:
            raise InputError(f"pooling {self.pooling!r}: expected {' or '.join(POOLINGS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def frontend_settings(frontend) -> dict:
        return dict(n_mels=frontend.n_mels, input_hop_s=frontend.hop_ms / 1000, pad_value=frontend.silence)


VARIANTS: dict[str, dict] = {
    "cnn14": dict(pooling="global"),
    "cnn14_16k": dict(pooling="global"),
    "cnn14_decision_level_max": dict(pooling="decision_max"),
}


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor, pool: bool) -> Tensor:
        x = torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
        return nn.functional.avg_pool2d(x, 2) if pool else x


@register_family("panns", PannsConfig, VARIANTS)
class Cnn14(nn.Module):
    """Log-mel `[B, T, n_mels]` (front end of kind "panns") → `{"clipwise": [B, K], "framewise":
    [B, T // 32, K], "frame_hop": s}`. State-dict keys are those of the released checkpoints, less
    the front end's (`spectrogram_extractor.*`, `logmel_extractor.*`)."""

    head_prefix = "fc_audioset."
    takes_audio = exportable = True
    normalises_input = True  # bn0
    min_frames = 32

    def __init__(self, config: PannsConfig):
        super().__init__()
        self.config = config
        self.bn0 = nn.BatchNorm1d(config.n_mels)
        for i, (cin, cout) in enumerate(zip((1, *CHANNELS), CHANNELS), start=1):
            setattr(self, f"conv_block{i}", ConvBlock(cin, cout))
        self.fc1 = nn.Linear(CHANNELS[-1], CHANNELS[-1])
        self.fc_audioset = nn.Linear(CHANNELS[-1], config.n_classes)

    @property
    def frame_hop(self) -> float:
        return round(self.min_frames * self.config.input_hop_s, 6)

    def forward(self, logmel: Tensor, augment: Sequence[Callable[[Tensor], Tensor]] = ()) -> dict[str, Tensor | float]:
        if logmel.dim() != 3 or logmel.shape[2] != self.config.n_mels:
            raise InputError(f"expected log-mel of shape [batch, frames, {self.config.n_mels}], "
                             f"got {tuple(logmel.shape)}")
        short = self.min_frames - logmel.shape[1]
        x = nn.functional.pad(logmel, (0, 0, 0, short), value=self.config.pad_value) if short > 0 else logmel
        x = self.bn0(x.transpose(1, 2)).transpose(1, 2)  # over the mel bands, as PANNs' bn0
        for transform in augment:
            x = transform(x)
        x = x[:, None]  # (batch, 1, time, mel)
        for i in range(1, len(CHANNELS) + 1):
            x = getattr(self, f"conv_block{i}")(x, pool=i < len(CHANNELS))
            x = nn.functional.dropout(x, p=0.2, training=self.training)
        x = x.mean(dim=3)  # (batch, channels, time')
        drop = self.config.dropout if self.training else 0.0
        if self.config.pooling == "decision_max":
            x = nn.functional.max_pool1d(x, 3, stride=1, padding=1) + nn.functional.avg_pool1d(x, 3, stride=1, padding=1)
            hidden = torch.relu(self.fc1(nn.functional.dropout(x.transpose(1, 2), p=drop)))
            framewise = torch.sigmoid(self.fc_audioset(nn.functional.dropout(hidden, p=drop)))
            return {"clipwise": framewise.max(dim=1).values, "framewise": framewise, "frame_hop": self.frame_hop,
                    "embedding": hidden.max(dim=1).values, "frame_embedding": hidden}  # pooled as its outputs are
        pooled = x.max(dim=2).values + x.mean(dim=2)
        embedding = torch.relu(self.fc1(nn.functional.dropout(pooled, p=drop)))  # PANNs' own "embedding"
        frame_embedding = torch.relu(self.fc1(x.transpose(1, 2)))
        return {"clipwise": torch.sigmoid(self.fc_audioset(embedding)), "embedding": embedding,
                "framewise": torch.sigmoid(self.fc_audioset(frame_embedding)), "frame_embedding": frame_embedding,
                "frame_hop": self.frame_hop}
