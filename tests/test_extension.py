"""The extension points: a score, a model family and a front-end kind, each registered in one place
(here, in a test) and picked up by training, evaluation, the report, tagging and export without
touching any module."""

from dataclasses import asdict, dataclass

import numpy as np
import pytest
import torch
from helpers import tiny_config
from torch import nn

from audioscene import models
from audioscene import train as training
from audioscene.features import FrontendKind
from audioscene.metrics.tagging import SCORES, Score, register_score


@pytest.fixture
def median_ap():
    score = register_score(Score("median_AP", "median AP", lambda per_class: np.nanmedian(per_class["ap"], axis=-1)))
    yield score
    del SCORES[score.name]


def test_a_registered_score_reaches_metrics_csv_table2_its_interval_and_an_empty_paper_cell(tiny_data, tmp_path,
                                                                                              median_ap):
    from audioscene.report import markdown_table, table2, table2_rows

    run = training.train(tiny_config(tiny_data, tmp_path / "run", epochs=1, best_metric="median_AP"), progress=False)
    header, first = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()]
    assert "median_AP" in header and 0 < float(first[header.index("median_AP")]) <= 1
    [peak, avg], _ = table2_rows({"toy": run}, str(tiny_data / "eval"), device="cpu", n_resamples=100, progress=False)
    assert peak.summary["median_AP"] == pytest.approx(np.nanmedian(peak.summary.per_class["ap"]))
    low, high = peak.intervals["median_AP"]
    assert low <= peak.summary["median_AP"] <= high and low < high
    text = markdown_table(table2([peak, avg]))
    head, _, *lines = text.splitlines()
    columns = [cell.strip() for cell in head.strip("|").split("|")]
    assert "median AP [95 % CI]" in columns and columns[-1] == "paper median AP"
    cells = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert cells[-1] == "–" and cells[columns.index("paper mAP")] == "0.379"  # ResNet B + att's published row
    assert cells[columns.index("median AP [95 % CI]")] == f"{peak.summary['median_AP']:.3f} [{low:.3f}, {high:.3f}]"


@dataclass(frozen=True)
class ToyConfig:
    name: str
    family: str = "toy"
    n_classes: int = 527
    hidden: int = 8
    pool: int = 4  # input frames per output frame
    n_mels: int = 64
    input_hop_s: float = 0.01

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def frontend_settings(frontend) -> dict:
        return dict(n_mels=frontend.n_mels, input_hop_s=frontend.hop_ms / 1000)


class ToyModel(nn.Module):
    """Mean of every `pool` log-mel frames (a last partial group dropped) → a hidden layer → per-frame
    sigmoid; clip = max over frames."""

    takes_audio = exportable = True
    normalises_input = False
    head_prefix = "head."

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.hidden = nn.Linear(config.n_mels, config.hidden)
        self.head = nn.Linear(config.hidden, config.n_classes)

    @property
    def min_frames(self) -> int:
        return self.config.pool

    @property
    def frame_hop(self) -> float:
        return round(self.config.pool * self.config.input_hop_s, 6)

    def forward(self, logmel, augment=None):
        batch, n_frames, n_mels = logmel.shape
        kept = n_frames // self.config.pool * self.config.pool
        x = logmel[:, :kept].reshape(batch, -1, self.config.pool, n_mels)
        framewise = torch.sigmoid(self.head(torch.relu(self.hidden(x.mean(dim=2)))))
        return {"clipwise": framewise.max(dim=1).values, "framewise": framewise, "frame_hop": self.frame_hop}


@pytest.fixture
def toy_family():
    models.register_family("toy", ToyConfig, {"toy_mlp": dict(hidden=8)})(ToyModel)
    yield
    del models.FAMILIES["toy"]


def test_a_family_registered_in_a_test_trains_tags_and_exports(toy_family, tiny_data, tmp_path):
    from audioscene.config import TrainConfig
    from audioscene.errors import ConfigError
    from audioscene.export import export_onnx
    from audioscene.infer import Tagger

    assert "toy_mlp" in models.available() and models.family_of("toy_mlp").takes_audio
    with pytest.raises(ConfigError, match="width: not a setting of the toy family.*its settings: hidden, pool"):
        TrainConfig(model="toy_mlp", model_args={"width": 8})
    run = training.train(tiny_config(tiny_data, tmp_path / "run", model="toy_mlp", model_args={"hidden": 16},
                                     epochs=2), progress=False)
    tagger = Tagger.from_run(run, device="cpu")
    assert isinstance(tagger.models[0], ToyModel) and tagger.models[0].config.hidden == 16
    clip = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[0]
    result = tagger.analyze(clip)
    assert result.framewise.shape == (249, 10) and np.allclose(result.times[1] - result.times[0], 0.04)
    assert len(tagger.tag(clip, top_k=3)) == 3
    parity = export_onnx(run, tmp_path / "toy.onnx", with_frontend=True)
    assert parity.clipwise < 1e-4 and parity.framewise < 1e-4
    onnx_tagger = Tagger.from_onnx(tmp_path / "toy.onnx")
    np.testing.assert_allclose(onnx_tagger.analyze(clip).clipwise, result.clipwise, atol=1e-4)


class LinearSpectrogram(FrontendKind):
    """A toy kind: log power in `n_mels` equal-width frequency bands (no mel scale, no centring)."""

    name = "linear_toy"

    def filterbank(self, config):
        bins = np.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1)
        edges = np.linspace(config.f_min, config.f_max, config.n_mels + 1)
        return ((bins[:, None] >= edges[:-1]) & (bins[:, None] < edges[1:])).astype(np.float64)

    def mel_energies(self, magnitude, mel):
        return magnitude.square().float() @ mel

    def compress(self, config, energies):
        return torch.log(energies + 1e-6)

    def silence(self, config):
        return float(np.log(1e-6))


@pytest.fixture
def linear_kind():
    from audioscene.features import FRONTEND_KINDS, register_kind

    kind = register_kind(LinearSpectrogram())
    yield kind
    del FRONTEND_KINDS[kind.name]


def test_a_front_end_kind_registered_in_a_test_trains_tags_and_exports(linear_kind, tiny_data, tmp_path):
    """One class and one registration: the kind is a `--frontend-kind` choice, trains a run through
    the command line, tags with its own features and exports to ONNX with the front end in the graph."""
    from helpers import run_cli

    from audioscene.export import export_onnx
    from audioscene.features import FrontendConfig, LogMel
    from audioscene.infer import Tagger

    config = FrontendConfig(kind="linear_toy", n_mels=32)
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1)
    periodic_hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    power = np.abs(np.fft.rfft(wave[:400].double().numpy() * periodic_hann, 512)) ** 2  # the first frame
    expected = np.log(power @ linear_kind.filterbank(config) + 1e-6)
    np.testing.assert_allclose(LogMel(config)(wave)[0].numpy(), expected, rtol=1e-4, atol=1e-4)  # its own features
    result = run_cli("train", "--data", str(tiny_data / "train"), "--eval-data", str(tiny_data / "eval"),
                     "--model", "resnet_b_att", "--model-arg", "width=4", "--frontend-kind", "linear_toy",
                     "--n-mels", "32", "--epochs", "1", "--batch-size", "16", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-2000:]
    tagger = Tagger.from_run(tmp_path / "run", device="cpu")
    assert tagger.frontend.config.kind == "linear_toy" and tagger.models[0].config.pad_value == pytest.approx(
        np.log(1e-6))
    clip = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[0]
    expected_tags = tagger.analyze(clip).clipwise
    parity = export_onnx(tmp_path / "run", tmp_path / "linear.onnx", with_frontend=True)
    assert parity.ok and parity.frontend < 1e-3
    np.testing.assert_allclose(Tagger.from_onnx(tmp_path / "linear.onnx").analyze(clip).clipwise, expected_tags,
                               atol=1e-4)
