"""The log-mel front end and its kinds (`FRONTEND_KINDS`, one class each).

`vggish` (the default; Hershey et al. 2017, docs/protocol.md §1): frames of 25 ms (periodic Hann
window) every 10 ms, no centring or padding, 512-point FFT magnitude, 64 HTK-mel triangular bands
between 125 and 7500 Hz built exactly as the reference `mel_features.spectrogram_to_mel_matrix`,
then `log(mel + 0.01)`. A 10 s clip at 16 kHz gives `1 + (160000 - 400) // 160 = 998` frames.

`panns` (the front end of PANNs' released models, Kong et al. 2020, computed there by torchlibrosa):
frames centred on every hop (the signal reflected by half a window at both ends), periodic Hann
window as long as the FFT, power spectrum, mel bands on the Slaney scale with Slaney's area
normalisation (librosa's default filterbank), then `10 · log10(max(mel, 1e-10))` (dB). A 10 s clip
at 32 kHz with hop 320 gives `1 + 320000 // 320 = 1001` frames. PANNs' `bn0` (a BatchNorm over the
bands) belongs to the model (`input_norm`), as for our ResNets.

`efficientat` (the front end of EfficientAT's MobileNets, Schmid et al. 2023): pre-emphasis, centred
frames, a symmetric Hann window, power spectrum, Kaldi's mel filterbank, `(log(mel + 1e-5) + 4.5) / 5`
(`EfficientATKind`). A 10 s clip at 32 kHz with hop 320 gives `1 + 319999 // 320 = 1000` frames.

`ced` (the front end of CED's transformers, Dinkel et al. 2024): centred frames, a periodic Hann
window as long as the FFT, power spectrum, HTK-mel triangles in Hz without normalisation, dB, and each
clip floored at its loudest value less 120 dB (`CEDKind`). A 10 s clip at 16 kHz with hop 160 gives
`1 + 160000 // 160 = 1001` frames.

A kind is a `FrontendKind`: its filterbank, which spectrum the bands weigh, its log scale, whether
frames are centred, its window, what it does to the waveform first and to the whole clip's log-mel
last, and the value of silence. `LogMel` and the exported graph (`export.OnnxLogMel`)
both call those methods, so a new kind is one subclass and one `register_kind` line.

>>> import torch
>>> from audioscene.features import LogMel
>>> LogMel()(torch.zeros(2, 160000)).shape
torch.Size([2, 998, 64])
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from .audio import SAMPLE_RATE, load
from .errors import InputError, check_number
from .registries import register

# Allowed values of each front-end setting on its own (n_fft and f_max also depend on the others).
FRONTEND_RANGES: dict[str, dict] = {
    "sample_rate": dict(integer=True, low=1000), "window_ms": dict(low=0, low_open=True),
    "hop_ms": dict(low=0, low_open=True), "n_fft": dict(integer=True, low=1), "n_mels": dict(integer=True, low=1),
    "f_min": dict(low=0), "f_max": dict(low=0, low_open=True), "log_offset": dict(low=0, low_open=True),
}
PANNS_AMIN = 1e-10  # PANNs' floor of the mel power before the dB conversion (-100 dB)


@dataclass(frozen=True)
class FrontendConfig:
    """Parameters of the log-mel front end; the defaults are VGGish's. They belong to a run: the
    data is decoded at `sample_rate`, the model takes `n_mels` bands every `hop_ms`, and the
    checkpoint and ONNX metadata record them."""

    sample_rate: int = field(default=SAMPLE_RATE, metadata={"help": "Hz the audio is decoded at"})
    window_ms: float = field(default=25.0, metadata={"help": "analysis window in ms"})
    hop_ms: float = field(default=10.0, metadata={"help": "frame hop in ms (the output frame hop is a multiple of it)"})
    n_fft: int | None = field(default=None, metadata={"help": "FFT size, at least the window in samples (default: "
                                                                "the next power of two, 512 for 25 ms at 16 kHz)"})
    n_mels: int = field(default=64, metadata={"help": "mel bands (the model's input height)"})
    f_min: float = field(default=125.0, metadata={"help": "lowest mel band edge in Hz"})
    f_max: float | None = field(default=None, metadata={"help": "highest mel band edge in Hz, at most half the sample "
                                                                "rate (default: 7500 at 16 kHz as VGGish, 15/32 of a "
                                                                "higher rate as EfficientAT's 15 kHz at 32 kHz, half "
                                                                "a lower rate: the bands follow the audio the rate "
                                                                "carries, as every 32 kHz model family does)"})
    log_offset: float = field(default=0.01, metadata={"help": "vggish: log(mel + log_offset)"})
    kind: str = field(default="vggish", metadata={
        "help": "the front end's kind (features.FRONTEND_KINDS): vggish: magnitude, HTK mel, log(mel + offset), "
                "no centring; panns: PANNs' front end (centred frames, power, Slaney mel, dB); efficientat: "
                "EfficientAT's (pre-emphasis, centred frames, power, Kaldi mel, (log(mel + 1e-5) + 4.5) / 5); ced: CED's "
                "(centred frames, power, HTK mel in Hz, dB floored 120 dB below each clip's loudest)",
        "flags": ("--frontend-kind",), "choices": lambda: tuple(FRONTEND_KINDS)})

    def __post_init__(self):
        if self.kind not in FRONTEND_KINDS:
            raise InputError(f"front-end kind {self.kind!r}: choose one of {', '.join(FRONTEND_KINDS)}")
        for name, bounds in FRONTEND_RANGES.items():
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), **bounds)
        for name, samples in (("window_ms", self.window_samples), ("hop_ms", self.hop_samples)):
            if samples < (2 if name == "window_ms" else 1):
                raise InputError(f"{name} = {getattr(self, name)}: {samples} samples at {self.sample_rate} Hz; "
                                 f"expected at least {2 if name == 'window_ms' else 1}")
        if self.n_fft is None:  # the FFT size follows the window, as PANNs' 1024 for 32 ms at 32 kHz
            object.__setattr__(self, "n_fft", 1 << (self.window_samples - 1).bit_length())
        if self.f_max is None:
            object.__setattr__(self, "f_max", default_f_max(self.sample_rate))
        check_number("n_fft", self.n_fft, integer=True, low=self.window_samples)
        if not self.f_min < self.f_max <= self.sample_rate / 2:
            raise InputError(f"f_min {self.f_min:g} Hz and f_max {self.f_max:g} Hz: need f_min < f_max <= "
                             f"{self.sample_rate / 2:g} Hz (half the sample rate)")
        empty = int((mel_matrix(self).sum(axis=0) == 0).sum())
        if empty:
            raise InputError(f"n_mels = {self.n_mels}: {empty} of the bands hold no FFT bin between {self.f_min:g} and "
                             f"{self.f_max:g} Hz at n_fft {self.n_fft}; use fewer bands, a larger n_fft or a wider "
                             "range")

    @property
    def window_samples(self) -> int:
        return int(round(self.sample_rate * self.window_ms / 1000))

    @property
    def hop_samples(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def frontend_kind(self) -> "FrontendKind":
        return FRONTEND_KINDS[self.kind]

    @property
    def silence(self) -> float:
        """The log-mel value of digital silence (-4.6 for vggish's defaults, -100 dB for panns)."""
        return self.frontend_kind.silence(self)

    @property
    def centred(self) -> bool:
        """Whether frames are centred on their hop (the signal reflected by half an FFT at both ends)."""
        return self.frontend_kind.centred

    def n_frames(self, n_samples: int) -> int:
        """Frames produced for `n_samples` samples (inputs shorter than a window give one frame)."""
        n_samples = self.frontend_kind.prepared_length(n_samples)
        if self.centred:
            return 1 + n_samples // self.hop_samples
        return 1 + max(n_samples - self.window_samples, 0) // self.hop_samples


def default_f_max(sample_rate: int) -> float:
    """The highest band edge when none is given: VGGish's 7500 Hz at 16 kHz, `15/32` of a higher
    rate (15 kHz at 32 kHz, EfficientAT's; PANNs take 14 kHz), half of a lower one. A fixed 7500 Hz
    would leave half of a 32 kHz signal unseen and crowd 128 bands into too few FFT bins.

    >>> [default_f_max(rate) for rate in (8000, 16000, 32000, 44100)]
    [4000.0, 7500.0, 15000.0, 20671.875]
    """
    return min(sample_rate / 2, max(7500.0, sample_rate * 15 / 32))


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: `1127 * ln(1 + f / 700)`."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def slaney_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz (3 bands per 200 Hz), logarithmic
    above (27 bands per factor 6.4)."""
    hz = np.asarray(hz, dtype=np.float64)
    step, log_step = 200.0 / 3, np.log(6.4) / 27.0
    return np.where(hz < 1000.0, hz / step, 1000.0 / step + np.log(np.maximum(hz, 1e-12) / 1000.0) / log_step)


def slaney_hz(mel: np.ndarray) -> np.ndarray:
    """The inverse of `slaney_mel`."""
    step, log_step = 200.0 / 3, np.log(6.4) / 27.0
    return np.where(mel < 1000.0 / step, mel * step, 1000.0 * np.exp(log_step * (mel - 1000.0 / step)))


def mel_matrix(config: FrontendConfig | None = None) -> np.ndarray:
    """`[n_fft // 2 + 1, n_mels]` filterbank weights of the front end's kind."""
    config = config or FrontendConfig()
    nyquist = config.sample_rate / 2
    if not 0 <= config.f_min < config.f_max <= nyquist:
        raise InputError(f"need 0 <= f_min < f_max <= {nyquist} Hz, got {config.f_min}, {config.f_max}")
    return config.frontend_kind.filterbank(config)


# --- the kinds ------------------------------------------------------------------------------------

class FrontendKind:
    """One kind of log-mel front end. `LogMel` frames the signal (centred or not), takes the FFT
    magnitude in float64 and calls `mel_energies` and `compress`; the exported graph calls the same
    methods, so they must be torch operations ONNX knows."""

    name: str = ""
    centred: bool = False  # frames centred on their hop: the signal reflected by half an FFT at both ends
    periodic_window: bool = True  # a periodic Hann window (False: symmetric, as torch.hann_window(periodic=False))
    mel_precision: torch.dtype = torch.float32  # of the filterbank (float64 where the energies span decades)
    float32_window = False  # the window's values as torch.hann_window computes them in float32

    def prepare(self, waveform: Tensor) -> Tensor:
        """The waveform `[B, samples]` before framing (e.g. a pre-emphasis filter); as it is by default."""
        return waveform

    def prepared_length(self, n_samples: int) -> int:
        """How many samples `prepare` leaves of `n_samples`."""
        return n_samples

    def filterbank(self, config: FrontendConfig) -> np.ndarray:
        """`[n_fft // 2 + 1, n_mels]` weights (`config.f_min` < `config.f_max` <= Nyquist checked)."""
        raise NotImplementedError

    def mel_energies(self, magnitude: Tensor, mel: Tensor) -> Tensor:
        """Band energies of float64 FFT magnitudes `[..., bins]` through the filterbank `mel`."""
        raise NotImplementedError

    def compress(self, config: FrontendConfig, energies: Tensor) -> Tensor:
        """Band energies to the kind's log scale."""
        raise NotImplementedError

    def finish(self, config: FrontendConfig, logmel: Tensor) -> Tensor:
        """The whole clips' log-mel `[B, frames, bands]` after `compress` (which may see a block of
        frames at a time), e.g. a floor relative to each clip's loudest value; as it is by default."""
        return logmel

    def silence(self, config: FrontendConfig) -> float:
        """The log-mel value of digital silence (what padding of a short input is filled with)."""
        raise NotImplementedError


class VGGishKind(FrontendKind):
    """VGGish's front end (see the module docstring): magnitude, HTK mel, `log(mel + log_offset)`."""

    name = "vggish"

    def filterbank(self, config: FrontendConfig) -> np.ndarray:
        """As VGGish's `spectrogram_to_mel_matrix`: bands spaced evenly on the HTK mel scale between
        `f_min` and `f_max`, each triangle rising from its lower to its centre edge and falling to
        its upper edge (edges and bins compared in mel); the DC bin gets no weight."""
        bins_mel = hz_to_mel(np.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1))
        edges = np.linspace(hz_to_mel(config.f_min), hz_to_mel(config.f_max), config.n_mels + 2)
        lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
        rising = (bins_mel[:, None] - lower) / (centre - lower)
        falling = (upper - bins_mel[:, None]) / (upper - centre)
        weights = np.maximum(0.0, np.minimum(rising, falling))
        weights[0, :] = 0.0
        return weights

    def mel_energies(self, magnitude: Tensor, mel: Tensor) -> Tensor:
        return magnitude.float() @ mel

    def compress(self, config: FrontendConfig, energies: Tensor) -> Tensor:
        return torch.log(energies + config.log_offset)

    def silence(self, config: FrontendConfig) -> float:
        return math.log(config.log_offset)


class PannsKind(FrontendKind):
    """PANNs' front end (see the module docstring): centred frames, power, Slaney mel, dB."""

    name = "panns"
    centred = True
    mel_precision = torch.float64  # mel power spans 20 decades

    def filterbank(self, config: FrontendConfig) -> np.ndarray:
        """As librosa's `filters.mel`: Slaney scale, triangles in Hz, each scaled to unit area (2 / width)."""
        edges = slaney_hz(np.linspace(slaney_mel(config.f_min), slaney_mel(config.f_max), config.n_mels + 2))
        bins = np.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1)
        rising = (bins[:, None] - edges[:-2]) / (edges[1:-1] - edges[:-2])
        falling = (edges[2:] - bins[:, None]) / (edges[2:] - edges[1:-1])
        return np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))

    def mel_energies(self, magnitude: Tensor, mel: Tensor) -> Tensor:
        return magnitude.square() @ mel

    def compress(self, config: FrontendConfig, energies: Tensor) -> Tensor:
        return 10 * torch.log10(energies.clamp(min=PANNS_AMIN))

    def silence(self, config: FrontendConfig) -> float:
        return 10 * math.log10(PANNS_AMIN)


class EfficientATKind(FrontendKind):
    """EfficientAT's front end (Schmid et al. 2023; `models/preprocess.py` of fschmid56/EfficientAT,
    evaluation mode): pre-emphasis `y[n] = x[n+1] − 0.97 x[n]` (one sample shorter), centred frames
    (reflected), a symmetric Hann window of `window_samples` centred in `n_fft`, power spectrum, Kaldi's
    mel filterbank (`kaldi_mel`, no VTLN warping, the Nyquist bin unweighted), `log(mel + 1e-5)`,
    then their fixed normalisation `(x + 4.5) / 5`."""

    name = "efficientat"
    centred = True
    periodic_window = False
    offset = 1e-5

    def prepare(self, waveform: Tensor) -> Tensor:
        if waveform.shape[1] < 2:
            waveform = nn.functional.pad(waveform, (0, 2 - waveform.shape[1]))
        return waveform[:, 1:] - 0.97 * waveform[:, :-1]

    def prepared_length(self, n_samples: int) -> int:
        return max(n_samples, 2) - 1

    def filterbank(self, config: FrontendConfig) -> np.ndarray:
        return kaldi_mel(config)

    def mel_energies(self, magnitude: Tensor, mel: Tensor) -> Tensor:
        return magnitude.square().float() @ mel

    def compress(self, config: FrontendConfig, energies: Tensor) -> Tensor:
        return (torch.log(energies + self.offset) + 4.5) / 5

    def silence(self, config: FrontendConfig) -> float:
        return (math.log(self.offset) + 4.5) / 5


class CEDKind(PannsKind):
    """CED's front end (Dinkel et al. 2024; `FrontEnd` in `models/audiotransformer.py` of RicherMans/CED,
    torchaudio's `MelSpectrogram` then `AmplitudeToDB(top_db=120)`): centred frames (reflected), a
    periodic Hann window as long as the FFT, power spectrum, HTK-mel triangles in Hz with peak 1 (no
    area normalisation), `10 log10(max(mel, 1e-10))` as PANNs', then every value of a clip floored at
    the clip's loudest less `top_db`. torchaudio floors a `[B, bands, frames]` batch at the whole
    batch's loudest; CED's inference runs one clip at a time, so per clip is what their models see."""

    name = "ced"
    top_db = 120.0
    # their window is torch's float32 Hann: its rounding moves what loud bins leak into the quietest
    # (the bands below 60 Hz) by up to 7e-4 dB
    float32_window = True

    def filterbank(self, config: FrontendConfig) -> np.ndarray:
        """torchaudio's `melscale_fbanks(norm=None, mel_scale="htk")`: edges evenly spaced on the HTK
        scale `2595 log10(1 + f / 700)` between `f_min` and `f_max`, triangles compared in Hz with
        the bins from 0 to the Nyquist rate. Computed in float32 in torchaudio's order, as CED's
        models were trained with it: exact arithmetic moves the wide high bands' edge weights by up
        to 5e-6 and their dB values by up to 1.4e-3."""
        edges_mel = torch.linspace(2595.0 * math.log10(1.0 + config.f_min / 700.0),
                                   2595.0 * math.log10(1.0 + config.f_max / 700.0), config.n_mels + 2)
        edges = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
        bins = torch.linspace(0, config.sample_rate // 2, config.n_fft // 2 + 1)[:, None]
        width = edges[1:] - edges[:-1]
        rising, falling = (bins - edges[:-2]) / width[:-1], (edges[2:] - bins) / width[1:]
        return torch.clamp(torch.minimum(rising, falling), min=0.0).double().numpy()

    def finish(self, config: FrontendConfig, logmel: Tensor) -> Tensor:
        return torch.maximum(logmel, logmel.amax(dim=(1, 2), keepdim=True) - self.top_db)


def kaldi_mel(config: FrontendConfig) -> np.ndarray:
    """Kaldi's mel filterbank (`mel-computations.cc`, as torchaudio's `compliance.kaldi.get_mel_banks`
    with `vtln_warp_factor` 1): bands evenly spaced on the mel scale `1127 ln(1 + f / 700)` between
    `f_min` and `f_max`, each triangle rising from its lower to its centre edge and falling to its
    upper edge (compared in mel), over the bins `0 .. n_fft/2 − 1`; the Nyquist bin gets no weight.

    Computed in float32 in torchaudio's order, as EfficientAT's models were trained with it: the
    triangles are differences of mel values near 4000, where float32 rounds to 2e-4, so exact
    arithmetic would move weights by up to 1.3e-5 and a loud tone at a band's edge by 1e-3 in log."""
    low = 1127.0 * math.log(1.0 + config.f_min / 700.0)
    delta = (1127.0 * math.log(1.0 + config.f_max / 700.0) - low) / (config.n_mels + 1)
    index = torch.arange(config.n_mels)[:, None]
    lower, centre, upper = low + index * delta, low + (index + 1.0) * delta, low + (index + 2.0) * delta
    bins = config.sample_rate / config.n_fft * torch.arange(config.n_fft // 2, dtype=torch.float32)
    bins_mel = (1127.0 * (1.0 + bins / 700.0).log())[None]
    weights = torch.clamp(torch.minimum((bins_mel - lower) / (centre - lower), (upper - bins_mel) / (upper - centre)),
                          min=0.0)
    return np.concatenate([weights.T.double().numpy(), np.zeros((1, config.n_mels))])


FRONTEND_KINDS: dict[str, FrontendKind] = {}


def register_kind(kind: FrontendKind) -> FrontendKind:
    """Add a front-end kind under `kind.name` (then `FrontendConfig(kind=name)`, `--frontend-kind`)."""
    return register(FRONTEND_KINDS, kind.name, kind, "front-end kind")


register_kind(VGGishKind())
register_kind(PannsKind())
register_kind(EfficientATKind())
register_kind(CEDKind())


class LogMel(nn.Module):
    """Waveforms `[B, samples]` (or `[samples]`) at the front end's rate → log-mel `[B, frames,
    n_mels]`, float32, of the front end's kind.

    Runs on whatever device the module (and input) lives on. Inputs shorter than one window are
    zero-padded to one frame (centred kinds: reflected where they can be, then zero-padded). The FFT
    runs in float64: a float32 FFT leaks about 1e-5 of a full-scale tone into every bin, which the
    logarithm magnifies past 1e-3 in quiet bands.
    """

    # On CPU, frames are processed in blocks that stay in cache (about 2x faster than all at once).
    cpu_block_frames = 512

    def __init__(self, config: FrontendConfig = FrontendConfig()):
        super().__init__()
        self.config = config
        n = config.window_samples
        window = np.zeros(config.n_fft)
        kind = config.frontend_kind
        hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / (n if kind.periodic_window else n - 1))
        if kind.float32_window:
            hann = torch.hann_window(n, periodic=kind.periodic_window, dtype=torch.float32).double().numpy()
        if config.centred:  # centred in the FFT frame, as librosa pads a shorter window
            start = (config.n_fft - n) // 2
            window[start:start + n] = hann
        else:  # at the frame's start, zero-padded to n_fft (VGGish)
            window[:n] = hann
        self.register_buffer("window", torch.tensor(window, dtype=torch.float64), persistent=False)
        self.kind = kind
        self.register_buffer("mel", torch.tensor(mel_matrix(config), dtype=self.kind.mel_precision), persistent=False)

    def forward(self, waveform: Tensor) -> Tensor:
        squeeze = waveform.dim() == 1
        batch = waveform[None] if squeeze else waveform
        if batch.dim() != 2:
            raise InputError(f"LogMel expects [batch, samples] or [samples], got shape {tuple(waveform.shape)}")
        cfg = self.config
        n_frames = cfg.n_frames(batch.shape[1])
        batch = frame_padding(self.kind.prepare(batch.float()), cfg)
        frames = batch.unfold(1, cfg.n_fft, cfg.hop_samples)[:, :n_frames]  # (batch, frames, n_fft), a view
        out = torch.empty(batch.shape[0], n_frames, cfg.n_mels, device=batch.device)
        if batch.device.type == "cpu":
            block = self.cpu_block_frames
            for item in range(batch.shape[0]):
                for start in range(0, n_frames, block):
                    self._logmel(frames[item, start:start + block], out[item, start:start + block])
        else:  # GPUs: the whole batch in one pass, a few large kernels instead of a loop of small ones
            self._logmel(frames, out)
        out = self.kind.finish(cfg, out)
        return out[0] if squeeze else out

    def _logmel(self, frames: Tensor, out: Tensor) -> None:
        """Log-mel of `[..., n_fft]` frames into `out` `[..., n_mels]`."""
        magnitude = torch.fft.rfft(frames.double() * self.window).abs()  # (..., bins)
        out.copy_(self.kind.compress(self.config, self.kind.mel_energies(magnitude, self.mel)))


def frame_padding(batch: Tensor, config: FrontendConfig) -> Tensor:
    """`[B, samples]` padded so that every frame of `n_fft` samples exists: centred kinds reflect half
    an FFT at both ends (zeros where the signal is too short to reflect), the others pad zeros at
    the end (the window is zero beyond `window_samples`)."""
    n_samples = batch.shape[1]  # after the kind's `prepare`
    if config.centred:
        half = config.n_fft // 2
        reflect = min(half, n_samples - 1)
        if reflect > 0:
            batch = nn.functional.pad(batch[:, None], (reflect, reflect), mode="reflect")[:, 0]
        return nn.functional.pad(batch, (half - reflect, half - reflect))
    padded_length = max(n_samples - config.window_samples, 0) // config.hop_samples * config.hop_samples + config.n_fft
    return nn.functional.pad(batch, (0, padded_length - n_samples))


def logmel_from_file(path: str | os.PathLike, frontend: LogMel | None = None) -> Tensor:
    """Log-mel `[frames, n_mels]` of one audio file (decoded and resampled by `audio.load`)."""
    frontend = frontend or LogMel()
    wave = torch.from_numpy(load(path, sr=frontend.config.sample_rate))
    with torch.no_grad():
        return frontend(wave.to(frontend.window.device))
