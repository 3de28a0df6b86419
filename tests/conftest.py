import os
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import tiny_config

from audioscene import train as training
from audioscene.data.synthetic import generate

# tests/data holds reference numbers and the script that made them in another environment (it needs
# psds_eval and pandas, which the project does not install): not a test module, never imported here
collect_ignore = ["data"]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers (pytest-xdist): one thread each, and in each process a test
    # starts, so two workers share two cores instead of fighting over them
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` run only where a CUDA device exists."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device (benchmarks/gpu_check.sh runs these on a GPU machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state: a test drawing random weights or data gives
    the same numbers on every run and in any order (an unseeded test once failed a fresh clone)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def write_audio(tmp_path: Path):
    """Write `samples` ([n] or [n, channels]) at `sr` to tmp_path/name and return the path."""

    def write(name: str, samples: np.ndarray, sr: int = 16000, subtype: str | None = None) -> Path:
        path = tmp_path / name
        sf.write(path, samples, sr, subtype=subtype)
        return path

    return write


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    generate(root / "train", n_clips=64, seed=1, progress=False)
    generate(root / "eval", n_clips=24, seed=2, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory):
    return training.train(tiny_config(tiny_data, tmp_path_factory.mktemp("runs") / "b_att"), progress=False)
