"""The learning-rate schedule: linear warm-up over `warmup_fraction` of the run's optimizer steps,
then constant, cosine or linear decay to `lr_floor` × the base rate at the last step. The schedule
is laid over the number of steps the run was started with; a run extended by `resume --epochs`
keeps that schedule and continues at its floor (logged), never re-stretching it. A step that the
fp16 loss scaler skips does not advance it."""

from __future__ import annotations

import logging
import math

from torch import nn

from .base import Ingredient, Setting

log = logging.getLogger(__name__)

SCHEDULES = ("constant", "cosine", "linear")


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


class Schedule(Ingredient):
    """Sets the optimizer's learning rate from the clock: when built, after each step, on resume."""

    name, stage = "schedule", "weights"
    settings = (
        Setting("lr_schedule", "constant", "learning rate per optimizer step after the warm-up", str,
                choices=SCHEDULES),
        Setting("warmup_fraction", 0.0, "share of all optimizer steps with a linear warm-up of the learning rate",
                range=dict(low=0, high=1)),
        Setting("lr_floor", 0.0, "cosine/linear decay ends at this share of --lr", range=dict(low=0, high=1)),
    )

    def __init__(self, config, model, optimizer, clock):
        super().__init__(config, model, optimizer, clock)
        self.optimizer = optimizer
        self.after_step(model)

    @property
    def factor(self) -> float:
        c, clock = self.config, self.clock
        return lr_factor(clock.steps_done, clock.total_steps, c.lr_schedule, round(c.warmup_fraction * clock.total_steps),
                         c.lr_floor)

    def after_step(self, model: nn.Module | None) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * self.factor

    def load_state_dict(self, state: dict | None) -> None:
        c, clock = self.config, self.clock
        if clock.planned_steps > clock.total_steps and c.lr_schedule != "constant":
            log.warning("the %s learning-rate schedule was laid over the run's first %d optimizer steps; the %d steps "
                        "added by the extension continue at its floor (%g × lr)", c.lr_schedule, clock.total_steps,
                        clock.planned_steps - clock.total_steps, c.lr_floor)
        self.after_step(None)
