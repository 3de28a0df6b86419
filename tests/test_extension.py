"""The extension points: a score, a model family, a front-end kind, a detection score, a data form,
a command and a recipe ingredient, each registered in one place (here, in a test) and picked up by
training, evaluation, the report, tagging and export without touching any module."""

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_config
from torch import nn

from audioscene import models
from audioscene import train as training
from audioscene.features import FrontendKind
from audioscene.metrics.tagging import SCORES, Score, register_score
from audioscene.recipe import Ingredient, Setting


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


def _onset_only(events):
    """Events cut to their onsets: event F1 on them matches onsets alone (the offsets then agree as
    closely as the onsets do)."""
    return [e._replace(offset=e.onset + 1e-3) for e in events]


@pytest.fixture
def onset_f1():
    from audioscene.metrics import DETECTION_SCORES, DetectionScore, event_f1, register_detection_score

    def scores(d):
        return event_f1(_onset_only(d.reference), _onset_only(d.events), t_collar=0.2, labels=d.labels)

    score = register_detection_score(DetectionScore("onset_f1", "onset F1 %", lambda d: scores(d).macro_f1,
                                                    per_class=lambda d: scores(d).f1, in_table3=True))
    yield score
    del DETECTION_SCORES[score.name]


def test_a_detection_score_registered_in_a_test_reaches_every_table_and_sed_eval(onset_f1, tiny_run, tiny_data,
                                                                                  tmp_path):
    """One registration: the score is a column of Table 3 (per setting), Table 4 (per class), the
    detection summary (`evaluate --sed-tune`, as the report) and a number of `sed-eval`."""
    import shutil

    from helpers import run_cli

    from audioscene.events import read_events_tsv
    from audioscene.metrics import event_f1

    tiny_run = shutil.copytree(tiny_run, tmp_path / tiny_run.name)  # evaluate writes its files into the run
    result = run_cli("evaluate", "--run", str(tiny_run), "--data", str(tiny_data / "eval"), "--sed-tune",
                     str(tiny_data / "eval"))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    reference = read_events_tsv(tiny_data / "eval" / "strong.tsv")
    events = read_events_tsv(tiny_run / f"sed_{(tiny_data / 'eval').name}" / "events_eval_median.tsv")
    labels = sorted({e.label for e in reference} | {e.label for e in events})
    expected = event_f1(_onset_only(reference), _onset_only(events), t_collar=0.2, labels=labels)

    def cells(line):
        return [cell.strip() for cell in line.strip("|").split("|")]

    table3 = cells(next(line for line in lines if line.startswith("| post-processing ")))
    assert "onset F1 %" in table3
    best = cells(next(line for line in lines if line.startswith("| median filter + swept thresholds — eval")))
    assert best[table3.index("onset F1 %")] == f"{100 * expected.macro_f1:.2f}"
    summary = cells(next(line for line in lines if line.startswith("| run ") and "| split " in line))
    row = cells(next(line for line in lines if line.startswith(f"| {tiny_run.name} ") and "| eval " in line))
    assert summary[-1] == "onset F1 %" and row[-1] == f"{100 * expected.macro_f1:.2f}"
    table4 = cells(next(line for line in lines if line.startswith("| class ")))
    first_class = cells(next(line for line in lines if line.startswith(f"| {expected.labels[0]} ")))
    assert first_class[table4.index("onset F1 %")] == f"{100 * expected.f1[0]:.2f}"
    sed_eval = run_cli("sed-eval", "--ref", str(tiny_data / "eval" / "strong.tsv"), "--est",
                       str(tiny_run / f"sed_{(tiny_data / 'eval').name}" / "events_eval_median.tsv"))
    assert sed_eval.returncode == 0 and f"onset F1 % {100 * expected.macro_f1:.2f}" in sed_eval.stdout
    assert "PSDS1" not in sed_eval.stdout  # it needs frame outputs at many thresholds


def _open_list(spec, options):
    """A toy data form: a text file of `path<TAB>label;label` lines (paths relative to the file)."""
    from audioscene.data.folder import Clip, ClipDataset
    from audioscene.labels import LabelSet

    listing = Path(spec.path)
    rows = [line.split("\t") for line in listing.read_text().splitlines() if line.strip()]
    clips = [Clip(listing.parent / path, tuple(labels.split(";"))) for path, labels in rows]
    label_set = options.label_set or LabelSet(tuple(sorted({label for clip in clips for label in clip.labels})))
    return ClipDataset(clips, label_set, options.clip_seconds, options.sample_rate)


@pytest.fixture
def list_form():
    from audioscene.data.spec import DATA_FORMS, DataForm, register_form

    form = register_form(DataForm("list", "list:FILE (path<TAB>labels lines)", _open_list))
    yield form
    del DATA_FORMS[form.name]


def test_a_data_form_registered_in_a_test_trains_and_evaluates_through_the_commands(list_form, tiny_data, tmp_path):
    """One record and one registration: `list:FILE` is a data spec for `train` and `evaluate`, and
    the messages that list the forms name it."""
    from helpers import run_cli

    from audioscene.data.folder import read_weak_csv
    from audioscene.data.spec import DataSpec

    for split in ("train", "eval"):
        rows = read_weak_csv(tiny_data / split / "weak.csv")
        (tmp_path / f"{split}.txt").write_text("".join(f"{tiny_data / split / 'audio' / name}\t{';'.join(labels)}\n"
                                                       for name, labels, _ in rows))
    assert str(DataSpec.parse(f"list:{tmp_path / 'train.txt'}")) == f"list:{tmp_path / 'train.txt'}"
    result = run_cli("train", "--data", f"list:{tmp_path / 'train.txt'}", "--eval-data", f"list:{tmp_path / 'eval.txt'}",
                     "--model", "resnet_b_att", "--model-arg", "width=4", "--epochs", "1", "--batch-size", "16",
                     "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "on 64 clips, evaluating on 24" in result.stderr
    evaluated = run_cli("evaluate", "--run", str(tmp_path / "run"), "--data", f"list:{tmp_path / 'eval.txt'}")
    assert evaluated.returncode == 0 and "24 clips" in evaluated.stdout, evaluated.stderr[-2000:]
    with pytest.raises(Exception, match=r"needs a map-style data set \(a folder, folder:, dcase2018: or list: spec\)"):
        DataSpec.parse("shards:x").open_clips()


def test_a_command_registered_in_a_test_parses_runs_and_reports_errors_like_the_others(monkeypatch):
    """One module-like object with `arguments` and `run`, one entry in `COMMANDS`: it is in `--help`,
    its flag parses through its type, and a user error from it is one line."""
    from types import SimpleNamespace

    from helpers import assert_one_line_error, run_cli

    from audioscene.cli import commands
    from audioscene.cli.arguments import positive_int
    from audioscene.errors import InputError

    def arguments(sub):
        p = sub.add_parser("hello", help="greet", epilog="example: audioscene hello --times 2")
        p.add_argument("--times", type=positive_int, default=1, help="how often (default 1)")
        p.add_argument("--name", default="world")
        p.set_defaults(func=run)

    def run(args):
        if args.name == "nobody":
            raise InputError("--name nobody: there is nobody to greet")
        print("\n".join(f"hello {args.name}" for _ in range(args.times)))

    monkeypatch.setattr(commands, "COMMANDS", [*commands.COMMANDS, SimpleNamespace(arguments=arguments, run=run)])
    assert "hello" in run_cli("--help").stdout
    result = run_cli("hello", "--times", "3", "--name", "you")
    assert result.returncode == 0 and result.stdout.splitlines() == ["hello you"] * 3
    assert_one_line_error(run_cli("hello", "--times", "0"), "--times: expected an integer >= 1, got '0'")
    assert_one_line_error(run_cli("hello", "--name", "nobody"), "audioscene hello: error: --name nobody")


class RandomGain(Ingredient):
    """A toy waveform-stage ingredient: each clip scaled by a gain drawn uniformly within
    ±`random_gain_db` dB; its state counts the clips it scaled."""

    name, stage = "random_gain", "waveform"
    settings = (Setting("random_gain_db", 0.0, "random gain of each clip, up to this many dB either way; 0: off",
                        range=dict(low=0, high=40)),)

    def __init__(self, config, model, optimizer, clock):
        super().__init__(config, model, optimizer, clock)
        self.clips = 0

    @classmethod
    def enabled(cls, config) -> bool:
        return config.random_gain_db > 0

    def waveform(self, inputs, rng):
        gains = 10 ** (rng.uniform(-self.config.random_gain_db, self.config.random_gain_db, len(inputs.waves)) / 20)
        inputs.waves = inputs.waves * torch.from_numpy(gains).float().reshape(-1, *[1] * (inputs.waves.dim() - 1))
        self.clips += len(gains)

    def state_dict(self):
        return {"clips": self.clips}

    def load_state_dict(self, state):
        self.clips = state["clips"] if state else 0


@pytest.fixture
def random_gain():
    from audioscene.recipe import INGREDIENTS, register_ingredient

    register_ingredient(RandomGain)
    yield
    del INGREDIENTS["random_gain"]


def test_a_recipe_ingredient_registered_in_a_test_gets_a_flag_and_a_toml_key_trains_and_resumes(random_gain, tiny_data,
                                                                                                tmp_path):
    from helpers import assert_one_line_error, run_cli

    from audioscene.checkpoints import Checkpoint

    assert "--random-gain-db RANDOM_GAIN_DB" in run_cli("train", "--help").stdout
    common = ["--data", str(tiny_data / "train"), "--eval-data", str(tiny_data / "eval"), "--model-arg", "width=4",
              "--batch-size", "16", "--seed", "3"]
    assert_one_line_error(run_cli("train", *common, "--random-gain-db", "-1"),
                          "--random-gain-db: expected a finite number >= 0 and <= 40, got '-1'")
    result = run_cli("train", *common, "--random-gain-db", "6", "--epochs", "2", "--out", str(tmp_path / "whole"))
    assert result.returncode == 0, result.stderr[-2000:]
    whole = Checkpoint.load(tmp_path / "whole" / "epoch_002.pt")
    assert whole.train_config["random_gain_db"] == 6.0
    assert whole.recipe["random_gain"] == {"clips": 2 * 64}  # every clip of both epochs, the count checkpointed

    (tmp_path / "gain.toml").write_text("random_gain_db = 6.0\nepochs = 1\n")
    assert run_cli("train", *common, "--config", str(tmp_path / "gain.toml"), "--out",
                   str(tmp_path / "split")).returncode == 0
    assert Checkpoint.load(tmp_path / "split" / "epoch_001.pt").recipe["random_gain"] == {"clips": 64}
    assert run_cli("train", "--resume", str(tmp_path / "split"), "--epochs", "2").returncode == 0
    resumed = Checkpoint.load(tmp_path / "split" / "epoch_002.pt")
    # the count went on from the checkpoint; same machine, same thread count, the same seeded draws
    # and a constant learning rate: the extended run is bit-identical to the whole one
    assert resumed.recipe["random_gain"] == whole.recipe["random_gain"]
    assert all(torch.equal(resumed.model[key], value) for key, value in whole.model.items())

    assert run_cli("train", *common, "--epochs", "1", "--out", str(tmp_path / "plain")).returncode == 0
    plain = Checkpoint.load(tmp_path / "plain" / "epoch_001.pt")
    first = Checkpoint.load(tmp_path / "split" / "epoch_001.pt")
    assert "random_gain" not in plain.recipe  # off: not built, no state
    assert any(not torch.equal(plain.model[key], value) for key, value in first.model.items())  # on, it changed training


class SmoothLabels(Ingredient):
    """A toy targets-stage ingredient: label smoothing by `smooth_labels`."""

    name, stage = "smooth_labels", "targets"
    settings = (Setting("smooth_labels", 0.0, "label smoothing; 0: off", range=dict(low=0, high=0.5)),)

    def targets(self, inputs, rng):
        inputs.targets = inputs.targets * (1 - self.config.smooth_labels) + self.config.smooth_labels / 2


def test_the_recipe_runs_its_stages_in_order_after_the_ones_registered_before():
    from audioscene.config import TrainConfig
    from audioscene.recipe import INGREDIENTS, Recipe, StepInputs, register_ingredient

    register_ingredient(SmoothLabels)
    try:
        config = TrainConfig(recipe="modern", smooth_labels=0.2, mixup_alpha=0.5)
        model = models.create("resnet_b_att", n_classes=2, width=4)
        recipe = Recipe(config, model, torch.optim.Adam(model.parameters()), total_steps=10)
        assert [i.name for i in recipe.ingredients] == ["mixup", "spec_augment", "schedule", "ema", "smooth_labels"]
        targets = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
        inputs = recipe.prepare(StepInputs(torch.zeros(2, 100), targets), np.random.default_rng(0), model)
        rng = np.random.default_rng(0)  # mixup's draws come first (waveform stage): λ, then the partners
        lam, order = float(rng.beta(0.5, 0.5)), torch.from_numpy(rng.permutation(2))
        expected = (lam * targets + (1 - lam) * targets[order]) * 0.8 + 0.1
        torch.testing.assert_close(inputs.targets, expected)
        assert len(inputs.augment) == 1  # SpecAugment's transform, for the model's forward
    finally:
        del INGREDIENTS["smooth_labels"]
