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
from audioscene.data.folder import ClipDataset
from audioscene.metrics import summarize
from audioscene.train import CheckpointError, ConfigError, TrainConfig


def test_tiny_run_lowers_loss_and_writes_checkpoints_and_metrics(tiny_run):
    assert [p.name for p in training.list_checkpoints(tiny_run)] == ["epoch_001.pt", "epoch_002.pt"]
    lines = (tiny_run / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss,mAP,mAUC,d_prime") and len(lines) == 3
    history = training.load_checkpoint(tiny_run / "epoch_002.pt")["history"]
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tiny_run / "tensorboard"))


def test_checkpoint_rebuilds_the_model(tiny_run):
    state = training.load_checkpoint(tiny_run / "epoch_002.pt")
    model, frontend, labels = training.model_from_checkpoint(state)
    assert labels.names[0] == "Alarm_bell_ringing" and len(labels) == 10
    assert model.config.width == 8 and frontend.config.n_mels == 64
    assert not model.training


def test_avg_is_the_mean_of_checkpoint_outputs_scored(tiny_run, tiny_data):
    result = training.evaluate_run(tiny_run, tiny_data / "eval", device="cpu", progress=False)
    dataset = ClipDataset.from_folder(tiny_data / "eval", result["labels"])
    outputs = []
    for path in training.list_checkpoints(tiny_run):
        model, frontend, _ = training.model_from_checkpoint(training.load_checkpoint(path))
        with torch.no_grad():
            waves = torch.stack([dataset[i][0] for i in range(len(dataset))])
            outputs.append(model(frontend(waves))["clipwise"].numpy())
    expected = summarize(dataset.targets, np.mean(outputs, axis=0))
    assert result["avg"]["mAP"] == pytest.approx(expected["mAP"], abs=1e-6)
    assert result["avg"]["mAUC"] == pytest.approx(expected["mAUC"], abs=1e-6)
    best = max(result["epochs"], key=lambda e: result["epochs"][e]["mAP"])
    assert result["peak_epoch"] == best and result["peak"] is result["epochs"][best]
    history = training.load_checkpoint(tiny_run / "epoch_002.pt")["history"]
    assert result["epochs"][2]["mAP"] == pytest.approx(history[1]["mAP"], abs=1e-6)


def test_killed_run_resumes_to_identical_weights(tiny_data, tmp_path):
    reference = training.train(tiny_config(tiny_data, tmp_path / "reference", epochs=3), progress=False)
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "audioscene", "train", "--train-data", str(tiny_data / "train"),
               "--eval-data", str(tiny_data / "eval"), "--out", str(killed), "--model", "resnet_b_att",
               "--width", "8", "--epochs", "3", "--batch-size", "16", "--lr", "1e-3", "--seed", "7"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "epoch_001.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline, "training died before its first checkpoint"
        time.sleep(0.05)
    time.sleep(0.3)  # into epoch 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "epoch_003.pt").exists()
    result = run_cli("train", "--resume", str(killed))
    assert result.returncode == 0, result.stderr
    ours = training.load_checkpoint(killed / "epoch_003.pt")
    theirs = training.load_checkpoint(reference / "epoch_003.pt")
    for key, tensor in theirs["model"].items():
        assert torch.equal(ours["model"][key], tensor), key
    assert [r["train_loss"] for r in ours["history"]] == [r["train_loss"] for r in theirs["history"]]
    assert len((killed / "metrics.csv").read_text().splitlines()) == 4


def test_interrupted_checkpoint_write_keeps_the_previous_file(tiny_run, tmp_path, monkeypatch):
    target = tmp_path / "epoch_001.pt"
    target.write_bytes((tiny_run / "epoch_001.pt").read_bytes())

    def crash(state, f):
        f.write(b"partial bytes")
        raise KeyboardInterrupt("killed during write")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        training.save_checkpoint(target, {"format": "anything"})
    assert training.load_checkpoint(target)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_001.pt"]


def test_truncated_or_foreign_checkpoint_is_a_clear_error(tiny_run, tmp_path):
    truncated = tmp_path / "epoch_001.pt"
    truncated.write_bytes((tiny_run / "epoch_001.pt").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        training.load_checkpoint(truncated)
    assert str(truncated) in str(info.value)
    foreign = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an audioscene checkpoint"):
        training.load_checkpoint(foreign)


def test_fresh_run_refuses_a_folder_with_checkpoints(tiny_run, tiny_data):
    with pytest.raises(CheckpointError, match="--resume"):
        training.train(tiny_config(tiny_data, tiny_run), progress=False)


def test_config_from_toml(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('model = "resnet_c_att"\nwidth = 16\nbetas = [0.9, 0.99]\n')
    config = TrainConfig.from_toml(path, epochs=3)
    assert (config.model, config.width, config.betas, config.epochs, config.lr) == ("resnet_c_att", 16, (0.9, 0.99), 3, 1e-4)
    path.write_text("widht = 16\n")
    with pytest.raises(ConfigError, match="unknown key.*widht"):
        TrainConfig.from_toml(path)


def test_cli_errors_are_one_line(tiny_data, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("learning_rate = 0.1\n")
    assert_one_line_error(run_cli("train", "--config", str(config)), "unknown key", "learning_rate")
    assert_one_line_error(run_cli("train", "--train-data", str(tmp_path / "nowhere"), "--eval-data",
                                  str(tiny_data / "eval"), "--out", str(tmp_path / "r")), "no such data folder")
    assert_one_line_error(run_cli("train", "--width", "zero"), "--width: expected an integer >= 1")
    assert_one_line_error(run_cli("train", "--model", "resnet_z"), "invalid choice")
    assert_one_line_error(run_cli("evaluate", "--run", str(tmp_path / "none"), "--data", str(tiny_data / "eval")),
                          "no such run folder")
