"""The typed checkpoint: round trip, older files, the run-folder choices, and who imports what."""

import subprocess
import sys

import torch

from audioscene.checkpoints import CHECKPOINT_FORMAT, Checkpoint, best_epoch, list_epochs, resolve


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


def test_a_file_from_before_the_dataclass_loads(tiny_run, tmp_path):
    """Checkpoints written as plain dicts, without the later keys (run id, coverage), still load."""
    raw = torch.load(tiny_run / "epoch_001.pt", weights_only=True)
    for key in ("run_id", "coverage", "world_size"):
        raw.pop(key)
    torch.save(raw, tmp_path / "epoch_001.pt")
    old = Checkpoint.load(tmp_path / "epoch_001.pt")
    assert (old.run_id, old.coverage, old.world_size) == ("", None, 1) and old.epoch == 1
    old.build(tmp_path / "epoch_001.pt")


def test_resolve_the_choices_of_a_run(tiny_run):
    paths = list_epochs(tiny_run)
    assert resolve(tiny_run, "avg") == paths and resolve(tiny_run, "last") == paths[-1:]
    history = Checkpoint.load(paths[-1]).history
    assert resolve(tiny_run, "best") == [tiny_run / f"epoch_{best_epoch(history):03d}.pt"]
    assert resolve(tiny_run, tiny_run / "epoch_001.pt") == [tiny_run / "epoch_001.pt"]
    assert best_epoch([{"epoch": 1, "mAP": float("nan")}, {"epoch": 2, "mAP": 0.1}]) == 2


def test_using_a_model_does_not_load_the_training_loop():
    code = ("import sys, audioscene.infer, audioscene.export, audioscene.viewer; "
            "print(sorted(m for m in sys.modules if m in ('audioscene.train', 'audioscene.distributed')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
