"""SpecAugment (Park et al. 2019): `spec_time_masks` stripes of up to `spec_time_width` frames and
`spec_freq_masks` stripes of up to `spec_freq_width` bands per clip, applied inside the model after
its input normalisation and filled with 0, its mean — or, for a model without normalisation, with
each clip's own band means, which lie inside the data's range (the front end's silence value, −4.6,
lies below every value of real audio and taught models to see silence where a stripe was).
Training only."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from .base import Ingredient, Setting


def spec_augment(features: torch.Tensor, rng: np.random.Generator, time_masks: int, time_width: int,
                 freq_masks: int, freq_width: int, fill: float | None = None) -> torch.Tensor:
    """`features` `[B, T, F]` with, per clip, `time_masks` time stripes of width 0..`time_width` and
    `freq_masks` band stripes of width 0..`freq_width` set to `fill` (None: each clip's mean of
    each band over time)."""
    batch, n_frames, n_bands = features.shape
    keep = torch.ones(batch, n_frames, n_bands, dtype=torch.bool)
    for count, width, axis_size, axis in ((time_masks, time_width, n_frames, 1), (freq_masks, freq_width, n_bands, 2)):
        if count == 0 or width == 0:
            continue
        widths = torch.from_numpy(rng.integers(0, min(width, axis_size) + 1, (batch, count)))
        starts = torch.from_numpy(rng.integers(0, axis_size - widths.numpy() + 1))
        positions = torch.arange(axis_size)
        inside = ((positions >= starts[..., None]) & (positions < (starts + widths)[..., None])).any(dim=1)
        keep &= ~inside[:, :, None] if axis == 1 else ~inside[:, None, :]
    values = features.mean(dim=1, keepdim=True).expand_as(features) if fill is None else torch.full_like(features, fill)
    return torch.where(keep.to(features.device), features, values)


class SpecAugment(Ingredient):
    name, stage = "spec_augment", "features"
    settings = (
        Setting("spec_time_masks", 0, "SpecAugment: time stripes per clip (0: off)", int, dict(low=0, high=100)),
        Setting("spec_time_width", 64, "SpecAugment: widest time stripe, in log-mel frames", int, dict(low=0)),
        Setting("spec_freq_masks", 0, "SpecAugment: mel-band stripes per clip (0: off)", int, dict(low=0, high=100)),
        Setting("spec_freq_width", 8, "SpecAugment: widest band stripe, in mel bands", int, dict(low=0)),
    )

    @classmethod
    def enabled(cls, config) -> bool:
        return bool(config.spec_time_masks or config.spec_freq_masks)

    def features(self, rng: np.random.Generator, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        c, fill = self.config, 0.0 if model.normalises_input else None
        return lambda logmel: spec_augment(logmel, rng, c.spec_time_masks, c.spec_time_width, c.spec_freq_masks,
                                           c.spec_freq_width, fill)
