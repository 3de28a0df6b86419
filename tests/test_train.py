import errno
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, run_cli, tiny_config

from audioscene import train as training
from audioscene.checkpoints import Checkpoint, CheckpointError, Run, list_epochs
from audioscene.data.folder import ClipDataset
from audioscene.evaluate import evaluate_run
from audioscene.metrics import summarize
from audioscene.train import ConfigError, TrainConfig


def test_tiny_run_lowers_loss_and_writes_checkpoints_and_metrics(tiny_run):
    assert [p.name for p in list_epochs(tiny_run)] == ["epoch_001.pt", "epoch_002.pt"]
    lines = (tiny_run / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss,mAP,mAUC,d_prime") and len(lines) == 3
    history = Checkpoint.load(tiny_run / "epoch_002.pt").history
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tiny_run / "tensorboard"))


def test_checkpoint_rebuilds_the_model(tiny_run):
    state = Checkpoint.load(tiny_run / "epoch_002.pt")
    model, frontend, labels = state.build()
    assert labels.names[0] == "Alarm_bell_ringing" and len(labels) == 10
    assert model.config.width == 8 and frontend.config.n_mels == 64
    assert not model.training


def test_avg_is_the_mean_of_checkpoint_outputs_scored(tiny_run, tiny_data):
    result = evaluate_run(tiny_run, tiny_data / "eval", device="cpu", progress=False)
    dataset = ClipDataset.from_folder(tiny_data / "eval", result.labels)
    outputs = []
    for path in list_epochs(tiny_run):
        model, frontend, _ = Checkpoint.load(path).build()
        with torch.no_grad():
            waves = torch.stack([dataset[i][0] for i in range(len(dataset))])
            outputs.append(model(frontend(waves))["clipwise"].numpy())
    expected = summarize(dataset.targets, np.mean(outputs, axis=0))
    assert result.avg["mAP"] == pytest.approx(expected["mAP"], abs=1e-6)
    assert result.avg["mAUC"] == pytest.approx(expected["mAUC"], abs=1e-6)
    best = max(result.epochs, key=lambda e: result.epochs[e]["mAP"])
    assert result.peak_epoch == best and result.peak is result.epochs[best]
    history = Checkpoint.load(tiny_run / "epoch_002.pt").history
    assert result.epochs[2]["mAP"] == pytest.approx(history[1]["mAP"], abs=1e-6)


# modern: mixup / SpecAugment draws, schedule, EMA; mean teacher: unlabelled clips, consistency ramp-up,
# strong labels (mixed by mixup), the teacher saved as the run's weights
MEAN_TEACHER = dict(recipe="modern", unlabelled_data="eval", consistency_weight=2.0, ema_decay=0.9,
                    strong_labels="train/strong.tsv")


@pytest.mark.parametrize("name, options", [("paper", dict(recipe="paper")), ("modern", dict(recipe="modern")),
                                           ("mean_teacher", MEAN_TEACHER)])
def test_killed_run_resumes_to_identical_weights(tiny_data, tmp_path, name, options):
    options = {key: str(tiny_data / value) if key in ("unlabelled_data", "strong_labels") else value
               for key, value in options.items()}
    reference = training.train(tiny_config(tiny_data, tmp_path / "reference", epochs=2, **options), progress=False)
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "audioscene", "train", "--train-data", str(tiny_data / "train"),
               "--eval-data", str(tiny_data / "eval"), "--out", str(killed), "--model", "resnet_b_att",
               "--model-arg", "width=8", "--epochs", "2", "--batch-size", "16", "--lr", "1e-3", "--seed", "7",
               *(item for key, value in options.items() for item in (f"--{key.replace('_', '-')}", str(value)))]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "epoch_001.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline, "training died before its first checkpoint"
        time.sleep(0.05)
    time.sleep(0.3)  # into epoch 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "epoch_002.pt").exists()
    result = run_cli("train", "--resume", str(killed))
    assert result.returncode == 0, result.stderr
    ours = Checkpoint.load(killed / "epoch_002.pt")
    theirs = Checkpoint.load(reference / "epoch_002.pt")
    # Bit-identical by construction: the same kernels on this machine with the same thread count
    # (the killed process inherits this one's OMP_NUM_THREADS; under `make test` both use one).
    for key, tensor in theirs.model.items():
        assert torch.equal(ours.model[key], tensor), key
    for key, tensor in (theirs.ema or {"weights": {}})["weights"].items():
        assert torch.equal(ours.ema["weights"][key], tensor), key
    assert {k: v for k, v in ours.recipe.items() if k != "ema"} == {k: v for k, v in theirs.recipe.items() if k != "ema"}
    assert [r["train_loss"] for r in ours.history] == [r["train_loss"] for r in theirs.history]
    assert len((killed / "metrics.csv").read_text().splitlines()) == 3
    if name == "mean_teacher":  # the teacher is the run's weights, and it differs from the student
        # an epoch: 64 labelled draws (balanced: the modern recipe's sampler) and as many unlabelled
        # ones (--unlabelled-share 0.5), none counted as missed
        assert ours.coverage["clips"] == 128 and ours.coverage["missed"] == 0
        assert ours.weights("auto") is ours.ema["weights"]
        assert any(not torch.equal(ours.ema["weights"][k], v) for k, v in ours.model.items() if v.is_floating_point())


def test_interrupted_checkpoint_write_keeps_the_previous_file(tiny_run, tmp_path, monkeypatch):
    target = tmp_path / "epoch_001.pt"
    target.write_bytes((tiny_run / "epoch_001.pt").read_bytes())

    def crash(state, f):
        f.write(b"partial bytes")
        raise KeyboardInterrupt("killed during write")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        Checkpoint.load(tiny_run / "epoch_002.pt").save(target)
    assert Checkpoint.load(target).epoch == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_001.pt"]


def test_truncated_or_foreign_checkpoint_is_a_clear_error(tiny_run, tmp_path):
    truncated = tmp_path / "epoch_001.pt"
    truncated.write_bytes((tiny_run / "epoch_001.pt").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        Checkpoint.load(truncated)
    assert str(truncated) in str(info.value)
    foreign = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an audioscene checkpoint"):
        Checkpoint.load(foreign)


def test_fresh_run_refuses_a_folder_with_checkpoints(tiny_run, tiny_data):
    with pytest.raises(CheckpointError, match="--resume"):
        training.train(tiny_config(tiny_data, tiny_run), progress=False)


def test_config_from_toml(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('model = "resnet_c_att"\nbetas = [0.9, 0.99]\n[model_args]\nwidth = 16\nstem_stride = 1\n')
    config = TrainConfig.from_toml(path, epochs=3, model_args={"width": 8})
    assert (config.model, config.model_args, config.betas, config.epochs, config.lr) == (
        "resnet_c_att", {"width": 8, "stem_stride": 1}, (0.9, 0.99), 3, 1e-4)  # flags override key by key
    assert (config.model_config(3).width, config.model_config(3).stem_stride) == (8, 1)
    path.write_text('model = "resnet_c_att"\nwidth = 16\n')  # as before model_args: said where it goes now
    with pytest.raises(ConfigError, match=r"width is a model setting now: put it under \[model_args\] \(width = 16\)"):
        TrainConfig.from_toml(path)
    path.write_text("widht = 16\n")
    with pytest.raises(ConfigError, match="unknown key.*widht"):
        TrainConfig.from_toml(path)


def test_cli_errors_are_one_line(tiny_data, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("learning_rate = 0.1\n")
    assert_one_line_error(run_cli("train", "--config", str(config)), "unknown key", "learning_rate")
    assert_one_line_error(run_cli("train", "--train-data", str(tmp_path / "nowhere"), "--eval-data",
                                  str(tiny_data / "eval"), "--out", str(tmp_path / "r")), "no such data folder")
    assert_one_line_error(run_cli("train", "--model-arg", "width"), "--model-arg: expected KEY=VALUE, got 'width'")
    assert_one_line_error(run_cli("train", "--data", "d", "--eval-data", "e", "--model-arg", "width=0"),
                          "width must be an integer >= 1, got 0")
    assert_one_line_error(run_cli("train", "--data", "d", "--eval-data", "e", "--model-arg", "depth=3"),
                          "model_args depth: not a setting of the resnet family", "its settings: width")
    assert_one_line_error(run_cli("train", "--model", "resnet_z"), "invalid choice")
    assert_one_line_error(run_cli("evaluate", "--run", str(tmp_path / "none"), "--data", str(tiny_data / "eval")),
                          "no such run folder")


@pytest.mark.parametrize("key, value, expected", [
    ("betas", 0.9, "betas = 0.9: expected a list of 2 numbers"),
    ("betas", [0.9, 1.5], "betas = (0.9, 1.5): expected two numbers in [0, 1)"),
    ("epochs", 1.5, "epochs = 1.5: expected an integer"),
    ("epochs", "five", "epochs = 'five': expected an integer"),
    ("lr", "0.001", "lr = '0.001': expected a number"),
    ("lr", float("nan"), "lr must be a finite number > 0, got nan"),
    ("lr", float("inf"), "lr must be a finite number > 0, got inf"),
    ("seed", "abc", "seed = 'abc': expected an integer"),
    ("device", "tpu", "device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    ("device", "cuda:abc", "got 'cuda:abc'"),
    ("model_args", {"stem_stride": 0}, "stem_stride must be an integer >= 1, got 0"),
    ("clip_seconds", 0, "clip_seconds must be a finite number > 0, got 0.0"),
    ("clip_seconds", -5, "clip_seconds must be a finite number > 0, got -5.0"),
    ("micro_batch_size", 0, "micro_batch_size must be an integer >= 1, got 0"),
    ("channels_last", "no", "channels_last = 'no': expected true or false"),
    ("model_args", {"width": 8.5}, "width = 8.5: expected an integer"),
    ("model_args", {"width": True}, "width = True: expected an integer"),
    ("model_args", 3, "model_args = 3: expected a table of KEY = VALUE"),
    ("workers", -1, "workers must be an integer >= 0, got -1"),
])
def test_config_checks_every_fields_type_and_range(tmp_path, key, value, expected):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({key: value})
    assert expected in str(info.value)
    if not (isinstance(value, float) and not math.isfinite(value)):  # TOML writes these differently
        path = tmp_path / "run.toml"
        text = (f"[{key}]\n" + "".join(f"{k} = {v!r}\n" for k, v in value.items()) if isinstance(value, dict)
                else f"{key} = {value!r}\n")
        path.write_text(text.replace("'", '"').replace("True", "true"))
        with pytest.raises(ConfigError, match=f"run.toml: {key}"):
            TrainConfig.from_toml(path)


def test_config_converts_an_integer_where_a_float_is_meant():
    config = TrainConfig(lr=1, clip_seconds=5, betas=[0, 0.5])
    assert (config.lr, config.clip_seconds, config.betas) == (1.0, 5.0, (0.0, 0.5))
    assert isinstance(config.lr, float) and isinstance(config.betas, tuple)


@pytest.mark.parametrize("args, fragment", [
    (["--lr", "inf"], "--lr: expected a finite number > 0, got 'inf'"),
    (["--lr", "0"], "--lr: expected a finite number > 0"),
    (["--device", "tpu"], "--device: device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    (["--device", "cuda:abc"], "--device: device must be"),
    (["--seed", "abc"], "--seed: expected an integer >= 0"),
    (["--workers", "-1"], "--workers: expected an integer >= 0"),
])
def test_train_flags_are_checked_at_the_boundary(args, fragment):
    assert_one_line_error(run_cli("train", *args), fragment)


def test_only_the_packages_errors_become_one_line_messages(monkeypatch, capsys):
    """A ValueError from numpy or torch inside a command is a bug: it keeps its traceback."""
    from audioscene import cli

    def broken(args):
        np.zeros(3).reshape(2, 2)  # numpy's ValueError

    monkeypatch.setattr(cli, "build_parser", lambda real=cli.build_parser: _with_func(real(), broken))
    with pytest.raises(ValueError, match="cannot reshape"):
        cli.main(["synth", "--out", "x"])

    def user_error(args):
        raise ConfigError("lr must be a finite number > 0, got 0")

    monkeypatch.setattr(cli, "build_parser", lambda real=cli.build_parser: _with_func(real(), user_error))
    assert cli.main(["synth", "--out", "x"]) == 1
    assert capsys.readouterr().err == "audioscene synth: error: lr must be a finite number > 0, got 0\n"


def _with_func(parser, func):
    parser._subparsers._group_actions[0].choices["synth"].set_defaults(func=func)
    return parser


def damaged_copy(source, target, change) -> None:
    state = torch.load(source, weights_only=True)
    change(state)
    torch.save(state, target)


@pytest.mark.parametrize("change, fragment", [
    (lambda s: s.pop("train_config"), "incomplete checkpoint, it lacks train_config"),
    (lambda s: s.pop("history"), "incomplete checkpoint, it lacks history"),
    (lambda s: s["model"].pop("head.attention.weight"), "do not fit together"),
    (lambda s: s["model_config"].update(width=16), "do not fit together"),
    (lambda s: s["model"]["head.classifier.bias"].fill_(float("nan")), "hold NaN or Inf (e.g. head.classifier.bias)"),
    (lambda s: s.update(labels=s["labels"][:3]), "3 labels for a model with 10 outputs"),
])
def test_a_damaged_checkpoint_is_one_error_naming_the_file(tiny_run, tmp_path, change, fragment):
    path = tmp_path / "epoch_001.pt"
    damaged_copy(tiny_run / "epoch_001.pt", path, change)
    with pytest.raises(CheckpointError, match="epoch_001.pt") as info:
        Checkpoint.load(path).build(path)
    assert fragment in str(info.value)
    assert_one_line_error(run_cli("tag", str(tiny_run), "--run", str(tmp_path), "--checkpoint", str(path)), fragment)


def test_a_full_disk_keeps_the_previous_checkpoint_and_names_the_path(tiny_run, tmp_path, monkeypatch):
    target = tmp_path / "epoch_001.pt"
    target.write_bytes((tiny_run / "epoch_001.pt").read_bytes())
    stale = tmp_path / ".epoch_001.pt.999999999.tmp"  # left by a writer killed long ago
    stale.write_bytes(b"")

    def full_disk(state, f):
        f.write(b"some bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"epoch_001.pt: could not be written \(No space left on device\)"):
        Checkpoint.load(tiny_run / "epoch_002.pt").save(target)
    assert Checkpoint.load(target).epoch == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_001.pt"]  # no temporary left, the stale one gone


def test_resume_refuses_a_checkpoint_of_another_run(tiny_data, tmp_path):
    ours = training.train(tiny_config(tiny_data, tmp_path / "ours", epochs=1), progress=False)
    other = training.train(tiny_config(tiny_data, tmp_path / "other", epochs=2, seed=3), progress=False)
    (other / "epoch_002.pt").rename(ours / "epoch_002.pt")  # a stray file from the other run
    before = (ours / "metrics.csv").read_text()
    with pytest.raises(CheckpointError, match="epoch_002.pt: belongs to another run than epoch_001.pt"):
        training.resume(ours, epochs=3, progress=False)
    assert (ours / "metrics.csv").read_text() == before and not (ours / "epoch_003.pt").exists()
    (tmp_path / "lonely").mkdir()
    damaged_copy(ours / "epoch_001.pt", tmp_path / "lonely" / "epoch_001.pt", lambda s: s.pop("optimizer"))
    with pytest.raises(CheckpointError, match="cannot resume from it, it lacks optimizer"):
        training.resume(tmp_path / "lonely", progress=False)


def test_tensorboard_drops_the_points_of_an_interrupted_epoch(tiny_data, tmp_path):
    """An epoch's train/loss points that reached disk before a kill must not double the curve."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = training.train(tiny_config(tiny_data, tmp_path / "run", epochs=2), progress=False)
    (run / "epoch_002.pt").unlink()  # as if killed in epoch 2 after its points were flushed
    time.sleep(1.1)  # a new event file name (they carry the time in seconds)
    training.resume(run, progress=False)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    steps = [event.step for event in events.Scalars("train/loss")]
    assert steps == sorted(set(steps)) and len(steps) == 2 * 64 // 16


def test_the_scores_of_summarize_drive_metrics_csv_and_the_best_epoch(tiny_run, tmp_path):
    from audioscene.metrics import SCORES
    from audioscene.run_log import metric_columns

    header = (tiny_run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == list(metric_columns()) and set(SCORES) <= set(header)
    run = tmp_path / "run"
    run.mkdir()
    for path in list_epochs(tiny_run):
        state = Checkpoint.load(path)
        state.history = [{**row, "mAUC": 1.0 - row["mAP"]} for row in state.history]  # the two disagree
        state.train_config["best_metric"] = "mAUC"
        state.save(run / path.name)
    history = Checkpoint.load(run / "epoch_002.pt").history
    by_auc = max(history, key=lambda row: row["mAUC"])["epoch"]
    assert by_auc != max(history, key=lambda row: row["mAP"])["epoch"]
    assert [path for path, _ in Run(run).best()] == [run / f"epoch_{by_auc:03d}.pt"]
    with pytest.raises(ConfigError, match="best_metric"):
        TrainConfig(best_metric="accuracy")
