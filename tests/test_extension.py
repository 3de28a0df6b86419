"""The extension points: a score and a model family, each registered in one place (here, in a test)
and picked up by training, evaluation, the report, tagging and export without touching any module."""

from dataclasses import asdict, dataclass

import numpy as np
import pytest
import torch
from helpers import tiny_config
from torch import nn

from audioscene import models
from audioscene import train as training
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
