"""The pieces of the `modern` training recipe (`config.RECIPES`): augmentation, the learning-rate
schedule and the moving average of the weights.

- `mixup` (Zhang et al. 2018): `x = λ·x_i + (1 − λ)·x_π(i)`, `y = λ·y_i + (1 − λ)·y_π(i)` with one
  `λ ~ Beta(α, α)` per micro-batch and `π` a random permutation of it. It mixes the model's *input*
  (waveforms before the log-mel front end; embeddings for the embedding models): a mixture of two
  recordings is a real recording of both sounds, which a mix of two log-mel images is not (log-mel
  is not linear in the signal). One λ per batch keeps the batch's label mass: `Σ y` is unchanged.
- `spec_augment` (Park et al. 2019, as PANNs use it): `time_masks` stripes of up to `time_width`
  frames and `freq_masks` stripes of up to `freq_width` mel bands set to the front end's silence
  value, per clip, on the model's device; applied in `train_step` only, never in evaluation.
- `lr_factor`: linear warm-up over `warmup_steps`, then constant, cosine or linear decay to
  `floor` × the base rate at the last step, evaluated per optimizer step.
- `WeightAverage`: an exponential moving average of the weights (and float buffers), updated after
  every optimizer step with decay `d_t = min(decay, (1 + t) / (10 + t))` (the warm-up TensorFlow's
  `ExponentialMovingAverage` applies with `num_updates`), so a short run is not dominated by its
  initial weights. It is checkpointed beside the weights and scored as its own row by `evaluate`.

Every random draw comes from a `numpy.random.Generator` seeded per micro-batch (`MicroBatch.seed`,
made from the run seed, epoch, rank and position), so a resumed run draws the same masks and λ.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

SCHEDULES = ("constant", "cosine", "linear")


def mixup(inputs: torch.Tensor, targets: Sequence[torch.Tensor | None], alpha: float, rng: np.random.Generator
          ) -> tuple[torch.Tensor, list[torch.Tensor | None], float]:
    """Mixed inputs, each of `targets` mixed the same way (None stays None), and the λ used;
    `alpha` of the Beta distribution (> 0)."""
    lam = float(rng.beta(alpha, alpha))
    order = torch.from_numpy(rng.permutation(len(inputs))).to(inputs.device)
    mixed = [None if t is None else lam * t + (1 - lam) * t[order] for t in targets]
    return lam * inputs + (1 - lam) * inputs[order], mixed, lam


def spec_augment(features: torch.Tensor, rng: np.random.Generator, time_masks: int, time_width: int,
                 freq_masks: int, freq_width: int, fill: float) -> torch.Tensor:
    """`features` `[B, T, F]` with, per clip, `time_masks` time stripes of width 0..`time_width` and
    `freq_masks` band stripes of width 0..`freq_width` set to `fill`."""
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
    return torch.where(keep.to(features.device), features, torch.full_like(features, fill))


def lr_factor(step: int, total_steps: int, schedule: str = "constant", warmup_steps: int = 0,
              floor: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (0-based) of `total_steps`."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, (step - warmup_steps) / span)
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress
    return floor + (1 - floor) * decay


class WeightAverage:
    """Exponential moving average of a model's state (see the module docstring)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.weights = {name: value.detach().clone() for name, value in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        rate = 1 - min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, value in model.state_dict().items():
            average = self.weights[name]
            if average.is_floating_point():
                average.lerp_(value.detach().to(average.dtype), rate)  # average += rate · (value − average)
            else:
                average.copy_(value)  # e.g. BatchNorm's num_batches_tracked
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = state["decay"], state["updates"]
        for name, value in state["weights"].items():
            self.weights[name].copy_(value)
