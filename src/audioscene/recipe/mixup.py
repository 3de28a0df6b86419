"""mixup (Zhang et al. 2018) on the model's input: `x = λ·x_i + (1 − λ)·x_π(i)`, the targets mixed
alike, with one `λ ~ Beta(α, α)` per micro-batch and `π` a permutation of it. It mixes waveforms
before the front end (embeddings for the embedding models): a mixture of two recordings is a
recording of both sounds, which a mix of two log-mel images is not. One λ per batch keeps the
batch's label mass. A micro-batch of one clip cannot mix, so mixup needs micro-batches of at least
two (`batches.micro_batch_size` refuses otherwise)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..strong import mix_events
from .base import Ingredient, Setting, StepInputs


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


class Mixup(Ingredient):
    name, stage = "mixup", "waveform"
    settings = (Setting("mixup_alpha", 0.0, "mixup of the input (waveforms, or embeddings) with Beta(a, a); 0: off",
                        range=dict(low=0)),)

    @classmethod
    def enabled(cls, config) -> bool:
        return config.mixup_alpha > 0

    def waveform(self, inputs: StepInputs, rng: np.random.Generator) -> None:
        inputs.waves, (inputs.targets, inputs.teacher), lam, order = mixup(
            inputs.waves, [inputs.targets, inputs.teacher], self.config.mixup_alpha, rng, inputs.groups)
        if inputs.events is not None:  # strong labels mix as events: both clips' events, weighted
            inputs.events, inputs.strongly_labelled = mix_events(inputs.events, inputs.strongly_labelled, lam, order)
