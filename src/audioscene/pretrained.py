"""Pretrained checkpoints from elsewhere, turned into runs: PANNs' released AudioSet models
(`import_panns`, `audioscene import-panns`).

    audioscene import-panns Cnn14_mAP=0.431.pth --arch Cnn14 --out runs/cnn14

writes `runs/cnn14/epoch_001.pt` in our checkpoint format (the weights, the `panns` model config,
the front end of kind "panns" with the architecture's published settings, the 527 AudioSet labels
of our resources, and where it came from: file name, SHA-256, published mAP), usable wherever
`--run RUN` is: tag, detect, sed-tune, view, evaluate, report, predict, export-onnx and
`train --init RUN` (fine-tuning onto new labels).

The released files are `torch.save({"iteration", "model", "sampler"})`; the sampler holds numpy
arrays, pickled under numpy 1's module names in the 2019–20 files (`numpy.core.multiarray`) and
numpy 2's in re-saved copies (`numpy._core.multiarray`). They load with `weights_only=True`,
allowing numpy's array reconstruction under either name and nothing else: a pickle naming any other
global is refused, and nothing in the file is ever executed.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import models
from ._io import make_folder, sha256_of
from .checkpoints import Checkpoint, CheckpointError, checkpoint_path
from .config import TrainConfig
from .features import FrontendConfig, mel_matrix
from .labels import audioset


@dataclass(frozen=True)
class Release:
    """A released PANNs architecture: our model name, its front end, the file's name and the
    scores Kong et al. 2020 report for it on AudioSet's evaluation set (the report's row for it,
    `report.paper`, reads them from here)."""

    model: str
    frontend: FrontendConfig
    file_name: str  # the file's name on the Zenodo record (10.5281/zenodo.3987831)
    published: dict[str, float]  # score name of `metrics.SCORES` → value; a score not published has none


def _panns_frontend(sample_rate: int, window: int, hop: int, f_max: float) -> FrontendConfig:
    return FrontendConfig(sample_rate=sample_rate, window_ms=1000 * window / sample_rate,
                          hop_ms=1000 * hop / sample_rate, n_fft=window, n_mels=64, f_min=50.0, f_max=f_max,
                          kind="panns")


RELEASES: dict[str, Release] = {
    "Cnn14": Release("cnn14", _panns_frontend(32000, 1024, 320, 14000.0), "Cnn14_mAP=0.431.pth",
                     {"mAP": 0.431, "mAUC": 0.973, "d_prime": 2.732}),
    "Cnn14_16k": Release("cnn14_16k", _panns_frontend(16000, 512, 160, 8000.0), "Cnn14_16k_mAP=0.438.pth",
                         {"mAP": 0.438}),
    "Cnn14_DecisionLevelMax": Release("cnn14_decision_level_max", _panns_frontend(32000, 1024, 320, 14000.0),
                                      "Cnn14_DecisionLevelMax_mAP=0.385.pth", {"mAP": 0.385}),
}
FRONTEND_KEYS = ("spectrogram_extractor.stft.conv_real.weight", "spectrogram_extractor.stft.conv_imag.weight",
                 "logmel_extractor.melW")


def _numpy_globals() -> list:
    """numpy's array reconstruction (arrays, scalars and their dtypes), under numpy 1's and numpy
    2's module names: what the released files' sampler state needs, and nothing else."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    allowed = [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles an array's dtype by its class
    for name in dir(dtypes) if dtypes else ():
        kind = getattr(dtypes, name)
        if isinstance(kind, type) and issubclass(kind, np.dtype):
            allowed.append((kind, f"numpy.dtypes.{name}"))
    return allowed


def read_release(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of a released PANNs checkpoint (`torch.save({"model": ..., ...})`, or a bare
    state dict), loaded with `weights_only=True` and numpy's array reconstruction allowed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign, truncated or code-carrying files
        reason = " ".join(str(exc).split())
        named = re.search(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", reason)
        if named:
            raise CheckpointError(f"{path}: refused: the file's pickle names a global that is not numpy's array "
                                  f"reconstruction ({named.group(1) or named.group(2)}); it is not a released PANNs "
                                  "checkpoint and nothing of it was run") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: "
                              f"{reason[:200]})") from None
    weights = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not weights or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path}: holds no state dict of tensors (expected a dict with 'model')")
    return weights


def check_release(path: Path, weights: dict[str, torch.Tensor], arch: str, model: torch.nn.Module
                  ) -> dict[str, torch.Tensor]:
    """The model's weights of a released checkpoint of `arch`, checked against the keys and shapes of
    our `model` of it (the first mismatches named: a wrong class count shows as `fc_audioset`'s
    shape) and its front-end weights against the architecture's front end (a different mel
    filterbank or FFT size means another front end)."""
    release = RELEASES[arch]
    expected = {key: value.shape for key, value in model.state_dict().items()}
    frontend = {key: weights[key] for key in FRONTEND_KEYS if key in weights}
    own = {key: value for key, value in weights.items() if key not in FRONTEND_KEYS}
    problems = [f"missing {key}" for key in expected if key not in own]
    problems += [f"unexpected {key}" for key in own if key not in expected]
    problems += [f"{key} has shape {tuple(own[key].shape)}, {arch} has {tuple(shape)}"
                 for key, shape in expected.items() if key in own and own[key].shape != shape]
    if problems:
        raise CheckpointError(f"{path}: not a {arch} checkpoint ({len(problems)} mismatches: "
                              f"{'; '.join(problems[:3])})")
    melW = frontend.get("logmel_extractor.melW")
    ours = mel_matrix(release.frontend)
    if melW is not None and (tuple(melW.shape) != ours.shape
                             or not np.allclose(melW.double().numpy(), ours, rtol=1e-4, atol=1e-6)):
        raise CheckpointError(f"{path}: its mel filterbank ({tuple(melW.shape)}) is not {arch}'s published front "
                              f"end ({release.frontend.sample_rate} Hz, n_fft {release.frontend.n_fft}, 64 bands "
                              f"{release.frontend.f_min:g}-{release.frontend.f_max:g} Hz)")
    return own


def import_panns(path: str | os.PathLike, arch: str, out_dir: str | os.PathLike) -> Path:
    """Write a released PANNs checkpoint of `arch` (a key of `RELEASES`) as the run `out_dir`
    (`epoch_001.pt`); returns the checkpoint's path. `out_dir` must not hold checkpoints yet."""
    if arch not in RELEASES:
        raise CheckpointError(f"unknown architecture {arch!r}; choose one of {', '.join(RELEASES)}")
    path, out_dir = Path(path), Path(out_dir)
    if out_dir.is_dir() and any(out_dir.glob("epoch_*.pt")):
        raise CheckpointError(f"{out_dir}: holds checkpoints already; import into a new run folder")
    release = RELEASES[arch]
    labels = audioset().names
    model_config = models.variant_config(release.model, n_classes=len(labels), frontend=release.frontend)
    model = models.from_config(model_config)
    model.load_state_dict(check_release(path, read_release(path), arch, model))
    train_config = TrainConfig(model=release.model, frontend=release.frontend, epochs=1)
    source = {"imported_from": path.name, "sha256": sha256_of(path), "architecture": arch,
              "published": release.published, "released_as": release.file_name}
    out = checkpoint_path(make_folder(out_dir), 1)
    Checkpoint(epoch=1, model=model.state_dict(), model_config=model_config.to_dict(),
               frontend_config=asdict(release.frontend), labels=list(labels), train_config=train_config.to_dict(),
               history=[{"epoch": 1, **release.published}], run_id=uuid.uuid4().hex, source=source).save(out)
    return out
