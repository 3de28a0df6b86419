"""Where and in what precision tensors run: device names and autocast, in one place."""

from __future__ import annotations

import re
from contextlib import nullcontext

import torch

from .errors import ConfigError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device(name: str) -> str:
    """`name` if it is a device spec this package accepts (auto, cpu, mps, cuda, cuda:N)."""
    if not isinstance(name, str) or not DEVICE_PATTERN.match(name):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    return name


def resolve_device(name: str) -> torch.device:
    """The `torch.device` of a spec; "auto" is CUDA where there is one. A device that is not there
    raises `ConfigError`."""
    if check_device(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} requested but MPS is not available")
    return device


def autocast(device: torch.device, amp: bool, cpu_bf16: bool = False):
    """`(context, dtype)`: bf16 autocast on CUDA with `amp` (fp16 where bf16 is missing), bf16 on CPU
    with `cpu_bf16`, otherwise no autocast and float32."""
    if device.type == "cuda" and amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype), dtype
    if device.type == "cpu" and cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16), torch.bfloat16
    return nullcontext(), torch.float32
