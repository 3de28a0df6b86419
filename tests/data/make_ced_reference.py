"""The reference outputs of CED's own code for `tests/test_ced.py`.

Runs the authors' model and front end (public repository RicherMans/CED at commit
60a0f54214ea619265e16ee257925158be2675fd, `models/audiotransformer.py`) on seeded random weights in
their release format (`torch.save` of the model's state dict, front-end buffers included), and stores
what the test compares ours with in `ced_reference.npz`: their log-mel (dB; their front end run in
float64, its float32 STFT rounding up to 5e-4 dB away in the quietest bands), clip outputs and frame
outputs for the shapes of CED-Tiny and CED-Mini, on clips of 3 s, 7.3 s and 10 s (the longest
input that runs as one piece is 10.12 s), one of them half digital silence so that the 120 dB floor
binds. Their frame outputs are their `pooling="dm"` head before its mean over time: the head on
each time patch's mean over its frequency tokens, as `models/ced.py` makes ours.

Their code imports three packages that do not install beside our PyTorch or are not needed: the
script puts equivalent code in place of torchaudio's `transforms.MelSpectrogram` (torch.stft, centred,
reflected, periodic Hann, power 2, `melscale_fbanks(norm=None, mel_scale="htk")` in float32, the
same buffer names) and `transforms.AmplitudeToDB(top_db=120)` (`10 log10(max(x, 1e-10))`, floored at
the loudest value of what it is given less 120), and a stand-in for loguru's `logger`. `einops` is
installed into a scratch folder:

    git clone https://github.com/RicherMans/CED /tmp/CED
    git -C /tmp/CED checkout 60a0f54214ea619265e16ee257925158be2675fd
    .venv/bin/pip install --target /tmp/ced_scratch einops==0.8.1
    PYTHONPATH=/tmp/ced_scratch .venv/bin/python tests/data/make_ced_reference.py --repo /tmp/CED

The test imports `seeded_weights` and `clips` from here (this file imports nothing of theirs at the
top), so both sides start from the same numbers.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

COMMIT = "60a0f54214ea619265e16ee257925158be2675fd"
SHAPES = {"ced_tiny": "audiotransformer_tiny", "ced_mini": "audiotransformer_mini"}  # ours → their builder
SEED = 8275347
OUT = Path(__file__).with_name("ced_reference.npz")


def seeded_weights(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """A copy of a model's state dict with its weights, biases, position embeddings and the band
    norm's statistics drawn, key by key in sorted order, from one seeded generator: LeCun-scaled
    normals for linear layers, He-scaled for the patch projection, norm scales around 1 and shifts
    around 0, position embeddings N(0, 0.02²), band statistics of dB log-mels (means around −40,
    variances around 200). Other buffers (their front end's window and filterbank) are kept."""
    generator = torch.Generator().manual_seed(seed)
    draw = lambda shape: torch.randn(shape, generator=generator)  # noqa: E731
    weights = {}
    for name in sorted(state):
        shape = tuple(state[name].shape)
        if name.endswith("pos_embed"):
            weights[name] = 0.02 * draw(shape)
        elif name.endswith("running_mean"):
            weights[name] = -40.0 + 10.0 * draw(shape)
        elif name.endswith("running_var"):
            weights[name] = 200.0 * torch.exp(0.3 * draw(shape))
        elif not name.endswith((".weight", ".bias")):
            weights[name] = state[name].clone()
        elif len(shape) > 1:
            fan_in = math.prod(shape[1:])
            weights[name] = draw(shape) * math.sqrt((2.0 if len(shape) == 4 else 1.0) / fan_in)
        elif name.endswith("weight"):
            weights[name] = 1.0 + 0.1 * draw(shape)
        else:
            weights[name] = 0.1 * draw(shape)
    return weights


def clips(seed: int = SEED) -> list[np.ndarray]:
    """Clips of 3 s, 7.3 s and 10 s at 16 kHz: tones, chirps and noise at audio levels; the second
    is digital silence after its first half."""
    rng = np.random.default_rng(seed)
    out = []
    for seconds in (3.0, 7.3, 10.0):
        t = np.arange(int(seconds * 16000)) / 16000
        wave = 0.05 * rng.standard_normal(len(t))
        for _ in range(4):
            f0, rate = rng.uniform(100, 6000), rng.uniform(-200, 200)
            wave += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * (f0 + rate * t) * t) * (t > rng.uniform(0, seconds / 2))
        out.append(wave.astype(np.float32))
    out[1][len(out[1]) // 2:] = 0.0
    return out


def _melscale_fbanks(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> torch.Tensor:
    """torchaudio's `functional.melscale_fbanks` with `norm=None, mel_scale="htk"` (float32)."""
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_min, m_max = (2595.0 * math.log10(1.0 + f / 700.0) for f in (f_min, f_max))
    f_pts = 700.0 * (10 ** (torch.linspace(m_min, m_max, n_mels + 2) / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down, up = (-1.0 * slopes[:, :-2]) / f_diff[:-1], slopes[:, 2:] / f_diff[1:]
    return torch.max(torch.zeros(1), torch.min(down, up))


class _Spectrogram(torch.nn.Module):
    def __init__(self, n_fft: int, win_length: int, hop_length: int, center: bool):
        super().__init__()
        self.n_fft, self.win_length, self.hop_length, self.center = n_fft, win_length, hop_length, center
        self.register_buffer("window", torch.hann_window(win_length))

    def forward(self, x):
        shape = x.shape
        spec = torch.stft(x.reshape(-1, shape[-1]), self.n_fft, self.hop_length, self.win_length, self.window,
                          self.center, "reflect", False, True, return_complex=True)
        return spec.reshape(shape[:-1] + spec.shape[-2:]).abs().pow(2.0)


class _MelScale(torch.nn.Module):
    def __init__(self, n_mels: int, sample_rate: int, f_min: float, f_max: float, n_stft: int):
        super().__init__()
        self.register_buffer("fb", _melscale_fbanks(n_stft, f_min, f_max, n_mels, sample_rate))

    def forward(self, spec):
        return torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)


class _MelSpectrogram(torch.nn.Module):
    """torchaudio's `transforms.MelSpectrogram` as CED builds it (power 2, reflect padding)."""

    def __init__(self, sample_rate=16000, n_fft=400, win_length=None, hop_length=None, f_min=0.0, f_max=None,
                 n_mels=128, center=True):
        super().__init__()
        self.spectrogram = _Spectrogram(n_fft, win_length or n_fft, hop_length or (win_length or n_fft) // 2, center)
        self.mel_scale = _MelScale(n_mels, sample_rate, f_min, float(f_max or sample_rate // 2), n_fft // 2 + 1)

    def forward(self, x):
        return self.mel_scale(self.spectrogram(x))


class _AmplitudeToDB(torch.nn.Module):
    """torchaudio's `transforms.AmplitudeToDB(stype="power")`: 10 log10(max(x, 1e-10)) (reference 1),
    floored at the maximum over the last three axes of what it is given less `top_db`."""

    def __init__(self, stype="power", top_db=None):
        super().__init__()
        self.top_db = top_db

    def forward(self, x):
        x_db = 10.0 * torch.log10(torch.clamp(x, min=1e-10))
        if self.top_db is not None:
            shape = x_db.size()
            packed = x_db.reshape(-1, shape[-3] if x_db.dim() > 2 else 1, shape[-2], shape[-1])
            x_db = torch.max(packed, (packed.amax(dim=(-3, -2, -1)) - self.top_db).view(-1, 1, 1, 1)).reshape(shape)
        return x_db


def _install_stand_ins() -> None:
    transforms = types.ModuleType("torchaudio.transforms")
    transforms.MelSpectrogram, transforms.AmplitudeToDB = _MelSpectrogram, _AmplitudeToDB
    torchaudio = types.ModuleType("torchaudio")
    torchaudio.transforms = transforms
    loguru = types.ModuleType("loguru")
    loguru.logger = types.SimpleNamespace(debug=lambda *a, **k: None, info=lambda *a, **k: None)
    sys.modules.update({"torchaudio": torchaudio, "torchaudio.transforms": transforms, "loguru": loguru})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, required=True, help="a checkout of RicherMans/CED")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    commit = subprocess.run(["git", "-C", str(args.repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    if commit.stdout.strip() != COMMIT:
        sys.exit(f"{args.repo} is at {commit.stdout.strip() or '?'}; check out {COMMIT}")
    _install_stand_ins()
    sys.path.insert(0, str(args.repo.resolve()))
    from models import audiotransformer

    waves = clips()
    stored = {"commit": np.array(COMMIT)}
    for offset, (name, builder) in enumerate(SHAPES.items()):
        torch.manual_seed(0)
        model = getattr(audiotransformer, builder)(pretrained=False)
        with tempfile.TemporaryDirectory() as folder:  # their release format: torch.save of the state dict
            torch.save(seeded_weights(model.state_dict(), SEED + offset), Path(folder) / f"{name}.pt")
            model.load_state_dict(torch.load(Path(folder) / f"{name}.pt", weights_only=True))
        model.eval()
        with torch.no_grad():
            for i, wave in enumerate(waves):
                x = torch.from_numpy(wave)[None]
                logmel = model.front_end(x)  # (1, bands, frames), dB
                if offset == 0:  # in float64: their float32 STFT rounds up to 5e-4 dB off in the quietest bands
                    stored[f"logmel_{i}"] = model.front_end.double()(x.double())[0].float().numpy()
                    model.front_end.float()
                stored[f"{name}/clipwise_{i}"] = model(x).numpy()
                tokens = model.forward_features(model.init_bn(logmel[:, None]))
                bands = model.patch_embed.grid_size[0]
                per_time = tokens.reshape(1, bands, -1, tokens.shape[-1]).mean(1)  # their "dm" rearrange, mean over f
                stored[f"{name}/framewise_{i}"] = model.outputlayer(per_time).sigmoid().numpy()
    np.savez_compressed(args.out.resolve(), **stored)
    print(f"wrote {args.out}: {', '.join(SHAPES)} on {len(waves)} clips")


if __name__ == "__main__":
    main()
