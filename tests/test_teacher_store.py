"""Teacher stores (`teacher_store.py`, `predict -o DIR`): the same targets as the small `.npz` form
within float16's precision, written in parts that resume and that ranks share, merged once, every
check of a teacher file holding for the new form."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, run_cli, tiny_config

from audioscene import distill
from audioscene import train as training
from audioscene.checkpoints import Checkpoint
from audioscene.distill import Teacher
from audioscene.errors import InputError
from audioscene.labels import LabelSet
from audioscene.teacher_store import TeacherStore, merge, write_part


@pytest.fixture(scope="module")
def small_teacher(tiny_run, tiny_data, tmp_path_factory):
    """The tiny run's predictions on the training split, as a small file."""
    path = tmp_path_factory.mktemp("teacher") / "teacher.npz"
    assert run_cli("predict", "--run", str(tiny_run), "--data", str(tiny_data / "train"), "-o",
                   str(path)).returncode == 0
    return path


def test_a_store_gives_the_small_file_s_targets_to_float16_precision_and_trains_a_student(
        tiny_run, tiny_data, small_teacher, tmp_path):
    store = tmp_path / "teacher"
    result = run_cli("predict", "--run", str(tiny_run), "--data", str(tiny_data / "train"), "-o", str(store),
                     "--part-clips", "24", "--frames")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in store.iterdir()) == ["frames.npy", "keys.npy", "meta.json", "order.npy", "probs.npy"]
    meta = json.loads((store / "meta.json").read_text())
    assert meta["rows"] == 64 and meta["frame_hop"] == 0.32 and meta["data"] == str((tiny_data / "train").resolve())
    labels = Checkpoint.load(sorted(tiny_run.glob("epoch_*.pt"))[-1]).labels
    small, large = Teacher(small_teacher, LabelSet(tuple(labels))), Teacher(store, LabelSet(tuple(labels)))
    keys = list(np.random.default_rng(0).permutation(sorted(json.loads(json.dumps(
        np.load(small_teacher)["keys"].tolist())))))
    for temperature in (1.0, 2.0):
        small.temperature = large.temperature = temperature
        expected, got = small.targets(keys), large.targets(keys)
        assert (got - expected).abs().max() <= 5e-4 and not torch.equal(got, expected)  # float16: close, not equal
    assert np.load(store / "frames.npy", mmap_mode="r").shape == (64, meta["frames"], 10) and meta["frames"] >= 31
    finer = tmp_path / "finer"  # the teacher's frames on a student's 0.16 s grid
    assert run_cli("predict", "--run", str(tiny_run), "--data", str(tiny_data / "train"), "-o", str(finer), "--frames",
                   "--frame-hop", "0.16").returncode == 0
    assert json.loads((finer / "meta.json").read_text())["frame_hop"] == 0.16
    coarse, fine = np.load(store / "frames.npy").astype(np.float32), np.load(finer / "frames.npy").astype(np.float32)
    assert fine.shape == (64, 2 * meta["frames"], 10)
    np.testing.assert_allclose(fine[:, 1:-1:2][:, :-1], 0.75 * coarse[:, :-2] + 0.25 * coarse[:, 1:-1], atol=2e-3)
    assert_one_line_error(run_cli("predict", "--run", str(tiny_run), "--data", str(tiny_data / "train"), "-o",
                                  str(tmp_path / "x"), "--frame-hop", "0.16"), "give --frames too")
    run = training.train(tiny_config(tiny_data, tmp_path / "student", epochs=1, teacher=str(store), kd_lambda=0.5),
                         progress=False)
    assert Checkpoint.load(run / "epoch_001.pt").history[0]["train_loss"] > 0
    with pytest.raises(InputError, match=r"1 of 2 training clips have no teacher prediction \(e.g. 'nope'\)"):
        large.require([keys[0], "nope"])
    long_key = keys[0] + "_and_more_characters_than_any_stored_key"
    assert large.rows([long_key, keys[0][:-1]]).tolist() == [-1, -1]  # never a prefix's row


def test_an_interrupted_predict_resumes_at_its_first_missing_part(tiny_run, tiny_data, tmp_path, monkeypatch):
    store, written = tmp_path / "teacher", []
    real = distill.write_part

    def failing(folder, index, *args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(index)
        return real(folder, index, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(distill, "write_part", failing)
        with pytest.raises(KeyboardInterrupt):
            distill.predict_to_file([tiny_run], str(tiny_data / "train"), store, progress=False, part_clips=16)
    assert written == [0, 1] and not (store / "meta.json").exists()
    again = []
    with monkeypatch.context() as patched:
        patched.setattr(distill, "write_part", lambda folder, index, *a, **k: again.append(index) or real(folder, index,
                                                                                                           *a, **k))
        distill.predict_to_file([tiny_run], str(tiny_data / "train"), store, progress=False, part_clips=16)
    assert again == [2, 3] and not (store / "parts").exists()
    whole = tmp_path / "whole"
    distill.predict_to_file([tiny_run], str(tiny_data / "train"), whole, progress=False, part_clips=16)
    for name in ("probs.npy", "keys.npy", "order.npy"):
        assert np.array_equal(np.load(store / name), np.load(whole / name))


def test_ranks_share_the_parts_and_the_last_one_merges(tiny_run, tiny_data, tmp_path, monkeypatch):
    """Two ranks as torchrun numbers them (RANK, WORLD_SIZE), one after the other, no process group:
    each writes every second part; the one that finds all parts written merges (the processes of
    `test_shards_are_predicted_one_part_per_shard_by_two_ranks` run at once)."""
    store = tmp_path / "teacher"
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        distill.predict_to_file([tiny_run], str(tiny_data / "train"), store, progress=False, part_clips=8)
        assert (store / "meta.json").is_file() == (rank == 0)  # rank 1 finished first: rank 0 found all 8 parts
        if rank == 1:
            assert sorted(p.name for p in (store / "parts").iterdir()) == [f"part-{i:06d}" for i in (1, 3, 5, 7)]
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    one = tmp_path / "one"
    distill.predict_to_file([tiny_run], str(tiny_data / "train"), one, progress=False, part_clips=8)
    assert TeacherStore(store).n == 64
    np.testing.assert_array_equal(np.load(store / "probs.npy"), np.load(one / "probs.npy"))


@pytest.fixture
def store(tmp_path):
    labels = ("a", "b", "c")
    probs = np.random.default_rng(0).random((10, 3)).astype(np.float32)
    write_part(tmp_path / "s", 0, [f"clip{i}" for i in range(6)], probs[:6])
    write_part(tmp_path / "s", 1, [f"clip{i}" for i in range(6, 10)], probs[6:])
    return merge(tmp_path / "s", 2, labels, data="here"), probs


def _rewrite(path, name, change):
    array = np.load(path / f"{name}.npy")
    np.save(path / f"{name}.npy", change(array), allow_pickle=False)


@pytest.mark.parametrize("damage, fragment", [
    (lambda p: _rewrite(p, "probs", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 4, 1.5, a)),
     "1 probabilities outside [0, 1]"),
    (lambda p: _rewrite(p, "probs", lambda a: a.astype(np.float32)), "holds float32 of shape (10, 3)"),
    (lambda p: _rewrite(p, "keys", lambda a: np.sort(np.where(a == b"clip3", b"clip4", a))), "not sorted and unique"),
    (lambda p: _rewrite(p, "order", lambda a: np.where(a == 3, 4, a)), "not a permutation"),
    (lambda p: (p / "probs.npy").write_bytes((p / "probs.npy").read_bytes()[:-7]), "(truncated?)"),
    (lambda p: (p / "meta.json").write_text('{"format": "audioscene-teacher/2", "labels": ["a"], "rows": 10, '
                                            '"key_bytes": 6}'), "meta.json says float16 of shape (10, 1)"),
    (lambda p: (p / "meta.json").unlink(), "not a finished teacher store"),
    (lambda p: (p / "order.npy").unlink(), "order.npy is missing"),
])
def test_a_damaged_store_is_refused_in_one_message(store, damage, fragment):
    path, _ = store
    damage(path)
    with pytest.raises(InputError, match=None) as caught:
        TeacherStore(path)
    assert fragment in str(caught.value) and str(path) in str(caught.value)


def test_a_store_looks_up_rows_by_key_and_refuses_duplicates(store, tmp_path, tiny_data):
    path, probs = store
    opened = TeacherStore(path)
    rows = opened.rows(["clip7", "clip0", "missing"])
    assert rows.tolist() == [7, 0, -1]
    np.testing.assert_allclose(opened.clip_probs(rows[:2]), probs[[7, 0]], atol=5e-4)
    write_part(tmp_path / "dup", 0, ["a", "b"], probs[:2])
    write_part(tmp_path / "dup", 1, ["b"], probs[2:3])
    with pytest.raises(InputError, match="clip key 'b' occurs twice"):
        merge(tmp_path / "dup", 2, ("a", "b", "c"))
    with pytest.raises(InputError, match="1 of 3 parts are missing"):
        merge(tmp_path / "dup", 3, ("a", "b", "c"))
    with pytest.raises(InputError, match="probabilities outside"):
        write_part(tmp_path / "bad", 0, ["x"], np.array([[0.5, np.nan, 0.2]]))
    assert_one_line_error(run_cli("train", "--data", str(tiny_data / "train"), "--eval-data", str(tiny_data / "eval"),
                                  "--teacher", str(tmp_path / "nothing"), "--kd-lambda", "0.5", "--out",
                                  str(tmp_path / "r")), "nothing: no such teacher")


def test_shards_are_predicted_one_part_per_shard_by_two_ranks(tiny_run, tiny_data, tmp_path):
    """`shards:` data (a stream) into a store: the ranks take whole shards; the rows equal those of the
    folder the shards were packed from."""
    assert run_cli("pack", "--data", str(tiny_data / "train"), "--out", str(tmp_path / "shards"), "--shard-mb",
                   "0.5").returncode == 0
    n_shards = len(json.loads((tmp_path / "shards" / "index.json").read_text())["shards"])
    assert n_shards >= 3
    store = tmp_path / "from_shards"
    command = [sys.executable, "-m", "audioscene", "predict", "--run", str(tiny_run), "--data",
               f"shards:{tmp_path / 'shards'}", "-o", str(store), "--device", "cpu", "--batch-size", "5"]
    ranks = [subprocess.Popen(command, env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2"}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    outputs = [rank.communicate(timeout=300) for rank in ranks]
    assert all(rank.returncode == 0 for rank in ranks), outputs
    folder = tmp_path / "from_folder"
    distill.predict_to_file([tiny_run], str(tiny_data / "train"), folder, progress=False)
    streamed, listed = TeacherStore(store), TeacherStore(folder)
    assert streamed.n == listed.n == 64 and np.array_equal(np.asarray(streamed.keys), np.asarray(listed.keys))
    keys = [key.decode() for key in np.asarray(listed.keys)]
    np.testing.assert_allclose(streamed.clip_probs(streamed.rows(keys)), listed.clip_probs(listed.rows(keys)),
                               atol=1e-3)
    assert_one_line_error(run_cli("predict", "--run", str(tiny_run), "--data", f"shards:{tmp_path / 'shards'}", "-o",
                                  str(tmp_path / "t.npz")), "shards need a teacher store")
