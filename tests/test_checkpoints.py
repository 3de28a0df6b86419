"""The typed checkpoint: round trip, earlier formats refused, the run-folder choices, and who imports what."""

import subprocess
import sys

from pathlib import Path

import pytest
import torch

from audioscene.checkpoints import CHECKPOINT_FORMAT, Checkpoint, Run, best_epoch, list_epochs


def test_round_trip_keeps_every_field(tiny_run, tmp_path):
    state = Checkpoint.load(tiny_run / "epoch_002.pt")
    state.save(tmp_path / "epoch_002.pt")
    again = Checkpoint.load(tmp_path / "epoch_002.pt")
    for name in ("epoch", "model_config", "frontend_config", "labels", "train_config", "history", "metrics",
                 "world_size", "coverage", "run_id", "format"):
        assert getattr(again, name) == getattr(state, name), name
    assert state.run_id and state.format == CHECKPOINT_FORMAT and state.optimizer is not None
    for name, tensor in state.model.items():
        assert torch.equal(again.model[name], tensor), name  # stored bytes read back: exact
    model, frontend, labels = again.build()
    assert labels.names == tuple(state.labels) and model.config.width == 8 and not model.training


def test_a_checkpoint_of_an_earlier_format_is_refused_saying_so(tiny_run, tmp_path):
    """No conversion shims: a checkpoint of an earlier format gets one line naming it and the format."""
    from helpers import assert_one_line_error, run_cli

    from audioscene.checkpoints import CheckpointError

    raw = torch.load(tiny_run / "epoch_001.pt", weights_only=True)
    raw["format"] = "audioscene-checkpoint/1"
    (tmp_path / "old").mkdir()
    torch.save(raw, tmp_path / "old" / "epoch_001.pt")
    expected = (f"epoch_001.pt: written by an earlier audioscene (format audioscene-checkpoint/1); this version reads "
                f"{CHECKPOINT_FORMAT} only: train the run again")
    with pytest.raises(CheckpointError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        Checkpoint.load(tmp_path / "old" / "epoch_001.pt")
    assert_one_line_error(run_cli("tag", str(tmp_path), "--run", str(tmp_path / "old")), expected)
    raw["format"] = "something else"
    torch.save(raw, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an audioscene checkpoint"):
        Checkpoint.load(tmp_path / "foreign.pt")


def chosen(run: Run, choice) -> list[Path]:
    return [path for path, _ in run.select(choice)]


def test_the_choices_of_a_run_and_each_checkpoint_loaded_once(tiny_run, monkeypatch):
    loads = []
    real_load = Checkpoint.load.__func__
    monkeypatch.setattr(Checkpoint, "load", classmethod(lambda cls, path, **kw: loads.append(Path(path).name) or
                                                        real_load(cls, path, **kw)))
    run = Run(tiny_run)
    paths = list_epochs(tiny_run)
    assert run.paths == paths and loads == []  # listed once, nothing loaded yet
    assert chosen(run, "avg") == paths and chosen(run, "last") == paths[-1:]
    history = Checkpoint.load(paths[-1]).history
    loads.clear()
    assert chosen(run, "best") == [tiny_run / f"epoch_{best_epoch(history):03d}.pt"]
    assert chosen(run, tiny_run / "epoch_001.pt") == [tiny_run / "epoch_001.pt"]
    assert run.config.model == "resnet_b_att" and [p for p, _ in run.each()] == paths
    assert loads == []  # best, last, the first and the config: all kept from the calls before
    assert Run.open(run) is run
    assert best_epoch([{"epoch": 1, "mAP": float("nan")}, {"epoch": 2, "mAP": 0.1}]) == 2


def test_using_a_model_does_not_load_the_training_loop():
    code = ("import sys, audioscene.infer, audioscene.export, audioscene.viewer; "
            "print(sorted(m for m in sys.modules if m in ('audioscene.train', 'audioscene.distributed')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
