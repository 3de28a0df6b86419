"""The reference outputs of EfficientAT's own code for `tests/test_efficientat.py`.

Runs the authors' model and front end (public repository fschmid56/EfficientAT at commit
a425fdce92572e602a1d5634799bd9f1f2efa806, MIT licence) on seeded random weights in their release
format, and stores what the test compares ours with in `efficientat_reference.npz`: their log-mel,
clip and frame outputs, and the BatchNorm statistics (measured on audio by their model in training
mode, then perturbed for the MobileNets), for the shapes of `mn10_as`, `mn40_as` and `dymn10_as`. The outputs are of their model
on their log-mel, which is stored, so the test compares the two front ends and the two models each
on the same input (and, more loosely, the whole chain).

Their code imports two helpers that do not install beside our PyTorch; the script puts equivalent
code in their place: torchvision's `ops.misc.ConvNormActivation` (a convolution without bias when a
norm follows, padding `(k - 1) // 2 · dilation`, the norm, the activation) and torchaudio's
`compliance.kaldi.get_mel_banks` (Kaldi's mel banks without VTLN warping, in float32 as torchaudio
computes them). `torchaudio.transforms.FrequencyMasking/TimeMasking` are stubs: masking runs only in
training, and the front end runs in evaluation mode here. Frame outputs are not part of their model:
they are their classifier (`classifier[2:]`) applied to each time step of their last feature map's
mean over frequency (`_forward_impl(return_fmaps=True)`), as `models/efficientat.py` makes ours.

    git clone https://github.com/fschmid56/EfficientAT /tmp/EfficientAT
    git -C /tmp/EfficientAT checkout a425fdce92572e602a1d5634799bd9f1f2efa806
    .venv/bin/python tests/data/make_efficientat_reference.py --repo /tmp/EfficientAT

The test imports `seeded_weights` and `clips` from here (this file imports nothing of theirs at the
top), so both sides start from the same numbers.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

COMMIT = "a425fdce92572e602a1d5634799bd9f1f2efa806"
SHAPES = {"mn10_as": ("mn", 1.0), "mn40_as": ("mn", 4.0), "dymn10_as": ("dymn", 1.0)}  # release → (kind, width)
SEED = 20240
OUT = Path(__file__).with_name("efficientat_reference.npz")


def seeded_weights(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """A copy of a model's state dict with every weight and bias drawn, key by key in sorted order,
    from one seeded generator: He-scaled normals for convolutions, LeCun-scaled ones for linear
    layers (logits of a few units, not saturated probabilities), He-scaled DyMN dynamic kernels too
    (`[1, 1, kernels, out · fan-in]`, the outputs read from the BatchNorm after), BatchNorm scales around 1 and
    shifts around 0. Buffers (running statistics, set from audio afterwards; DyMN's constants) are
    kept as given."""
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name in sorted(state):
        shape = tuple(state[name].shape)
        if not name.endswith((".weight", ".bias")):
            weights[name] = state[name].clone()
        elif len(shape) == 4 and shape[:2] == (1, 1):  # a dynamic kernel: its BatchNorm says its outputs
            fan_in = shape[3] // state[name.replace("_conv.weight", "_norm.weight")].shape[0]
            weights[name] = torch.randn(shape, generator=generator) * math.sqrt(2.0 / fan_in)
        elif len(shape) > 1:
            fan_in = math.prod(shape[1:])
            weights[name] = torch.randn(shape, generator=generator) * math.sqrt((2.0 if len(shape) == 4 else 1.0) / fan_in)
        elif name.endswith("weight"):
            weights[name] = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        else:
            weights[name] = 0.1 * torch.randn(shape, generator=generator)
    return weights


def clips(seed: int = SEED) -> list[np.ndarray]:
    """Clips of 3 s and 3.7 s at 32 kHz: tones, chirps and noise at audio levels."""
    rng = np.random.default_rng(seed)
    out = []
    for seconds in (3.0, 3.7):
        t = np.arange(int(seconds * 32000)) / 32000
        wave = 0.05 * rng.standard_normal(len(t))
        for _ in range(4):
            f0, rate = rng.uniform(100, 6000), rng.uniform(-200, 200)
            wave += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * (f0 + rate * t) * t) * (t > rng.uniform(0, seconds / 2))
        out.append(wave.astype(np.float32))
    return out


def _conv_norm_activation(in_channels, out_channels, kernel_size=3, stride=1, padding=None, groups=1,
                          norm_layer=torch.nn.BatchNorm2d, activation_layer=torch.nn.ReLU, dilation=1, inplace=True,
                          bias=None):
    """torchvision's `ConvNormActivation` for 2-d convolutions, as their model calls it."""
    padding = (kernel_size - 1) // 2 * dilation if padding is None else padding
    layers = [torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation, groups=groups,
                              bias=norm_layer is None if bias is None else bias)]
    if norm_layer is not None:
        layers.append(norm_layer(out_channels))
    if activation_layer is not None:
        layers.append(activation_layer(inplace=inplace))
    return torch.nn.Sequential(*layers)


def _get_mel_banks(num_bins, window_length_padded, sample_freq, low_freq, high_freq, vtln_low, vtln_high,
                   vtln_warp_factor):
    """torchaudio's `compliance.kaldi.get_mel_banks` without VTLN warping (factor 1), float32."""
    assert vtln_warp_factor == 1.0
    mel = lambda f: 1127.0 * (1.0 + f / 700.0).log()  # noqa: E731
    mel_scalar = lambda f: 1127.0 * math.log(1.0 + f / 700.0)  # noqa: E731
    high_freq = high_freq if high_freq > 0 else high_freq + 0.5 * sample_freq
    low, high = mel_scalar(low_freq), mel_scalar(high_freq)
    delta = (high - low) / (num_bins + 1)
    index = torch.arange(num_bins).unsqueeze(1)
    left, center, right = low + index * delta, low + (index + 1.0) * delta, low + (index + 2.0) * delta
    bins = mel(sample_freq / window_length_padded * torch.arange(window_length_padded / 2)).unsqueeze(0)
    up, down = (bins - left) / (center - left), (right - bins) / (right - center)
    return torch.max(torch.zeros(1), torch.min(up, down)), None


def _install_stand_ins() -> None:
    """Equivalent code for the torchvision and torchaudio helpers their files import."""
    class Masking(torch.nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()

        def forward(self, x):
            raise RuntimeError("masking runs in training only; the reference runs in evaluation mode")

    modules = {name: types.ModuleType(name) for name in (
        "torchvision", "torchvision.ops", "torchvision.ops.misc", "torchaudio", "torchaudio.compliance",
        "torchaudio.compliance.kaldi", "torchaudio.transforms")}
    modules["torchvision.ops.misc"].ConvNormActivation = _conv_norm_activation
    modules["torchaudio.compliance.kaldi"].get_mel_banks = _get_mel_banks
    modules["torchaudio.transforms"].FrequencyMasking = modules["torchaudio.transforms"].TimeMasking = Masking
    modules["torchaudio"].compliance, modules["torchaudio"].transforms = (modules["torchaudio.compliance"],
                                                                          modules["torchaudio.transforms"])
    modules["torchaudio.compliance"].kaldi = modules["torchaudio.compliance.kaldi"]
    sys.modules.update(modules)


def _measure_and_perturb(model: torch.nn.Module, spectrograms: list[torch.Tensor], seed: int, perturb: bool) -> None:
    """BatchNorm running statistics measured on the clips (one batch of them, cut to the shortest,
    in training mode), then, with `perturb`, each mean moved by 0.1 of its std and each variance
    scaled by exp(0.2 · N(0, 1)). A random DyMN is not perturbed: it amplifies any mismatch between
    its statistics and its activations about 30-fold per block (measured: even 0.1 % on the
    variances saturates every output), while the measured statistics keep it in range."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
            module.reset_running_stats()
    model.train()
    frames = min(spectrogram.shape[1] for spectrogram in spectrograms)
    with torch.no_grad():
        model(torch.stack([spectrogram[:, :frames] for spectrogram in spectrograms])[:, None])
    generator = torch.Generator().manual_seed(seed + 1)
    for name, module in sorted(model.named_modules()):
        if isinstance(module, torch.nn.BatchNorm2d):
            if perturb:
                std = module.running_var.sqrt()
                module.running_mean += 0.1 * std * torch.randn(std.shape, generator=generator)
                module.running_var *= torch.exp(0.2 * torch.randn(std.shape, generator=generator))
            module.momentum = 0.01
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, required=True, help="a checkout of fschmid56/EfficientAT")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    commit = subprocess.run(["git", "-C", str(args.repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    if commit.stdout.strip() != COMMIT:
        sys.exit(f"{args.repo} is at {commit.stdout.strip() or '?'}; check out {COMMIT}")
    _install_stand_ins()
    out = args.out.resolve()
    os.chdir(args.repo)  # their helpers read metadata/ relative to the working folder
    sys.path.insert(0, str(args.repo.resolve()))
    from models.dymn.model import get_model as get_dymn
    from models.mn.model import get_model
    from models.preprocess import AugmentMelSTFT

    torch.manual_seed(0)
    frontend = AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320).eval()
    waves = clips()
    with torch.no_grad():
        spectrograms = [frontend(torch.from_numpy(wave)[None])[0] for wave in waves]  # (128, frames)
    stored = {"commit": np.array(COMMIT)}
    for i, spectrogram in enumerate(spectrograms):
        stored[f"logmel_{i}"] = spectrogram.numpy()
    for offset, (name, (kind, width)) in enumerate(SHAPES.items()):
        # a DyMN at the temperature their released ones run at (`pretrain_final_temp`, 1)
        model = get_model(width_mult=width) if kind == "mn" else get_dymn(width_mult=width, T_max=1.0)
        with tempfile.TemporaryDirectory() as folder:  # their release format: torch.save of the state dict
            torch.save(seeded_weights(model.state_dict(), SEED + offset), Path(folder) / f"{name}.pt")
            model.load_state_dict(torch.load(Path(folder) / f"{name}.pt", weights_only=True))
        _measure_and_perturb(model, spectrograms, SEED + offset, perturb=kind == "mn")
        for key, value in model.state_dict().items():
            if key.endswith(("running_mean", "running_var")):
                stored[f"{name}/{key}"] = value.numpy()
        with torch.no_grad():
            for i, spectrogram in enumerate(spectrograms):
                logits, fmaps = model._forward_impl(spectrogram[None, None], return_fmaps=True)
                frames = model.classifier[2:](fmaps[-1].mean(dim=2).transpose(1, 2))  # dymn: fmaps[-1] is out_c's
                stored[f"{name}/clipwise_{i}"] = torch.sigmoid(logits).reshape(1, -1).numpy()
                stored[f"{name}/framewise_{i}"] = torch.sigmoid(frames).numpy()
    np.savez_compressed(out, **stored)
    print(f"wrote {out}: {', '.join(SHAPES)} on {len(waves)} clips")


if __name__ == "__main__":
    main()
