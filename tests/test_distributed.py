"""DDP training with torchrun on CPU (gloo): coverage, one checkpoint per epoch, equality with one
process, resuming with another number of ranks, and failing fast when a rank dies."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from audioscene import train as training
from audioscene.batches import split_batches
from audioscene.checkpoints import Checkpoint, list_epochs
from audioscene.data.folder import ClipDataset
from audioscene.data.store import pack
from audioscene.distributed import Context
from audioscene.evaluate import evaluate_run

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def torchrun(nproc: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*TORCHRUN, "--nproc-per-node", str(nproc), "-m", "audioscene", "train", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def train_args(tiny_data: Path, out: Path, *extra: str) -> list[str]:
    return ["--eval-data", str(tiny_data / "eval"), "--model", "resnet_b_att", "--model-arg", "width=8", "--lr", "1e-3",
            "--seed", "3", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def tiny_shards(tiny_data, tmp_path_factory):
    dataset = ClipDataset.from_folder(tiny_data / "train")
    out = tmp_path_factory.mktemp("ddp_shards")
    pack(dataset.clips, out, dataset.label_set, shard_bytes=150_000, progress=False)
    return out


def test_split_batches_split_every_global_batch_exactly_once():
    order = list(np.random.default_rng(0).permutation(37))
    for world, micro in ((1, 8), (2, 4), (2, 2), (3, 1)):
        plans = [split_batches(order, 8, micro, Context(rank, world)) for rank in range(world)]
        assert len({len(p) for p in plans}) == 1  # every rank takes part in every step
        used = [i for plan in plans for indices, weight, _ in plan if weight > 0 for i in indices]
        assert sorted(used) == list(range(37))
        steps = [sum(last for _, _, last in plan) for plan in plans]
        assert steps == [5] * world  # ceil(37 / 8) optimizer steps on every rank
        for plan in plans:
            for indices, weight, _ in plan:
                assert weight in (0.0, 1 / 8, 1 / 5)  # 1 / len(global batch); the last batch has 5 clips


def test_two_ranks_on_shards_cover_the_epoch_and_checkpoint_once(tiny_data, tiny_shards, tmp_path):
    run = tmp_path / "ddp"
    result = torchrun(2, "--data", f"shards:{tiny_shards}", "--batch-size", "16", "--epochs", "2",
                      *train_args(tiny_data, run))
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in list_epochs(run)] == ["epoch_001.pt", "epoch_002.pt"]
    assert len((run / "metrics.csv").read_text().splitlines()) == 3  # written by rank 0 only
    for path in list_epochs(run):
        state = Checkpoint.load(path)
        assert state.world_size == 2
        assert state.coverage == {"clips": 64, "distinct": 64, "missed": 0}  # disjoint ranks, nothing lost
    # the checkpoint evaluates in a single process
    scores = evaluate_run(run, tiny_data / "eval", device="cpu", progress=False)
    assert 0 < scores.peak["mAP"] <= 1


def test_two_ranks_equal_one_rank_with_the_same_global_batch(tiny_data, tmp_path):
    """1 process × 2 accumulated micro-batches of 4 vs 2 processes × 1 micro-batch of 4: every forward
    sees the same 4 clips, and the summed gradients are the same sum, so the trained weights agree to
    float tolerance. BatchNorm running statistics (buffers) differ by design: DDP keeps rank 0's,
    one process updates them with both micro-batches, so only parameters are compared."""
    one, two = tmp_path / "one", tmp_path / "two"
    common = ["--data", str(tiny_data / "train"), "--batch-size", "8", "--micro-batch-size", "4", "--epochs", "1"]
    result = torchrun(1, *common, *train_args(tiny_data, one))
    assert result.returncode == 0, result.stderr[-3000:]
    result = torchrun(2, *common, *train_args(tiny_data, two))
    assert result.returncode == 0, result.stderr[-3000:]
    a = Checkpoint.load(one / "epoch_001.pt")
    b = Checkpoint.load(two / "epoch_001.pt")
    model = a.build()[0]
    parameters = {name for name, _ in model.named_parameters()}
    for name in parameters:
        torch.testing.assert_close(a.model[name], b.model[name], atol=2e-5, rtol=1e-4, msg=name)
    assert a.coverage == b.coverage == {"clips": 64, "distinct": 64, "missed": 0}
    assert a.history[0]["train_loss"] == pytest.approx(b.history[0]["train_loss"], rel=1e-5)


def test_resume_a_two_rank_run_with_one_rank(tiny_data, tmp_path):
    run = tmp_path / "ddp"
    result = torchrun(2, "--data", str(tiny_data / "train"), "--batch-size", "16", "--epochs", "1",
                      *train_args(tiny_data, run))
    assert result.returncode == 0, result.stderr[-3000:]
    training.resume(run, epochs=2, progress=False)
    states = [Checkpoint.load(p) for p in list_epochs(run)]
    assert [s.world_size for s in states] == [2, 1]
    assert [row["epoch"] for row in states[-1].history] == [1, 2]
    assert states[-1].coverage == {"clips": 64, "distinct": 64, "missed": 0}


def test_sync_batchnorm_on_cpu_is_a_clear_error(tiny_data, tmp_path):
    from conftest import tiny_config

    with pytest.raises(training.ConfigError, match="SyncBatchNorm runs on GPUs only"):
        training.train(tiny_config(tiny_data, tmp_path / "sbn", sync_batchnorm=True, device="cpu"), progress=False)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def test_a_dead_rank_fails_the_job_fast(tiny_data, tmp_path):
    run = tmp_path / "doomed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([*TORCHRUN, "--nproc-per-node", "2", "-m", "audioscene", "train", "--data",
                                str(tiny_data / "train"), "--batch-size", "2", "--epochs", "5",
                                *train_args(tiny_data, run)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
    deadline = time.monotonic() + 120
    while not (run / "tensorboard").is_dir():  # rank 0 is set up and training
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    time.sleep(1.0)
    workers = children(process.pid)
    assert len(workers) == 2
    os.kill(max(workers), signal.SIGKILL)  # the rank started last
    killed_at = time.monotonic()
    output, _ = process.communicate(timeout=90)
    assert process.returncode != 0
    assert time.monotonic() - killed_at < 60
    assert "Signal 9" in output or "SIGKILL" in output or "exitcode" in output
    assert not (run / "epoch_005.pt").exists()


def test_a_last_global_batch_of_one_clip_joins_the_one_before():
    """BatchNorm over clips (the embedding models' heads) cannot train on one clip: 16 clips in
    batches of 5 make steps of 5, 5 and 6, never a step of 1."""
    from audioscene import models

    plan = split_batches(list(range(16)), 5, 5, Context())
    assert [len(indices) for indices, _, _ in plan] == [5, 5, 6] and sum(last for *_, last in plan) == 3
    assert [weight for _, weight, _ in plan] == [1 / 5, 1 / 5, 1 / 6]
    model = models.create("yu_multilevel_att", n_classes=4).train()
    model(torch.randn(6, 10, 128))["clipwise"].sum().backward()
    assert [len(i) for i, _, _ in split_batches(list(range(6)), 5, 5, Context())] == [6]
    assert [len(i) for i, _, _ in split_batches([0], 5, 5, Context())] == [1]  # a set of one clip stays one
