from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioscene import train as training
from audioscene.data.synthetic import generate
from audioscene.train import TrainConfig


@pytest.fixture
def write_audio(tmp_path: Path):
    """Write `samples` ([n] or [n, channels]) at `sr` to tmp_path/name and return the path."""

    def write(name: str, samples: np.ndarray, sr: int = 16000, subtype: str | None = None) -> Path:
        path = tmp_path / name
        sf.write(path, samples, sr, subtype=subtype)
        return path

    return write


def sine(freq: float, seconds: float, sr: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    generate(root / "train", n_clips=64, seed=1, progress=False)
    generate(root / "eval", n_clips=24, seed=2, progress=False)
    return root


def tiny_config(data: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(train_data=str(data / "train"), eval_data=str(data / "eval"), out_dir=str(out),
                  model="resnet_b_att", width=8, epochs=2, batch_size=16, lr=1e-3, seed=7)
    return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory):
    return training.train(tiny_config(tiny_data, tmp_path_factory.mktemp("runs") / "b_att"), progress=False)
