"""Training recipes: the table of presets (`RECIPES`), their ingredients, and `Recipe`, which owns
the ingredients of one run and their state (one checkpoint slot, `Checkpoint.recipe`).

`paper` is the paper's recipe (every ingredient off, no input normalisation); `modern` turns on
what PANNs, AST, EfficientAT and CED added. A recipe supplies the value of each of its fields that
a run leaves unset; flags, TOML keys and Python arguments set them explicitly.

- **Input normalisation** (`input_norm`, a model setting: `models.ModelConfig.input_norm`): a
  BatchNorm over the mel bands at the model's input, as PANNs' `bn0`. PANNs compute the log-mel,
  apply `bn0` (per-band batch statistics while training, running statistics at test time) and mask
  after it, so their stripes hold 0, the band mean. AST instead subtracts a mean and divides by a
  standard deviation measured once on the training set (`-4.27`, `4.57` for AudioSet) and masks
  after that, also with 0. We take PANNs' form: it needs no pass over the data before training, it
  follows the data when fine-tuning, and it is one more layer of the model (checkpoints, ONNX).
- **SpecAugment** (Park et al. 2019): `time_masks` stripes of up to `time_width` frames and
  `freq_masks` stripes of up to `freq_width` bands per clip, applied after the input normalisation
  and filled with 0, its mean — or, for a model without normalisation, with each clip's own band
  means, which lie inside the data's range (the front end's silence value, −4.6, lies below every
  value of real audio and taught models to see silence where a stripe was). Training only.
- **mixup** (Zhang et al. 2018): `x = λ·x_i + (1 − λ)·x_π(i)`, `y = λ·y_i + (1 − λ)·y_π(i)` with
  one `λ ~ Beta(α, α)` per micro-batch and `π` a permutation of it, on the model's *input*
  (waveforms before the front end; embeddings for the embedding models): a mixture of two
  recordings is a recording of both sounds, which a mix of two log-mel images is not. One λ per
  batch keeps the batch's label mass. A micro-batch of one clip cannot mix, so mixup needs
  micro-batches of at least two (`train` refuses otherwise).
- **Learning-rate schedule**: linear warm-up over `warmup_fraction` of the run's optimizer steps,
  then constant, cosine or linear decay to `lr_floor` × the base rate at the last step. The
  schedule is laid over the number of steps the run was started with; a run extended by `resume
  --epochs` keeps that schedule and continues at its floor (logged), never re-stretching it.
  A step that the fp16 loss scaler skips does not advance it.
- **EMA of the weights**: an exponential moving average of the weights (and float buffers), updated
  after every optimizer step with decay `d_t = min(decay, (1 + t) / (10 + t))` (the warm-up of
  TensorFlow's `ExponentialMovingAverage` with `num_updates`). When on, the averaged weights are
  the run's weights: scored every epoch, used to pick the best epoch and by every command that
  loads the run (`--weights raw` asks for the others).
- **Class-balanced sampling** (`sampler="balanced"`, `data/sampler.py`), and knowledge distillation
  from a teacher file (`distill.py`), configured beside these.

Every random draw comes from a `numpy.random.Generator` seeded per micro-batch (`MicroBatch.seed`,
made from the run seed, epoch, rank and position), so a resumed run draws the same masks and λ.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

SCHEDULES = ("constant", "cosine", "linear")

RECIPES: dict[str, dict] = {
    "paper": dict(sampler="shuffle", input_norm=False, mixup_alpha=0.0, spec_time_masks=0, spec_time_width=64,
                  spec_freq_masks=0, spec_freq_width=8, lr_schedule="constant", warmup_fraction=0.0, lr_floor=0.0,
                  ema_decay=0.0),
}
RECIPES["modern"] = {**RECIPES["paper"], **dict(
    sampler="balanced", input_norm=True, mixup_alpha=0.3, spec_time_masks=2, spec_freq_masks=2, lr_schedule="cosine",
    warmup_fraction=0.05, lr_floor=0.01, ema_decay=0.999)}


def mixup(inputs: torch.Tensor, targets: Sequence[torch.Tensor | None], alpha: float, rng: np.random.Generator,
          groups: np.ndarray | None = None) -> tuple[torch.Tensor, list[torch.Tensor | None], float, torch.Tensor]:
    """Mixed inputs, each of `targets` mixed the same way (None stays None), the λ used and the
    partner of each clip (`λ · x + (1 − λ) · x[order]`); `alpha` of the Beta distribution (> 0).
    With `groups` (one value per clip), a clip's partner is of its own group: a labelled clip
    mixed with an unlabelled one would get targets that call the unlabelled clip's sounds absent."""
    lam = float(rng.beta(alpha, alpha))
    if groups is None:
        order = rng.permutation(len(inputs))
    else:
        order = np.arange(len(inputs))
        for group in np.unique(groups):
            members = np.flatnonzero(groups == group)
            order[members] = members[rng.permutation(len(members))]
    order = torch.from_numpy(order).to(inputs.device)
    mixed = [None if t is None else lam * t + (1 - lam) * t[order] for t in targets]
    return lam * inputs + (1 - lam) * inputs[order], mixed, lam, order


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


def lr_factor(step: int, total_steps: int, schedule: str = "constant", warmup_steps: int = 0,
              floor: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (0-based) of `total_steps`;
    steps past the end stay at the end's value."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, (step - warmup_steps) / span)
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress
    return floor + (1 - floor) * decay


class WeightAverage:
    """Exponential moving average of a model's state (see the module docstring), kept as a copy of
    the model in eval mode (`model`), so it runs like the model it averages."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        rate = 1 - min(self.decay, (1 + self.updates) / (10 + self.updates))
        averages = self.model.state_dict()
        for name, value in model.state_dict().items():
            average = averages[name]
            if average.is_floating_point():
                average.lerp_(value.detach().to(average.dtype), rate)  # average += rate · (value − average)
            else:
                average.copy_(value)  # e.g. BatchNorm's num_batches_tracked
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = state["decay"], state["updates"]
        self.model.load_state_dict(state["weights"])


class Recipe:
    """The ingredients of one run, read from a `TrainConfig`: what `train_step` applies to a batch
    (`mix`, `masking`), what follows an optimizer step (`after_step`: the learning rate, the
    average), and their state for the checkpoint (`state_dict`)."""

    def __init__(self, config, model: nn.Module, optimizer: torch.optim.Optimizer, total_steps: int):
        self.config, self.optimizer = config, optimizer
        self.total_steps, self.steps_done = total_steps, 0
        self.ema = WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
        self._apply_lr()

    @property
    def lr_factor(self) -> float:
        config = self.config
        return lr_factor(self.steps_done, self.total_steps, config.lr_schedule,
                         round(config.warmup_fraction * self.total_steps), config.lr_floor)

    def _apply_lr(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * self.lr_factor

    def consistency_factor(self) -> float:
        """The mean teacher's consistency weight at this step: `consistency_weight · exp(-5 (1 − t)²)`,
        t rising linearly to 1 over `consistency_rampup` of all steps (Tarvainen & Valpola 2017)."""
        config = self.config
        ramp = config.consistency_rampup * self.total_steps
        progress = 1.0 if ramp == 0 else min(1.0, self.steps_done / ramp)
        return config.consistency_weight * math.exp(-5.0 * (1.0 - progress) ** 2)

    def mix(self, inputs: torch.Tensor, targets: Sequence[torch.Tensor | None], rng: np.random.Generator,
            groups: np.ndarray | None = None
            ) -> tuple[torch.Tensor, list[torch.Tensor | None], tuple[float, torch.Tensor] | None]:
        """The batch with mixup applied (as it is without mixup; partners within `groups`), and how
        it was mixed: `(λ, order)` (None without mixup), for targets that mix otherwise
        (`strong.mix_events`)."""
        if self.config.mixup_alpha == 0:
            return inputs, list(targets), None
        mixed, mixed_targets, lam, order = mixup(inputs, targets, self.config.mixup_alpha, rng, groups)
        return mixed, mixed_targets, (lam, order)

    def masking(self, rng: np.random.Generator, normalised: bool) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """SpecAugment for one micro-batch, to apply to the (`normalised`: band-normalised) log-mel,
        or None when it is off."""
        c = self.config
        if not (c.spec_time_masks or c.spec_freq_masks):
            return None
        fill = 0.0 if normalised else None
        return lambda features: spec_augment(features, rng, c.spec_time_masks, c.spec_time_width, c.spec_freq_masks,
                                             c.spec_freq_width, fill)

    def after_step(self, model: nn.Module, stepped: bool = True) -> None:
        """After an optimizer step (`stepped`: False when the loss scaler skipped it)."""
        if not stepped:
            return
        self.steps_done += 1
        self._apply_lr()
        if self.ema is not None:
            self.ema.update(model)

    def state_dict(self) -> dict:
        return {"steps_done": self.steps_done, "total_steps": self.total_steps,
                "ema": self.ema.state_dict() if self.ema else None}

    def load_state_dict(self, state: dict) -> None:
        """Continue a run: its schedule stays laid over the steps it was started with."""
        planned = self.total_steps
        self.steps_done, self.total_steps = state.get("steps_done", 0), state.get("total_steps", planned)
        if planned > self.total_steps and self.config.lr_schedule != "constant":
            log.warning("the %s learning-rate schedule was laid over the run's first %d optimizer steps; the %d steps "
                        "added by the extension continue at its floor (%g × lr)", self.config.lr_schedule,
                        self.total_steps, planned - self.total_steps, self.config.lr_floor)
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self._apply_lr()
