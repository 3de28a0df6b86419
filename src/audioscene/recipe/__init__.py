"""Training recipes: the registered ingredients (`INGREDIENTS`), the presets over their settings
(`RECIPES`), and `Recipe`, which runs the ingredients of one run at their stages of a training step
and keeps their state (one checkpoint slot, `Checkpoint.recipe`).

An ingredient is one module with one class (`base.Ingredient`: its settings, its stage, its
state) and one line below. Its settings become `TrainConfig` keys, TOML keys and `train` flags.
Each is off by default, as the paper trains; `paper` is the paper's recipe (no ingredient, no input
normalisation), `modern` turns on what PANNs, AST, EfficientAT and CED added. A recipe supplies
the value of each setting that a run leaves unset; flags, TOML keys and Python arguments set them
explicitly.

- `mixup` (waveform stage, `recipe/mixup.py`), `spec_augment` (features stage,
  `recipe/spec_augment.py`), `schedule` (the learning rate, weights stage, `recipe/schedule.py`),
  `ema` (the moving average of the weights, weights stage, `recipe/weight_average.py`): each
  module's docstring says what it does and what we chose.
- **Input normalisation** (`input_norm`, a model setting: `models.ModelConfig.input_norm`): a
  BatchNorm over the mel bands at the model's input, as PANNs' `bn0`. PANNs compute the log-mel,
  apply `bn0` (per-band batch statistics while training, running statistics at test time) and mask
  after it, so their stripes hold 0, the band mean. AST instead subtracts a mean and divides by a
  standard deviation measured once on the training set (`-4.27`, `4.57` for AudioSet) and masks
  after that, also with 0. We take PANNs' form: it needs no pass over the data before training, it
  follows the data when fine-tuning, and it is one more layer of the model (checkpoints, ONNX).
- **Class-balanced sampling** (`sampler="balanced"`, `data/sampler.py`), and knowledge distillation
  from a teacher file (`distill.py`), are configured beside these.

Every random draw comes from a `numpy.random.Generator` seeded per micro-batch (`MicroBatch.seed`,
made from the run seed, epoch, rank and position), so a resumed run draws the same values.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, InputError, check_number
from ..registries import register
from ..typed import MISMATCH, conform, type_name
from .base import STAGES, Ingredient, Setting, StepInputs
from .mixup import Mixup, mixup
from .schedule import SCHEDULES, Schedule, lr_factor
from .spec_augment import SpecAugment, spec_augment
from .weight_average import MovingAverage, WeightAverage

__all__ = ["INGREDIENTS", "RECIPES", "Recipe", "Ingredient", "Setting", "StepInputs", "STAGES", "SCHEDULES",
           "register_ingredient", "ingredient_settings", "resolve_settings", "preset_value", "mixup", "spec_augment",
           "lr_factor", "WeightAverage"]

INGREDIENTS: dict[str, type[Ingredient]] = {}


def ingredient_settings() -> dict[str, Setting]:
    """Every registered ingredient's settings, by name."""
    return {setting.name: setting for ingredient in INGREDIENTS.values() for setting in ingredient.settings}


def register_ingredient(ingredient: type[Ingredient]) -> type[Ingredient]:
    """Add an ingredient (after the others of its stage); its settings' names must be new."""
    taken = sorted(set(ingredient_settings()) & {setting.name for setting in ingredient.settings})
    if taken or ingredient.stage not in STAGES:
        raise InputError(f"recipe ingredient {ingredient.name!r}: " + (
            f"setting {taken[0]!r} is taken" if taken else f"stage {ingredient.stage!r} is not one of {', '.join(STAGES)}"))
    return register(INGREDIENTS, ingredient.name, ingredient, "recipe ingredient")


for _ingredient in (Mixup, SpecAugment, Schedule, MovingAverage):
    register_ingredient(_ingredient)

# The presets: the settings each one gives (ingredient settings it leaves out stay at their
# default, off), and the two TrainConfig fields a recipe also sets.
RECIPES: dict[str, dict] = {
    "paper": dict(sampler="shuffle", input_norm=False),
    "modern": dict(sampler="balanced", input_norm=True, mixup_alpha=0.3, spec_time_masks=2, spec_freq_masks=2,
                   lr_schedule="cosine", warmup_fraction=0.05, lr_floor=0.01, ema_decay=0.999),
}


def preset_value(recipe: str, name: str):
    """The value recipe `recipe` gives setting (or recipe field) `name`."""
    return RECIPES[recipe][name] if name in RECIPES[recipe] else ingredient_settings()[name].default


def resolve_settings(explicit: dict, recipe: str) -> dict:
    """Every registered ingredient's setting: the value in `explicit` (None: not given), else the
    recipe's, else its default; each checked (type, range, choices), a bad one a `ConfigError`."""
    settings = ingredient_settings()
    unknown = sorted(set(explicit) - set(settings))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)}: no registered recipe ingredient has such a setting "
                          f"(theirs: {', '.join(settings)})")
    resolved = {}
    for name, setting in settings.items():
        value = explicit[name] if explicit.get(name) is not None else preset_value(recipe, name)
        converted = conform(value, setting.kind)
        if converted is MISMATCH:
            raise ConfigError(f"{name} = {value!r}: expected {type_name(setting.kind)}")
        if setting.range:
            try:
                check_number(name, converted, **setting.range)
            except InputError as exc:
                raise ConfigError(str(exc)) from None
        if setting.choices and converted not in setting.choices:
            raise ConfigError(f"unknown {name} {converted!r}; choose one of {', '.join(setting.choices)}")
        resolved[name] = converted
    return resolved


class Recipe:
    """The ingredients of one run that are on, built from a `TrainConfig`, and the clock they share
    (`steps_done` of `total_steps` optimizer steps; `planned_steps`: the steps this invocation
    plans, more than `total_steps` when a resumed run was extended). `train.train_step` calls
    `prepare` on each micro-batch and `after_step` after each optimizer step."""

    def __init__(self, config, model: nn.Module, optimizer: torch.optim.Optimizer, total_steps: int):
        self.config = config
        self.total_steps = self.planned_steps = total_steps
        self.steps_done = 0
        self.ingredients = [ingredient(config, model, optimizer, self) for ingredient in INGREDIENTS.values()
                            if ingredient.enabled(config)]

    def _at(self, stage: str) -> list[Ingredient]:
        return [ingredient for ingredient in self.ingredients if ingredient.stage == stage]

    def prepare(self, inputs: StepInputs, rng: np.random.Generator, model: nn.Module) -> StepInputs:
        """Run the waveform, features (models that take audio) and targets stages on `inputs`."""
        for ingredient in self._at("waveform"):
            ingredient.waveform(inputs, rng)
        for ingredient in self._at("features") if model.takes_audio else ():
            transform = ingredient.features(rng, model)
            if transform is not None:
                inputs.augment.append(transform)
        for ingredient in self._at("targets"):
            ingredient.targets(inputs, rng)
        return inputs

    def after_step(self, model: nn.Module, stepped: bool = True) -> None:
        """After an optimizer step (`stepped`: False when the loss scaler skipped it)."""
        if not stepped:
            return
        self.steps_done += 1
        for ingredient in self._at("weights"):
            ingredient.after_step(model)

    @property
    def ema(self) -> WeightAverage | None:
        """The moving average of the weights, when the run keeps one."""
        return next((i.average for i in self.ingredients if isinstance(i, MovingAverage)), None)

    def consistency_factor(self) -> float:
        """The mean teacher's consistency weight at this step: `consistency_weight · exp(-5 (1 − t)²)`,
        t rising linearly to 1 over `consistency_rampup` of all steps (Tarvainen & Valpola 2017)."""
        config = self.config
        ramp = config.consistency_rampup * self.total_steps
        progress = 1.0 if ramp == 0 else min(1.0, self.steps_done / ramp)
        return config.consistency_weight * math.exp(-5.0 * (1.0 - progress) ** 2)

    def state_dict(self) -> dict:
        state = {"steps_done": self.steps_done, "total_steps": self.total_steps}
        for ingredient in self.ingredients:
            if (stored := ingredient.state_dict()) is not None:
                state[ingredient.name] = stored
        return state

    def load_state_dict(self, state: dict) -> None:
        """Continue a run: its schedule stays laid over the steps it was started with."""
        self.steps_done, self.total_steps = state.get("steps_done", 0), state.get("total_steps", self.planned_steps)
        for ingredient in self.ingredients:
            ingredient.load_state_dict(state.get(ingredient.name))
