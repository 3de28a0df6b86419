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
from torch.utils.data import DataLoader, Dataset

from .devices import autocast, resolve_device
from .errors import InputError
from .features import LogMel
from .models import AudioModel

if TYPE_CHECKING:
    from .export import OnnxModel


class Predictor:
    """`predictor(waves [B, samples])` → mean over the models of `(clipwise [B, K], framewise [B, T', K])`."""

    def __init__(self, models: Sequence[AudioModel | OnnxModel], frontend: LogMel,
                 device: str | torch.device = "auto", amp: bool = False):
        if not models:
            raise InputError("need at least one model")
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.models = [m.eval().to(self.device) for m in models]
        self.frontend = frontend.to(self.device)
        self.amp = amp

    @torch.inference_mode()
    def __call__(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 outputs on the CPU; an ONNX export with the front end inside takes the waveform."""
        waves = waves.to(self.device)
        amp_context, _ = autocast(self.device, amp=self.amp, cpu_bf16=self.amp)
        logmel, clipwise, framewise = None, 0.0, 0.0
        for model in self.models:
            if getattr(model, "takes_waveform", False):
                out = model(waves)
            else:
                logmel = self.frontend(waves) if logmel is None else logmel
                with amp_context:
                    out = model(logmel)
            clipwise = clipwise + out["clipwise"].float()
            framewise = framewise + out["framewise"].float()
        n = len(self.models)
        return (clipwise / n).cpu(), (framewise / n).cpu()

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
