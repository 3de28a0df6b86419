"""An exponential moving average of the weights (and float buffers), updated after every optimizer
step with decay `d_t = min(decay, (1 + t) / (10 + t))` (the warm-up of TensorFlow's
`ExponentialMovingAverage` with `num_updates`). When on, the averaged weights are the run's
weights: scored every epoch, used to pick the best epoch and by every command that loads the run
(`--weights raw` asks for the others); the mean teacher (`losses.consistency`) is this average."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .base import Ingredient, Setting


class WeightAverage:
    """The average of a model's state, kept as a copy of the model in eval mode (`model`), so it
    runs like the model it averages."""

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


class MovingAverage(Ingredient):
    """The recipe's `WeightAverage` (`average`), checkpointed as the recipe state's "ema"."""

    name, stage = "ema", "weights"
    settings = (Setting("ema_decay", 0.0, "keep an exponential moving average of the weights with this decay (e.g. "
                                          "0.999); it becomes the run's weights (scored every epoch, picks the best "
                                          "epoch, used by every command); 0: off", range=dict(low=0, high=1,
                                                                                             high_open=True)),)

    def __init__(self, config, model, optimizer, clock):
        super().__init__(config, model, optimizer, clock)
        self.average = WeightAverage(model, config.ema_decay)

    @classmethod
    def enabled(cls, config) -> bool:
        return config.ema_decay > 0

    def after_step(self, model: nn.Module) -> None:
        self.average.update(model)

    def state_dict(self) -> dict:
        return self.average.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        if state:
            self.average.load_state_dict(state)
