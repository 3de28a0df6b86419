"""What a recipe ingredient is: its settings (`Setting`), the stage of a training step it acts on,
its state, and the micro-batch it acts on (`StepInputs`). `recipe/__init__.py` registers the
package's ingredients; docs/architecture.md shows how to add one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np
import torch
from torch import nn

# The stages of a training step, in the order `Recipe.prepare` / `Recipe.after_step` run them:
# the model's input before the front end, the log-mel inside the model (after its input
# normalisation), the targets before the loss, the weights after an optimizer step.
STAGES = ("waveform", "features", "targets", "weights")


@dataclass(frozen=True)
class Setting:
    """One setting of an ingredient: a `TrainConfig` key, TOML key and flag `--name-with-dashes`.
    `default` is its value when neither a flag nor the recipe (`RECIPES`) sets it: off, as the
    paper trains. `kind` is `int`, `float`, `str` or `bool`; `range` holds `errors.check_number`'s
    keywords, `choices` the allowed strings."""

    name: str
    default: object
    help: str
    kind: type = float
    range: dict = field(default_factory=dict)
    choices: tuple[str, ...] | None = None


@dataclass
class StepInputs:
    """A micro-batch on the model's device as it passes through the recipe's stages (None where
    unused): the input (waveforms, or embeddings), clip targets, the distillation teacher's targets,
    strong-label events `[B, E, 4]` and which clips have them, the groups within which clips may
    be mixed (labelled and unlabelled clips apart), and the feature-stage transforms the model
    applies to its normalised log-mel (`augment`)."""

    waves: torch.Tensor
    targets: torch.Tensor
    teacher: torch.Tensor | None = None
    events: torch.Tensor | None = None
    strongly_labelled: torch.Tensor | None = None
    groups: np.ndarray | None = None
    augment: list[Callable[[torch.Tensor], torch.Tensor]] = field(default_factory=list)


class Ingredient:
    """One part of a training recipe. A subclass names itself (`name`, also its key in the
    recipe's checkpointed state), its `stage` (one of `STAGES`) and its `settings`, says when it
    is on (`enabled`), and implements the hook of its stage:

    - `waveform(inputs, rng)`: change `inputs` in place before the front end (e.g. mixup);
    - `features(rng, model)`: a transform of the model's normalised log-mel `[B, T, F]`, or None
      (e.g. SpecAugment); only for models that take audio;
    - `targets(inputs, rng)`: change `inputs.targets` / `inputs.teacher` in place;
    - `after_step(model)`: after each optimizer step that was taken (e.g. the weight average).

    Random draws come from `rng`, seeded per micro-batch, so a resumed run draws the same values.
    `state_dict` / `load_state_dict` carry what must survive a resume (None: nothing)."""

    name: ClassVar[str]
    stage: ClassVar[str]
    settings: ClassVar[tuple[Setting, ...]] = ()

    def __init__(self, config, model: nn.Module, optimizer: torch.optim.Optimizer, clock):
        """`config` holds the settings as attributes (`config.mixup_alpha`); `clock` is the
        `Recipe`, whose `steps_done` and `total_steps` count optimizer steps."""
        self.config, self.clock = config, clock

    @classmethod
    def enabled(cls, config) -> bool:
        return True

    def waveform(self, inputs: StepInputs, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def features(self, rng: np.random.Generator, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
        raise NotImplementedError

    def targets(self, inputs: StepInputs, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def after_step(self, model: nn.Module) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict | None:
        return None

    def load_state_dict(self, state: dict | None) -> None:
        """Continue from a checkpoint's state (None when it stored none)."""
