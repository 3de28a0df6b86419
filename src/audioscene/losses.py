"""The loss of a training micro-batch, per clip, term by term: the clip BCE of the paper
(docs/protocol.md §3), knowledge distillation from stored teacher targets, the frame BCE of strongly
labelled clips (`strong.py`) and the mean teacher's consistency term. `train.train_step` adds them
in `clip_losses`; each is a pure function of the model's outputs and its targets."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .strong import frame_targets


def bce_loss(clipwise: torch.Tensor, target: torch.Tensor, eps: float = 1e-7, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy on probabilities, in float32 and clamped (attention pools probabilities)."""
    return torch.nn.functional.binary_cross_entropy(clipwise.float().clamp(eps, 1 - eps), target.float(),
                                                    reduction=reduction)


def frame_loss(framewise: torch.Tensor, events: torch.Tensor, strongly_labelled: torch.Tensor, hop: float,
               duration: float) -> torch.Tensor:
    """Per clip: BCE of the frame outputs `[B, T', K]` (one per `hop` seconds) against the events'
    frame targets on the same grid (`strong.frame_targets`), 0 for clips without strong labels."""
    targets = frame_targets(events, framewise.shape[1], hop, framewise.shape[2], duration)
    return bce_loss(framewise.float(), targets, reduction="none").mean(dim=(1, 2)) * strongly_labelled


def consistency(out: dict, teacher: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Per clip: the mean squared difference of the student's clip and frame outputs from the mean
    teacher's on the same (un-augmented) input, each averaged over its classes (and frames)."""
    with torch.no_grad():
        taught = teacher(features)
    clip = (out["clipwise"].float() - taught["clipwise"].float()).square().mean(dim=1)
    frames = (out["framewise"].float() - taught["framewise"].float()).square().mean(dim=(1, 2))
    return clip + frames


@dataclass
class Targets:
    """What a micro-batch is taught with (on the model's device; None where unused): clip targets,
    which clips have no labels, the distillation teacher's targets, strong-label events `[B, E, 4]`
    and which clips have them."""

    clips: torch.Tensor
    unlabelled: torch.Tensor | None = None
    teacher: torch.Tensor | None = None
    events: torch.Tensor | None = None
    strongly_labelled: torch.Tensor | None = None


def clip_losses(out: dict, targets: Targets, config, hop: float, mean_teacher: tuple | None = None) -> torch.Tensor:
    """The loss of each clip `[B]`: clip BCE, mixed with distillation by `kd_lambda`, plus
    `strong_weight` × the frame BCE, plus the consistency term weighted by the mean teacher's
    ramp-up (`mean_teacher` = (teacher model, weight now, the un-augmented input)).

    With unlabelled clips in the batch (their share `unlabelled_share`, `batches.with_unlabelled`),
    their supervised terms are 0 and the labelled clips' are divided by `1 − unlabelled_share`, so
    that a batch's supervised loss is the mean over its labelled clips (as the DCASE mean-teacher
    systems average it) and the consistency term, a mean over all clips, does not outweigh it by
    the share of unlabelled clips."""
    per_clip = bce_loss(out["clipwise"], targets.clips, reduction="none").mean(dim=1)
    if targets.teacher is not None:
        distilled = bce_loss(out["clipwise"], targets.teacher, reduction="none").mean(dim=1)
        per_clip = (1 - config.kd_lambda) * per_clip + config.kd_lambda * distilled
    if targets.events is not None and config.strong_weight > 0:
        per_clip = per_clip + config.strong_weight * frame_loss(out["framewise"], targets.events, targets.strongly_labelled,
                                                                hop, config.clip_seconds)
    if targets.unlabelled is not None:  # clips without labels learn only from the mean teacher
        per_clip = per_clip * ~targets.unlabelled / (1 - config.unlabelled_share)
    if mean_teacher is not None:
        model, weight, features = mean_teacher
        per_clip = per_clip + weight * consistency(out, model, features)
    return per_clip
