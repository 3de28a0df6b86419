"""Pooling and classification heads: `[B, C, T', F']` trunk features → clip and frame probabilities.

- `GlobalPoolHead` (ResNet A/B): mean over time and frequency, one FC, sigmoid. Its framewise
  output is the same FC applied to each output frame (features averaged over frequency only).
- `AttentionHead` (ResNet B/C/D + att): channel pooling (mean over frequency only) gives one
  feature vector `h_t` per output frame; decision-level attention with a softmax over time, the
  form of PANNs' `AttBlock` (Kong et al. 2020; the paper gives no formula):
  `p_t = sigmoid(W_c h_t + b_c)`, `a_t = softmax_t(W_a h_t + b_a)`, `y = clamp(Σ_t a_t ⊙ p_t, 0, 1)`.
  (Kong et al. 2018's attention normalises a sigmoid attention by its sum over time instead.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def channel_pool(features: Tensor) -> Tensor:
    """Mean over the frequency axis: `[B, C, T', F']` → `[B, T', C]`."""
    return features.mean(dim=3).transpose(1, 2)


class GlobalPoolHead(nn.Module):
    def __init__(self, in_features: int, n_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_features, n_classes)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        frames = channel_pool(features)  # (batch, time', channels)
        embedding = frames.mean(dim=1)  # (batch, channels): what the classifier reads
        clipwise = torch.sigmoid(self.fc(embedding))  # (batch, classes)
        framewise = torch.sigmoid(self.fc(frames))  # (batch, time', classes)
        return {"clipwise": clipwise, "framewise": framewise, "embedding": embedding, "frame_embedding": frames}


class AttentionHead(nn.Module):
    def __init__(self, in_features: int, n_classes: int):
        super().__init__()
        self.classifier = nn.Linear(in_features, n_classes)
        self.attention = nn.Linear(in_features, n_classes)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        frames = channel_pool(features)  # (batch, time', channels)
        framewise = torch.sigmoid(self.classifier(frames))  # (batch, time', classes)
        attention = torch.softmax(self.attention(frames).float(), dim=1)  # sums to 1 over time'
        # a convex combination of probabilities, but its float sum can round past 1 (by ~1e-7)
        clipwise = (attention * framewise.float()).sum(dim=1).clamp(0.0, 1.0)  # (batch, classes)
        # the attention is per class: the clip embedding is the frames' plain mean
        return {"clipwise": clipwise, "framewise": framewise, "attention": attention, "embedding": frames.mean(dim=1),
                "frame_embedding": frames}


HEADS: dict[str, type[GlobalPoolHead] | type[AttentionHead]] = {"global": GlobalPoolHead, "attention": AttentionHead}
