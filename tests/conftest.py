from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


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
