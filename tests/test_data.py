"""Data at scale: AudioSet CSVs, shards, streaming splits, balanced sampling, own folders, DCASE 2018."""

import errno
import hashlib
import io
import json
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import assert_one_line_error, run_cli, tiny_config
from torch.utils.data import DataLoader

from audioscene import train as training
from audioscene.audio import AudioError, load
from audioscene.checkpoints import Checkpoint, list_epochs
from audioscene.data import DataSpec, dcase2018
from audioscene.data.audioset import Segment, SegmentFileError, read_segments
from audioscene.data.folder import Clip, ClipDataset, DataSetError
from audioscene.data.sampler import BalancedSampler
from audioscene.data.store import ShardDataset, ShardError, pack, verify
from audioscene.labels import LabelSet
from audioscene.labels import dcase2018 as dcase_labels

# The official files' format (balanced_train_segments.csv), lines as they appear there.
SEGMENTS = """\
# Segments csv created Sun Mar  5 10:54:25 2017
# num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882
# YTID, start_seconds, end_seconds, positive_labels
--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"
--ZhevVpy1s, 50.000, 60.000, "/m/012xff"
--aE2O5G5WE, 0.000, 10.000, "/m/03fwl,/m/04rlf,/m/09x0r"
-0BIyqJj9ZU, 30.000, 40.000, "/m/07rgt08,/m/07sq110,/t/dd00001,/m/zz_unknown"
"""


def test_segment_csv_in_the_official_format(tmp_path):
    path = tmp_path / "balanced_train_segments.csv"
    path.write_text(SEGMENTS)
    result = read_segments(path)
    assert [s.ytid for s in result.segments] == ["--PJHxphWEs", "--ZhevVpy1s", "--aE2O5G5WE", "-0BIyqJj9ZU"]
    first = result.segments[0]
    assert (first.start, first.end, first.mids, first.key) == (30.0, 40.0, ("/m/09x0r", "/t/dd00088"), "--PJHxphWEs_30000")
    assert result.labels(first) == ("Speech", "Gush")
    assert result.unknown_mids == Counter({"/m/zz_unknown": 1})
    assert "1 unknown mids" in result.report()


@pytest.mark.parametrize("line, problem", [
    ('abcdefghijk, 30.000, "/m/09x0r"', "expected 4 columns"),
    ('abcdefghijk, thirty, 40.000, "/m/09x0r"', "must be numbers"),
    ('abcdefghijk, 40.000, 30.000, "/m/09x0r"', "start < end"),
    ('abcdefghijk, 30.000, inf, "/m/09x0r"', "finite"),
    ('abcdefghijk, nan, 40.000, "/m/09x0r"', "finite"),
    ('abcdefghijk, 30.000, 40.000, ""', "no labels"),
    # YTIDs become file names: path-shaped ones must never get that far
    ('../../../../ESCAPED/evil, 30.000, 40.000, "/m/09x0r"', "not a YouTube id"),
    ('/abs/path/evilevil, 30.000, 40.000, "/m/09x0r"', "not a YouTube id"),
    ('abc, 30.000, 40.000, "/m/09x0r"', "not a YouTube id"),
])
def test_malformed_segment_lines(tmp_path, line, problem):
    path = tmp_path / "segments.csv"
    path.write_text(SEGMENTS + line + "\n")
    with pytest.raises(SegmentFileError, match=f"segments.csv:8: .*{problem}"):
        read_segments(path)
    skipped = read_segments(path, skip_bad=True)
    assert len(skipped.segments) == 4 and skipped.bad_lines[0][0] == 8 and "malformed" in skipped.report()


def test_segment_csv_quote_left_open_and_encoding_are_named(tmp_path):
    path = tmp_path / "segments.csv"
    # an unterminated quote once swallowed the next line silently (2 segments read as 1)
    path.write_text(SEGMENTS + 'abcdefghijk, 30.000, 40.000, "/m/09x0r\nbcdefghijkl, 0.000, 10.000, "/m/09x0r"\n')
    with pytest.raises(SegmentFileError, match="segments.csv:8: a quote opened on this line is not closed"):
        read_segments(path)
    assert len(read_segments(path, skip_bad=True).segments) == 4
    path.write_bytes(SEGMENTS.encode() + b'abcdefghijk, 30.000, 40.000, "/m/09x0r" # caf\xe9\n')
    with pytest.raises(SegmentFileError, match=r"segments.csv:8: not UTF-8 text \(byte 0xe9\)"):
        read_segments(path)
    with pytest.raises(SegmentFileError, match="YouTube id"):
        Segment("../../x", 0.0, 10.0, ("/m/09x0r",))  # the API refuses the same ids


@pytest.fixture(scope="module")
def shards(tiny_data, tmp_path_factory):
    """The 64 tiny training clips in shards of about 100 kB (10+ shards)."""
    dataset = ClipDataset.from_folder(tiny_data / "train")
    out = tmp_path_factory.mktemp("shards")
    pack(dataset.clips, out, dataset.label_set, shard_bytes=100_000, progress=False)
    return out, dataset


def test_pack_verify_read_round_trip_is_lossless(shards):
    out, dataset = shards
    index = json.loads((out / "index.json").read_text())
    assert index["n_clips"] == 64 and len(index["shards"]) >= 10
    assert verify(out, progress=False).ok
    stream = ShardDataset(out, shuffle=False)
    by_key = {key: (wave, target) for wave, target, key in stream}
    assert len(by_key) == 64
    for clip, target in zip(dataset.clips, dataset.targets):
        wave, streamed_target = by_key[clip.source.stem]
        np.testing.assert_array_equal(wave.numpy(), load(clip.source))  # every sample (lossless: exact)
        np.testing.assert_array_equal(streamed_target.numpy(), target)  # every label


def test_a_flipped_byte_is_found(shards, tmp_path):
    out, _ = shards
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shard = copy / json.loads((copy / "index.json").read_text())["shards"][3]["name"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = verify(copy, progress=False)
    assert not report.ok and shard.name in report.problems[0] and "checksum" in report.problems[0]
    result = run_cli("verify", str(copy))
    assert result.returncode == 1 and shard.name in result.stderr


def break_member(pack_dir, member_name: str) -> None:
    """Replace one member's bytes inside a packed shard (and fix the index's size and sha256, so
    only decoding can notice), as a bit rot after `verify` or a hand-made shard would."""
    index = json.loads((pack_dir / "index.json").read_text())
    shard = pack_dir / index["shards"][0]["name"]
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, data in members:
            if member.name == member_name:
                data = b"fLaC" + bytes(100)
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    index["shards"][0].update(bytes=shard.stat().st_size, sha256=hashlib.sha256(shard.read_bytes()).hexdigest())
    (pack_dir / "index.json").write_text(json.dumps(index))


def test_a_corrupt_member_is_named_or_skipped(shards, tiny_data, tmp_path):
    out, dataset = shards
    bad = tmp_path / "bad"
    pack(dataset.clips[:4], bad, dataset.label_set, progress=False)
    broken = dataset.clips[3].source.stem
    break_member(bad, f"{broken}.flac")
    with pytest.raises(ShardError, match=rf"shard-000000.tar: member {broken}.flac/.json cannot be used"):
        list(ShardDataset(bad, shuffle=False))
    assert len(list(ShardDataset(bad, shuffle=False, skip_corrupt=True))) == 3
    # the same in training: one clear error, or (--skip-corrupt) the other clips train and the
    # epoch's record says how many were missed, also when DataLoader workers did the skipping
    with pytest.raises(ShardError, match=f"{broken}.flac"):
        training.train(tiny_config(tiny_data, tmp_path / "strict", train_data=f"shards:{bad}", epochs=1), progress=False)
    for workers in (0, 1):
        run = training.train(tiny_config(tiny_data, tmp_path / f"lenient{workers}", train_data=f"shards:{bad}",
                                         epochs=1, skip_corrupt=True, workers=workers), progress=False)
        state = Checkpoint.load(run / "epoch_001.pt")
        assert state.coverage == {"clips": 3, "distinct": 3, "missed": 1}
        assert state.history[0]["train_clips_per_s"] > 0


def test_pack_refuses_an_undecodable_clip_and_keeps_the_old_pack(shards, tmp_path):
    out, dataset = shards
    target = tmp_path / "pack"
    pack(dataset.clips[:3], target, dataset.label_set, progress=False)
    before = (target / "index.json").read_text()
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"fLaC" + bytes(100))  # was stored unchecked, and verify then said all good
    with pytest.raises(AudioError, match="broken.flac: cannot decode"):
        pack([*dataset.clips[3:6], Clip(broken, ("Dog",))], target, dataset.label_set, progress=False)
    assert (target / "index.json").read_text() == before and verify(target, progress=False).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.flac", "pack"]  # no staging left


def test_pack_that_fails_on_a_full_disk_keeps_the_old_pack(shards, tmp_path, monkeypatch):
    out, dataset = shards
    target = tmp_path / "pack"
    pack(dataset.clips[:3], target, dataset.label_set, progress=False)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    real_add = tarfile.TarFile.addfile
    calls = []

    def full_disk(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "addfile", full_disk)
    with pytest.raises(ShardError, match="pack: packing failed, the folder is unchanged .No space left"):
        pack(dataset.clips[3:9], target, dataset.label_set, progress=False)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert verify(target, progress=False).ok


def test_pack_killed_midway_keeps_the_old_pack(shards, tmp_path):
    out, dataset = shards
    target = tmp_path / "pack"
    pack(dataset.clips[:3], target, dataset.label_set, progress=False)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    # a slow pack into the same folder, killed while it writes (SIGKILL: no cleanup runs)
    script = f"""
import time, numpy as np
from audioscene.data.folder import Clip
from audioscene.data.store import pack
from audioscene.labels import LabelSet
def clips():
    for i in range(1000):
        time.sleep(0.05)
        yield Clip(np.zeros(16000, np.float32), ())
pack(clips(), {str(target)!r}, LabelSet(("Dog",)), shard_bytes=2000, progress=False)
"""
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".pack.*.staging/shard-000001.tar")) and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert list(tmp_path.glob(".pack.*.staging"))  # it was killed midway
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before and verify(target, progress=False).ok
    pack(dataset.clips[:2], target, dataset.label_set, progress=False)  # the next pack cleans up
    assert not list(tmp_path.glob(".pack.*")) and json.loads((target / "index.json").read_text())["n_clips"] == 2


def test_pack_refuses_a_folder_of_other_files(shards, tmp_path):
    out, dataset = shards
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ShardError, match="not empty and not a shard folder"):
        pack(dataset.clips[:1], tmp_path, dataset.label_set, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")  # 3 workers on 2 cores
def test_ranks_times_workers_cover_every_clip_once(shards):
    out, _ = shards
    seen = []
    for rank in range(2):
        stream = ShardDataset(out, rank=rank, world_size=2, seed=5)
        stream.set_epoch(3)
        keys = [key for _, _, key in DataLoader(stream, batch_size=None, num_workers=3)]
        assert len(keys) == stream.shares()[rank]  # this rank's share
        seen += keys
    assert len(seen) == 64 and len(set(seen)) == 64 == stream.n_clips_total and sum(stream.shares()) == 64
    first, second = ShardDataset(out, seed=5), ShardDataset(out, seed=5)
    second.set_epoch(1)
    assert first.shard_order() != second.shard_order()  # a new order every epoch


def test_balanced_sampler_draws_classes_uniformly():
    rng = np.random.default_rng(0)
    sizes = [2000, 300, 40, 5, 1]  # a skewed, AudioSet-like label set
    targets = np.zeros((sum(sizes), len(sizes) + 1), np.float32)
    targets[np.arange(len(targets)), np.repeat(np.arange(len(sizes)), sizes)] = 1
    targets[rng.choice(len(targets), 50), -1] = 1  # a sixth label riding along on random clips
    sampler = BalancedSampler(targets[:, :-1], n_samples=5000, seed=1)
    draws = np.array(list(sampler))
    counts = targets[draws, :-1].sum(axis=0)
    # tolerance: every class within 1% of 5000/5 = 1000 draws (by construction within 1 per round)
    np.testing.assert_allclose(counts, 1000, rtol=0.01)
    assert len(set(draws[np.flatnonzero(targets[draws, 4])])) == 1  # the 1-clip class repeats its clip
    sampler.set_epoch(1)
    assert list(sampler) != draws.tolist()
    with pytest.raises(ValueError, match="no clip"):
        BalancedSampler(np.zeros((3, 2)))


def own_folder(tiny_data, tmp_path):
    """The tiny clips as 'own data': two new classes, labels as names or mids, ;-separated."""
    clips = ClipDataset.from_folder(tiny_data / "train")
    lines = ["filename,labels"]
    for clip in clips.clips:
        barks = "Dog" in clip.labels or "Cat" in clip.labels
        lines.append(f'{clip.source.name},"{"Animal;/m/0bt9lr" if barks else "Domestic sounds, home sounds"}"')
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    return tiny_data / "train" / "audio", tmp_path / "labels.csv"


def test_own_folder_labels_by_name_or_mid(tiny_data, tmp_path):
    audio_dir, labels_csv = own_folder(tiny_data, tmp_path)
    dataset = ClipDataset.from_labels_csv(audio_dir, labels_csv)
    assert dataset.label_set.names == ("Animal", "Dog", "Domestic sounds, home sounds")  # /m/0bt9lr is Dog
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,labels\nsynth_000000.flac,/m/nonexistent\n")
    with pytest.raises(DataSetError, match="bad.csv:2: unknown label mid"):
        ClipDataset.from_labels_csv(audio_dir, bad)
    spec = DataSpec.parse(f"folder:{audio_dir}", labels_csv).open()
    assert spec.label_set == dataset.label_set and len(spec) == 64


def test_fine_tuning_keeps_the_trunk_and_makes_a_new_head(tiny_run, tiny_data, tmp_path):
    audio_dir, labels_csv = own_folder(tiny_data, tmp_path)
    init = tiny_run / "epoch_002.pt"
    config = tiny_config(tiny_data, tmp_path / "ft", train_data=f"folder:{audio_dir}", eval_data=f"folder:{audio_dir}",
                         labels_csv=str(labels_csv), eval_labels_csv=str(labels_csv), init=str(init), epochs=1,
                         lr=1e-12, seed=1)
    run = training.train(config, progress=False)
    state = Checkpoint.load(run / "epoch_001.pt")
    before = Checkpoint.load(init).model
    assert state.labels == ["Animal", "Dog", "Domestic sounds, home sounds"]
    assert state.model["head.classifier.weight"].shape[0] == 3
    conv = "trunk.stem.0.weight" if "trunk.stem.0.weight" in before else next(k for k in before if k.startswith("trunk."))
    torch.testing.assert_close(state.model[conv], before[conv], atol=1e-6, rtol=0)  # lr 1e-12: still the init
    result = run_cli("train", "--data", f"folder:{audio_dir}", "--labels", str(labels_csv), "--eval-data",
                     f"folder:{audio_dir}", "--eval-labels", str(labels_csv), "--init", str(init), "--model-arg", "width=16",
                     "--model", "resnet_b_att", "--out", str(tmp_path / "wrong"))
    assert_one_line_error(result, "epoch_002.pt", "width 8", "width 16")


def test_each_folder_spec_has_its_own_labels(tiny_run, tiny_data, tmp_path):
    """The CLI help's fine-tuning example: own training clips and own eval clips, each folder with
    its labels.csv (new labels: Vacuum_cleaner and Other). One --labels used to label both."""
    train_dir, eval_dir = tmp_path / "my_clips", tmp_path / "my_eval"
    for folder, split, count in ((train_dir, "train", 32), (eval_dir, "eval", 12)):
        folder.mkdir()
        lines = ["filename,labels"]
        for clip in ClipDataset.from_folder(tiny_data / split).clips[:count]:
            name = f"{split}_{clip.source.name}"  # the two folders share no file name
            shutil.copy(clip.source, folder / name)
            lines.append(f"{name},{'Vacuum_cleaner' if 'Vacuum_cleaner' in clip.labels else 'Other'}")
        (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    # the model and width come from the --init checkpoint when they are not given
    result = run_cli("train", "--data", f"folder:{train_dir}", "--labels", str(train_dir / "labels.csv"),
                     "--eval-data", f"folder:{eval_dir}", "--init", str(tiny_run / "epoch_002.pt"), "--epochs", "1",
                     "--batch-size", "16", "--out", str(tmp_path / "mine"))
    assert result.returncode == 0, result.stderr
    state = Checkpoint.load(tmp_path / "mine" / "epoch_001.pt")
    assert state.labels == ["Other", "Vacuum_cleaner"] and state.model_config["width"] == 8
    # evaluate takes the data's own labels too
    per_class = tmp_path / "out" / "pc.csv"
    result = run_cli("evaluate", "--run", str(tmp_path / "mine"), "--data", f"folder:{eval_dir}",
                     "--per-class", str(per_class))
    assert result.returncode == 0, result.stderr
    assert "12 clips" in result.stdout and "chosen by mAP on folder:" in result.stdout and per_class.is_file()
    (eval_dir / "other.csv").write_text("filename,labels\neval_synth_000000.flac,Speech\n")
    result = run_cli("evaluate", "--run", str(tmp_path / "mine"), "--data", f"folder:{eval_dir}",
                     "--labels", str(eval_dir / "other.csv"))
    assert_one_line_error(result, "other.csv:2", "Speech")


def test_training_streams_shards_and_balances_classes(shards, tiny_data, tmp_path):
    out, _ = shards
    run = training.train(tiny_config(tiny_data, tmp_path / "sh", train_data=f"shards:{out}", epochs=1), progress=False)
    assert Checkpoint.load(run / "epoch_001.pt").history[0]["train_loss"] > 0
    run = training.train(tiny_config(tiny_data, tmp_path / "bal", sampler="balanced", epochs=1), progress=False)
    assert list_epochs(run)
    with pytest.raises(training.ConfigError, match="map-style"):
        training.train(tiny_config(tiny_data, tmp_path / "x", eval_data=f"shards:{out}"), progress=False)


def dcase_layout(tiny_data, root):
    """A miniature DCASE 2018 task 4 `dataset/` folder made of synthetic clips."""
    eval_dir = tiny_data / "eval"
    for split in ("audio/train/weak", "audio/test", "metadata/train", "metadata/test"):
        (root / split).mkdir(parents=True)
    names = sorted(p.name for p in (eval_dir / "audio").glob("*.flac"))[:6]
    for name in names:
        for split in ("audio/train/weak", "audio/test"):
            sf.write(root / split / name.replace(".flac", ".wav"), load(eval_dir / "audio" / name), 16000)
    weak = ClipDataset.from_folder(eval_dir)
    labels = {c.source.name: c.labels for c in weak.clips}
    rows = ["filename\tevent_labels"] + [f"{n.replace('.flac', '.wav')}\t{','.join(labels[n])}" for n in names]
    (root / "metadata/train/weak.csv").write_text("\n".join(rows) + "\n")
    strong = (eval_dir / "strong.tsv").read_text().splitlines()
    keep = [line.replace(".flac", ".wav") for line in strong[1:] if line.split("\t")[0] in names]
    (root / "metadata/test/test.csv").write_text("\n".join([strong[0], *keep, "no_events.wav\t\t\t"]) + "\n")
    return names, labels


def test_dcase2018_layout(tiny_data, tmp_path):
    root = tmp_path / "dataset"
    names, labels = dcase_layout(tiny_data, root)
    weak = dcase2018.dataset(root, "train_weak")
    assert weak.label_set == dcase_labels() and len(weak) == 6
    assert [c.labels for c in weak.clips] == [labels[n] for n in names]
    test = DataSpec.parse(f"dcase2018:{root}:test").open()
    assert len(test) == 6 and {c.source.name for c in test.clips} == {n.replace(".flac", ".wav") for n in names}
    events = dcase2018.events(root, "test")
    assert events and all(e.filename.endswith(".wav") for e in events)
    for clip in test.clips:  # weak labels of test clips = the classes of their events
        assert set(clip.labels) == {e.label for e in events if e.filename == clip.source.name}
    with pytest.raises(DataSetError, match="eval.*missing"):
        dcase2018.dataset(root, "eval")
    ref = root / "metadata/test/test.csv"
    result = run_cli("sed-eval", "--ref", str(ref), "--est", str(ref))
    assert result.returncode == 0 and "macro F1 100.00 %" in result.stdout


@pytest.mark.parametrize("line, problem", [
    ('"synth_000000.wav\tDog', "weak.csv:3: a quote opened on this line is not closed"),
    ("synth_000000.wav", "weak.csv:3: expected 'filename<TAB>labels'"),
    ("synth_000000.wav\tDog\tCat", "weak.csv:3: expected 'filename<TAB>labels'"),
    ("synth_\x00.wav\tDog", "weak.csv:3: contains a NUL byte"),
])
def test_the_dcase_weak_csv_is_read_as_strictly_as_every_data_file(tiny_data, tmp_path, line, problem):
    root = tmp_path / "dataset"
    dcase_layout(tiny_data, root)
    weak = root / "metadata/train/weak.csv"
    rows = weak.read_text().splitlines()
    weak.write_text("\n".join([*rows[:2], line, *rows[3:]]) + "\n")
    with pytest.raises(DataSetError, match=problem):
        dcase2018.dataset(root, "train_weak")


def test_pack_cli_and_label_errors(tiny_data, tmp_path):
    result = run_cli("pack", "--data", str(tiny_data / "eval"), "--out", str(tmp_path / "s"), "--shard-mb", "1")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "s" / "index.json").read_text())["n_clips"] == 24
    with pytest.raises(ValueError, match="unknown label"):
        labelled = [c for c in ClipDataset.from_folder(tiny_data / "eval").clips if c.labels]
        pack(labelled[:1], tmp_path / "t", LabelSet(("Nothing",)), progress=False)
    assert not (tmp_path / "t" / "index.json").exists()
