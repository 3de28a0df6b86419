"""ONNX export of a trained model, optionally with the log-mel front end, checked against PyTorch.

The exported graph has a dynamic batch and time axis and two outputs, `clipwise` `[B, K]` and
`framewise` `[B, T', K]`. Its input is `logmel` `[B, frames, 64]`, or with the front end
`waveform` `[B, samples]` at 16 kHz. The labels, frame hop and front-end settings travel in the
file's metadata, so `OnnxModel` / `Tagger.from_onnx` need nothing else.

>>> from audioscene.export import export_onnx
>>> export_onnx("runs/b_att", "b_att.onnx", with_frontend=True)  # doctest: +SKIP
Parity(clipwise=1.3e-06, framewise=4.1e-06, tolerance=0.0001)
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ._io import atomic_open
from .checkpoints import Run
from .errors import ExportError, InputError
from .features import FrontendConfig, LogMel
from .labels import LabelSet
from .models import AudioModel

METADATA_KEY = "audioscene"


FRONTEND_PRECISIONS = {"float64": torch.float64, "float32": torch.float32}


class OnnxLogMel(nn.Module):
    """`LogMel` in export-friendly form: framing by `unfold` and the DFT as two matrix products (ONNX
    has no float64 FFT that every runtime implements). In float64 (default) it is as exact as
    `LogMel`'s own FFT; float32 is faster but leaks ~1e-5 of a loud tone into every bin, which
    `log(mel + 0.01)` turns into up to ~1e-3 in quiet bands (`Parity.frontend` reports the measured
    deviation). Uncentred frames are `window_samples` long: the window is zero beyond, so those DFT
    rows are left out (400 of 512 for the default front end); centred ones (as kind "panns") are
    `n_fft` long, after the reflection at both ends. The kind's own methods weigh and compress the
    spectrum, as in `LogMel`."""

    def __init__(self, logmel: LogMel, precision: str = "float64"):
        super().__init__()
        if precision not in FRONTEND_PRECISIONS:
            raise ExportError(f"front-end precision {precision!r}: choose {' or '.join(FRONTEND_PRECISIONS)}")
        self.config = config = logmel.config
        self.dtype = FRONTEND_PRECISIONS[precision]
        n = config.n_fft
        self.frame_length = used = n if config.centred else config.window_samples
        angle = 2 * np.pi * np.outer(np.arange(used), np.arange(n // 2 + 1)) / n
        window = logmel.window.double().cpu().numpy()[:used, None]
        self.register_buffer("cos", torch.tensor(window * np.cos(angle), dtype=self.dtype))
        self.register_buffer("sin", torch.tensor(-window * np.sin(angle), dtype=self.dtype))
        self.kind = config.frontend_kind
        # a float64 filterbank follows the graph's precision; a float32 one stays float32, as in LogMel
        mel_dtype = self.dtype if self.kind.mel_precision == torch.float64 else torch.float32
        self.register_buffer("mel", logmel.mel.detach().cpu().clone().to(mel_dtype))

    def forward(self, waveform: Tensor) -> Tensor:
        cfg = self.config
        waveform = self.kind.prepare(waveform)
        n_samples = waveform.shape[1]
        if cfg.centred:  # the graph takes at least a second of audio: always long enough to reflect
            half = cfg.n_fft // 2
            padded = nn.functional.pad(waveform[:, None], (half, half), mode="reflect")[:, 0]
        else:
            n_frames = 1 + max(n_samples - cfg.window_samples, 0) // cfg.hop_samples
            padded = nn.functional.pad(waveform, (0, (n_frames - 1) * cfg.hop_samples + cfg.window_samples - n_samples))
        frames = padded.unfold(1, self.frame_length, cfg.hop_samples).to(self.dtype)  # (batch, frames, length)
        magnitude = torch.sqrt((frames @ self.cos) ** 2 + (frames @ self.sin) ** 2)
        return self.kind.finish(cfg, self.kind.compress(cfg, self.kind.mel_energies(magnitude, self.mel)).float())


class _Outputs(nn.Module):
    """(front end →) model → `(clipwise, framewise)`: the graph that is exported."""

    def __init__(self, model: AudioModel, frontend: LogMel | None, precision: str = "float64"):
        super().__init__()
        self.model = model
        self.frontend = OnnxLogMel(frontend, precision) if frontend is not None else None

    def forward(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model(self.frontend(inputs) if self.frontend is not None else inputs)
        return out["clipwise"], out["framewise"]


@dataclass(frozen=True)
class Parity:
    """Largest absolute differences between ONNX Runtime and PyTorch outputs, and (with the front
    end in the graph) between the exported front end's log-mel and `LogMel`'s."""

    clipwise: float
    framewise: float
    tolerance: float
    frontend: float = 0.0

    @property
    def ok(self) -> bool:
        return max(self.clipwise, self.framewise) <= self.tolerance


def _require_onnx():
    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(missing)}: pip install 'audioscene[onnx]'")


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter prints its progress and logs every graph pass; keep the user's console clean."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnx_ir", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_model(model: AudioModel, frontend: LogMel, labels: LabelSet, path: str | os.PathLike,
                 with_frontend: bool = False, tolerance: float = 1e-4, frontend_precision: str = "float64") -> Parity:
    """Export `model` (and `frontend` if `with_frontend`) to `path` (written atomically), then
    compare ONNX Runtime with PyTorch on random inputs of two lengths; raises `ExportError` when
    they differ by more than `tolerance` (the file is not written then)."""
    _require_onnx()
    import onnx

    if not model.exportable:
        raise InputError(f"{model.config.name} does not export to ONNX (only models that take audio do; it reads "
                         "AudioSet's released embeddings)" if not model.takes_audio else
                         f"{model.config.name} does not export to ONNX ({getattr(model, 'onnx_blocker', '')})")
    graph = _Outputs(model.eval().cpu(), frontend.cpu() if with_frontend else None, frontend_precision).eval()
    cfg = frontend.config
    # a model that cuts long inputs into chunks (CED) exports its one-piece path: inputs up to max_frames
    max_frames = getattr(model, "max_frames", None)
    max_samples = 2**31 - 1 if max_frames is None else longest_input(cfg, max_frames)
    seconds = min(10.0, max_samples / cfg.sample_rate)
    if with_frontend:
        example = torch.zeros(2, int(seconds * cfg.sample_rate))
        dims = {0: torch.export.Dim("batch", min=1, max=4096),
                1: torch.export.Dim("samples", min=cfg.sample_rate, max=max_samples)}
        input_name = "waveform"
    else:
        example = torch.zeros(2, cfg.n_frames(int(seconds * cfg.sample_rate)), cfg.n_mels)
        dims = {0: torch.export.Dim("batch", min=1, max=4096),
                1: torch.export.Dim("frames", min=model.min_frames, max=max_frames or 2**31 - 1)}
        input_name = "logmel"
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(graph, (example,), dynamo=True, input_names=[input_name],
                                    output_names=["clipwise", "framewise"], dynamic_shapes=(dims,), verbose=False)
    proto = program.model_proto
    metadata = {"labels": list(labels.names), "frame_hop": model.frame_hop, "frontend": asdict(cfg),
                "input": input_name, "model": model.config.name, "max_frames": max_frames,
                "model_config": model.config.to_dict(),
                "frontend_precision": frontend_precision if with_frontend else None}
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    data = proto.SerializeToString()
    lengths = (10.0, 23.3) if max_frames is None else (seconds, 0.61 * seconds)
    parity = check_parity(data, graph, input_name, cfg, tolerance, lengths=lengths)
    if not parity.ok:
        raise ExportError(f"{path}: ONNX Runtime differs from PyTorch by {max(parity.clipwise, parity.framewise):.2e} "
                          f"(> {tolerance}); not written")
    onnx.checker.check_model(proto)
    with atomic_open(path, "wb") as f:
        f.write(data)
    return parity


def longest_input(cfg: FrontendConfig, max_frames: int) -> int:
    """The most samples the front end `cfg` turns into at most `max_frames` frames."""
    samples = max_frames * cfg.hop_samples + cfg.n_fft
    while cfg.n_frames(samples) > max_frames:
        samples -= 1
    return samples


def check_parity(onnx_model: bytes | str | os.PathLike, graph: nn.Module, input_name: str, cfg: FrontendConfig,
                 tolerance: float = 1e-4, seed: int = 0, lengths: tuple[float, ...] = (10.0, 23.3)) -> Parity:
    """Max |ONNX Runtime − PyTorch| over clipwise and framewise, on inputs of `lengths` seconds; with
    the front end in the graph also max |its log-mel − `LogMel`'s| (the reference front end)."""
    import onnxruntime as ort

    source = str(onnx_model) if not isinstance(onnx_model, bytes) else onnx_model
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    worst = [0.0, 0.0, 0.0]
    reference = LogMel(cfg)
    for seconds in lengths:
        samples = int(seconds * cfg.sample_rate)
        wave = 0.3 * torch.randn(2, samples, generator=generator)
        wave[:, samples // 2:] *= 1e-3  # a quiet half, where front-end rounding shows most
        logmel = reference(wave)
        inputs = wave if input_name == "waveform" else logmel
        with torch.no_grad():
            expected = graph(inputs)
            if input_name == "waveform":
                worst[2] = max(worst[2], float((graph.frontend(wave) - logmel).abs().max()))
        got = session.run(None, {input_name: inputs.numpy()})
        for i in range(2):
            worst[i] = max(worst[i], float(np.abs(got[i] - expected[i].numpy()).max()))
    return Parity(worst[0], worst[1], tolerance, worst[2])


def export_onnx(run: str | os.PathLike | Run, path: str | os.PathLike, checkpoint: str | os.PathLike = "best",
                with_frontend: bool = False, tolerance: float = 1e-4, frontend_precision: str = "float64",
                weights: str = "auto") -> Parity:
    """Export one checkpoint of a run ("best", "last" or a path; `checkpoints.Run.select`): its
    `weights` ("auto": the run's, i.e. the moving average when it keeps one; "raw"; "ema")."""
    if checkpoint == "avg":
        raise ExportError("export one checkpoint ('best', 'last' or a path); 'avg' is several models")
    (source, state), = Run.open(run).select(checkpoint)
    model, frontend, labels = state.build(source, weights)
    return export_model(model, frontend, labels, path, with_frontend, tolerance, frontend_precision)


class OnnxModel:
    """An exported model run by ONNX Runtime, usable wherever `Tagger` takes a model."""

    takes_audio = True  # only models that take audio export (a waveform input when the front end is inside)

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        _require_onnx()
        import onnxruntime as ort

        path = Path(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.metadata = json.loads(self.session.get_modelmeta().custom_metadata_map[METADATA_KEY])
        except (KeyError, json.JSONDecodeError):
            raise ExportError(f"{path}: not exported by audioscene (no '{METADATA_KEY}' metadata)") from None
        except Exception as exc:  # onnxruntime raises its own types for unreadable files
            raise ExportError(f"{path}: cannot load the ONNX model ({type(exc).__name__}: {exc})") from None
        try:
            self.frame_hop = float(self.metadata["frame_hop"])
            self.takes_waveform = self.metadata["input"] == "waveform"
            self.labels = LabelSet(tuple(self.metadata["labels"]))
            self.frontend_config = FrontendConfig(**self.metadata["frontend"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"{path}: incomplete audioscene metadata in the ONNX file ({type(exc).__name__}: "
                              f"{exc})") from None

    def eval(self) -> "OnnxModel":
        return self

    def to(self, device) -> "OnnxModel":
        return self

    def __call__(self, inputs: Tensor) -> dict[str, Tensor]:
        clipwise, framewise = self.session.run(None, {self.metadata["input"]: inputs.cpu().numpy()})
        return {"clipwise": torch.from_numpy(clipwise), "framewise": torch.from_numpy(framewise),
                "frame_hop": self.frame_hop}
