"""The HEAR API (Turian et al. 2022, "HEAR: Holistic Evaluation of Audio Representations"): any run
of the tool, or a model of the zoo, as a HEAR module.

    from audioscene import hear
    model = hear.load_model("pretrained:efficientat_mn10_as")   # or a run folder
    scene = hear.get_scene_embeddings(audio, model)              # [n_sounds, size]
    frames, times = hear.get_timestamp_embeddings(audio, model)  # [n_sounds, n_timestamps, size], ms

`audio` is `[n_sounds, n_samples]` float32 at `model.sample_rate`. Embeddings are the model's own
(`models.AudioModel`: `embedding` for a scene, `frame_embedding` for timestamps). HEAR asks for a
timestamp hop of at most 50 ms; our models' frames are coarser (0.32 s), so the audio is also run
shifted by `k · hop` for `k = 1 … shifts − 1` (hop = frame hop / shifts, a whole number of samples,
at most 50 ms: 40 ms for a 0.32 s frame) and the shifted
runs' frames interleaved: timestamp `m` is frame `m // shifts` of the run shifted by `m % shifts`
hops, stamped at its centre, `m · hop + frame_hop / 2` (in milliseconds).
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from .checkpoints import Run
from .devices import resolve_device
from .errors import InputError

MAX_HOP_S = 0.05  # HEAR's largest timestamp hop


class HearModel(nn.Module):
    """A model and its front end with HEAR's attributes: `sample_rate`, `scene_embedding_size`,
    `timestamp_embedding_size`, and the timestamp hop `hop_s` (`step` samples; `shifts` runs per
    frame)."""

    def __init__(self, model: nn.Module, frontend: nn.Module, device: str | torch.device = "auto"):
        super().__init__()
        if not model.takes_audio:
            raise InputError(f"{model.config.name} reads AudioSet's released embeddings, not audio: HEAR needs audio")
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model, self.frontend = model.eval().to(self.device), frontend.to(self.device)
        self.sample_rate = frontend.config.sample_rate
        with torch.no_grad():
            probe = self.model(self.frontend(torch.zeros(1, self.sample_rate, device=self.device)))
        self.scene_embedding_size = self.timestamp_embedding_size = probe["embedding"].shape[1]
        self.frame_hop = float(model.frame_hop)
        # the fewest shifts that split a frame into whole samples of at most MAX_HOP_S each
        frame_samples = round(self.frame_hop * self.sample_rate)
        self.shifts = next(n for n in range(max(1, math.ceil(frame_samples / (MAX_HOP_S * self.sample_rate) - 1e-9)),
                                            frame_samples + 1) if frame_samples % n == 0)
        self.step = frame_samples // self.shifts  # samples
        self.hop_s = self.step / self.sample_rate

    def embed(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        if audio.dim() != 2:
            raise InputError(f"expected audio [n_sounds, n_samples], got shape {tuple(audio.shape)}")
        with torch.no_grad():
            out = self.model(self.frontend(audio.to(self.device, torch.float32)))
        return {"embedding": out["embedding"].float(), "frame_embedding": out["frame_embedding"].float()}


def load_model(model_file_path: str | os.PathLike = "", device: str = "auto") -> HearModel:
    """A run folder (its best checkpoint) or `pretrained:NAME` as a HEAR model; HEAR's default path
    "" means the zoo's `efficientat_mn10_as`."""
    ((path, state),) = Run.open(model_file_path or "pretrained:efficientat_mn10_as").best()
    model, frontend, _ = state.build(path)
    return HearModel(model, frontend, device)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """`[n_sounds, scene_embedding_size]`: each sound's clip embedding."""
    return model.embed(audio)["embedding"]


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """`([n_sounds, n_timestamps, size], [n_sounds, n_timestamps])`: frame embeddings every
    `model.hop_s` seconds (see the module docstring) and their centres in milliseconds."""
    step = model.step
    runs = [model.embed(audio[:, k * step:] if k * step < audio.shape[1] else audio[:, -1:])["frame_embedding"]
            for k in range(model.shifts)]
    frames = min(run.shape[1] for run in runs)
    embeddings = torch.stack([run[:, :frames] for run in runs], dim=2).flatten(1, 2)  # frame j, shift k → j·shifts + k
    times = (torch.arange(embeddings.shape[1], dtype=torch.float64) * model.hop_s + model.frame_hop / 2) * 1000
    return embeddings, times.float().to(embeddings.device).expand(audio.shape[0], -1)
