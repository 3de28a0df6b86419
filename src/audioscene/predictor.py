"""Model outputs for batches of waveforms, for evaluation (fixed clips, Table 2) and for `Tagger`
(windows of recordings) alike: one or more models whose outputs are averaged ("Avg"), their front
end, a device and a precision.

The front end always runs in float32 (its FFT in float64). The models run in float32 unless
`amp`: bf16 rounding of the scores moves mAP by ~1e-3, the size of the gaps between the paper's
models, so reduced precision is a choice for speed, never the default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .devices import autocast, resolve_device
from .errors import InputError
from .features import LogMel
from .models import AudioModel

if TYPE_CHECKING:
    from .export import OnnxModel


class Predictor:
    """`predictor(waves [B, samples])` → mean over the models of `(clipwise [B, K], framewise [B, T', K])`.

    `frontend` is the models' shared front end (a `LogMel`, or `nn.Identity` for models on
    embeddings), or one per model (an ensemble of families, e.g.
    EfficientAT's and PANNs' at 32 kHz): each distinct front end runs once on the same audio. Frame
    outputs are averaged on the coarsest member's grid (`frame_hop`): a member with a finer hop that
    divides it (CED's 0.16 s beside CNN14's 0.32 s) contributes the mean of its frames within each
    coarse frame; members whose front ends give a frame more or less (centred or not) are averaged
    over the frames they all have."""

    def __init__(self, models: Sequence[AudioModel | OnnxModel], frontend: nn.Module | Sequence[nn.Module],
                 device: str | torch.device = "auto", amp: bool = False):
        if not models:
            raise InputError("need at least one model")
        frontends = list(frontend) if isinstance(frontend, (list, tuple)) else [frontend] * len(models)
        if len(frontends) != len(models):
            raise InputError(f"{len(frontends)} front ends for {len(models)} models: give one, or one per model")
        rates = {f.config.sample_rate for f in frontends if isinstance(f, LogMel)}
        if len(rates) > 1:
            raise InputError(f"models at different sample rates cannot be averaged: {sorted(rates)} Hz")
        hops = sorted({float(m.frame_hop) for m in models})
        self.frame_hop = hops[-1]
        self.pooling = [round(self.frame_hop / m.frame_hop) for m in models]
        if any(abs(self.frame_hop / m.frame_hop - k) > 1e-6 for m, k in zip(models, self.pooling)):
            raise InputError(f"models with frame hops {hops} s cannot be averaged: each must divide the coarsest")
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.models = [m.eval().to(self.device) for m in models]
        self.frontends = [f.to(self.device) for f in frontends]
        self.frontend = self.frontends[0]
        self.amp = amp

    @torch.inference_mode()
    def __call__(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 outputs on the CPU; an ONNX export with the front end inside takes the waveform."""
        waves = waves.to(self.device)
        amp_context, _ = autocast(self.device, amp=self.amp, cpu_bf16=self.amp)
        inputs, clipwise, framewise = {}, 0.0, []
        for model, frontend in zip(self.models, self.frontends):
            if getattr(model, "takes_waveform", False):
                out = model(waves)
            else:
                key = getattr(frontend, "config", id(frontend))  # each distinct front end once
                if key not in inputs:
                    inputs[key] = frontend(waves)
                with amp_context:
                    out = model(inputs[key])
            clipwise = clipwise + out["clipwise"].float()
            framewise.append(out["framewise"].float())
        for i, k in enumerate(self.pooling):  # finer hops: the mean of the frames within each coarse frame
            if k > 1:
                frames = framewise[i][:, :framewise[i].shape[1] // k * k]
                framewise[i] = frames.unflatten(1, (-1, k)).mean(dim=2)
        frames = min(f.shape[1] for f in framewise)
        n = len(self.models)
        return (clipwise / n).cpu(), (sum(f[:, :frames] for f in framewise) / n).cpu()

    @torch.inference_mode()
    def embed(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's `(embedding [B, D], frame_embedding [B, T', D])`, float32 on the CPU: the
        vectors its outputs are read from (`models.AudioModel`). One model: an ensemble's members
        embed into different spaces."""
        if len(self.models) != 1:
            raise InputError("embeddings come from one model: give one run (and one checkpoint, not avg)")
        model, frontend = self.models[0], self.frontends[0]
        if getattr(model, "takes_waveform", False):
            raise InputError("an ONNX export gives scores only; embed with the run it was exported from")
        amp_context, _ = autocast(self.device, amp=self.amp, cpu_bf16=self.amp)
        with amp_context:
            out = model(frontend(waves.to(self.device)))
        if "frame_embedding" not in out:
            raise InputError(f"{model.config.name}: its family gives no embeddings")
        return out["embedding"].float().cpu(), out["frame_embedding"].float().cpu()

    def predict(self, dataset: Dataset, batch_size: int = 64, workers: int = 0, framewise: bool = False,
                desc: str = "predict", progress: bool = True) -> dict[str, np.ndarray]:
        """Outputs over a data set of `(waveform, target)` items, in its order: `clipwise` `[N, K]`
        (and `framewise` `[N, T', K]` if asked)."""
        from tqdm.auto import tqdm

        clipwise, frames = [], []
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
        for waves, _ in tqdm(loader, desc=desc, unit="batch", leave=False, disable=not progress):
            clip, frame = self(waves)
            clipwise.append(clip)
            if framewise:
                frames.append(frame)
        result = {"clipwise": torch.cat(clipwise).numpy()}
        if framewise:
            result["framewise"] = torch.cat(frames).numpy()
        return result
