"""Hostile and careless input: shard sets, data files, outputs, arguments and file names that
must give one clear error (naming the file and the problem) and never run a command, escape a
folder or destroy data."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import assert_one_line_error, run_cli, sine, tiny_config

from audioscene import train as training
from audioscene.checkpoints import Checkpoint, CheckpointError
from audioscene.data import DataSpec
from audioscene.data.folder import ClipDataset, DataSetError
from audioscene.data.store import ShardDataset, ShardError, pack, verify
from audioscene.errors import InputError
from audioscene.evaluate import evaluate_run
from audioscene.events import Event, EventFileError, read_events_tsv, write_events_tsv
from audioscene.infer import Tagger
from audioscene.sed import Tuning


@pytest.fixture(scope="module")
def small_pack(tiny_data, tmp_path_factory):
    dataset = ClipDataset.from_folder(tiny_data / "train")
    out = tmp_path_factory.mktemp("pack")
    pack(dataset.clips[:8], out, dataset.label_set, shard_bytes=100_000, progress=False)
    return out


def edited_pack(small_pack, tmp_path, edit):
    copy = tmp_path / "pack"
    shutil.copytree(small_pack, copy)
    index = json.loads((copy / "index.json").read_text())
    (copy / "index.json").write_text(json.dumps(edit(index)))
    return copy


# --- shard sets are untrusted -------------------------------------------------------------------

def test_a_shard_name_cannot_run_a_command(small_pack, tiny_data, tmp_path):
    """`pipe:...` names made webdataset run a shell command (and training went on, exit 0)."""
    marker = tmp_path / "PWNED"

    def evil(index):
        index["shards"][0]["name"] = f"pipe:touch {marker}; cat shard-000000.tar"
        return index

    evil_pack = edited_pack(small_pack, tmp_path, evil)
    with pytest.raises(ShardError, match=r"index.json: shard record 0: name 'pipe:touch .* is not a plain .tar"):
        ShardDataset(evil_pack)
    result = run_cli("train", "--data", f"shards:{evil_pack}", "--eval-data", str(tiny_data / "eval"),
                     "--out", str(tmp_path / "run"), "--model-arg", "width=8", "--epochs", "1")
    assert_one_line_error(result, "index.json", "not a plain .tar file name")
    assert_one_line_error(run_cli("verify", str(evil_pack)), "index.json", "not a plain .tar file name")
    assert not marker.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("edit, fragment", [
    (lambda index: [index], "not an audioscene shard index (format 'list')"),
    (lambda index: {k: v for k, v in index.items() if k != "shards"}, "'shards' must be a list"),
    (lambda index: {**index, "shards": [{**index["shards"][0], "name": 7}]}, "name 7 is not a plain"),
    (lambda index: {**index, "shards": [{**index["shards"][0], "name": "../../etc/x.tar"}]}, "is not a plain"),
    (lambda index: {**index, "shards": [{**index["shards"][0], "name": "/abs/shard.tar"}]}, "is not a plain"),
    (lambda index: {**index, "shards": [{**index["shards"][0], "name": "http://h/s.tar"}]}, "is not a plain"),
    (lambda index: {**index, "shards": ["shard-000000.tar"]}, "shard record 0 is not an object"),
    (lambda index: {**index, "shards": [{**index["shards"][0], "n_clips": "8"}]}, "'n_clips' must be int"),
    (lambda index: {**index, "labels": "Dog"}, "'labels' must be a list"),
])
def test_a_malformed_index_is_one_error_naming_it(small_pack, tmp_path, edit, fragment):
    bad = edited_pack(small_pack, tmp_path, edit)
    with pytest.raises(ShardError, match="index.json") as info:
        verify(bad, progress=False)
    assert fragment in str(info.value)
    assert_one_line_error(run_cli("verify", str(bad)), "index.json", fragment)


def test_shards_are_read_as_local_tar_files(small_pack):
    keys = [key for _, _, key in ShardDataset(small_pack, shuffle=False)]
    assert len(keys) == 8 == len(set(keys))
    assert "webdataset" not in sys.modules


# --- data files -----------------------------------------------------------------------------------

def weak_folder(tiny_data, tmp_path, rows: list[str], encoding_bytes: bytes | None = None):
    folder = tmp_path / "set"
    (folder / "audio").mkdir(parents=True)
    source = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[0]
    shutil.copy(source, folder / "audio" / "a.flac")
    (folder / "audio" / "sub").mkdir()
    shutil.copy(source, folder / "audio" / "sub" / "b.flac")
    text = "\n".join(["filename,labels", *rows]) + "\n"
    (folder / "weak.csv").write_bytes(encoding_bytes if encoding_bytes is not None else text.encode())
    return folder


@pytest.mark.parametrize("row, fragment", [
    ("/etc/passwd,Dog", "weak.csv:2: file name '/etc/passwd' must be a relative path inside"),
    ("../../outside.flac,Dog", "weak.csv:2: file name '../../outside.flac' must be a relative path"),
    ("sub/../../a.flac,Dog", "must be a relative path"),
    ('a.flac,"Cattle, bovinae,Sheep"', "label 'Cattle, bovinae,Sheep' contains a comma; labels are separated by ';'"),
    ('a.flac,"Dog', "weak.csv:2: a quote opened on this line is not closed"),
])
def test_weak_csv_rows_that_are_refused(tiny_data, tmp_path, row, fragment):
    folder = weak_folder(tiny_data, tmp_path, [row, "sub/b.flac,Dog"])
    with pytest.raises(DataSetError) as info:
        ClipDataset.from_folder(folder)
    assert fragment in str(info.value)


def test_weak_csv_that_is_fine(tiny_data, tmp_path):
    folder = weak_folder(tiny_data, tmp_path, ['a.flac,"Cattle, bovinae;Sheep"', "sub/b.flac,Dog;Cat"])
    dataset = ClipDataset.from_folder(folder)  # AudioSet names with commas, subfolders: fine
    assert [c.labels for c in dataset.clips] == [("Cattle, bovinae", "Sheep"), ("Dog", "Cat")]
    with pytest.raises(DataSetError, match="weak.csv:3: unknown label 'Cat'"):
        ClipDataset.from_folder(folder, label_set=type(dataset.label_set)(("Cattle, bovinae", "Sheep", "Dog")))


@pytest.mark.parametrize("data, fragment", [
    (b"filename,labels\na.flac,Dog\nb\xe9.flac,Dog\n", "weak.csv:3: not UTF-8 text (byte 0xe9)"),
    (b"filename,labels\na.flac,Do\x00g\n", "weak.csv:2: contains a NUL byte"),
])
def test_weak_csv_encoding_and_nul_bytes(tiny_data, tmp_path, data, fragment):
    folder = weak_folder(tiny_data, tmp_path, [], encoding_bytes=data)
    with pytest.raises(DataSetError) as info:
        ClipDataset.from_folder(folder)
    assert fragment in str(info.value)


def test_strong_tsv_encoding_is_named(tmp_path):
    path = tmp_path / "strong.tsv"
    path.write_bytes(b"filename\tonset\toffset\tevent_label\na.wav\t0.0\t1.0\tDog\nb.wav\t0.0\t1.0\tCaf\xe9\n")
    with pytest.raises(EventFileError, match=r"strong.tsv:3: not UTF-8 text \(byte 0xe9\)"):
        read_events_tsv(path)


def test_own_labels_csv_names_are_checked_too(tiny_data, tmp_path):
    folder = weak_folder(tiny_data, tmp_path, ["a.flac,Dog"])
    (folder / "labels.csv").write_text("filename,labels\n../weak.csv,Dog\n")
    with pytest.raises(DataSetError, match="labels.csv:2: file name '../weak.csv' must be a relative path"):
        DataSpec.parse(f"folder:{folder / 'audio'}", folder / "labels.csv").open()


def test_resume_refuses_shards_with_another_label_set(small_pack, tiny_data, tmp_path):
    run = training.train(tiny_config(tiny_data, tmp_path / "run", train_data=f"shards:{small_pack}", epochs=1),
                         progress=False)
    relabelled = edited_pack(small_pack, tmp_path, lambda index: {**index, "labels": [*index["labels"][:-1], "Owl"]})
    shutil.rmtree(small_pack.parent / "moved", ignore_errors=True)
    state = Checkpoint.load(run / "epoch_001.pt")
    state.train_config["train_data"] = f"shards:{relabelled}"
    state.save(run / "epoch_001.pt")
    with pytest.raises(ShardError, match="index.json: its label set differs from the run's"):
        training.resume(run, epochs=2, progress=False)


# --- outputs --------------------------------------------------------------------------------------

def test_outputs_never_replace_inputs_audio_or_checkpoints(tiny_run, tiny_data, tmp_path):
    clip = tmp_path / "x.wav"
    sf.write(clip, sine(440, 2.0, 16000), 16000)
    before = clip.read_bytes()
    assert_one_line_error(run_cli("detect", str(clip), "--run", str(tiny_run), "-o", str(clip)),
                          "x.wav: refusing to write output over an audio file")
    assert_one_line_error(run_cli("detect", str(clip), "--run", str(tiny_run), "-o", str(tmp_path / "y.flac")),
                          "refusing to write output over an audio file")
    assert clip.read_bytes() == before and not (tmp_path / "y.flac").exists()
    checkpoint = tiny_run / "epoch_001.pt"
    digest = checkpoint.read_bytes()
    assert_one_line_error(run_cli("evaluate", "--run", str(tiny_run), "--data", str(tiny_data / "eval"),
                                  "--per-class", str(checkpoint)), "epoch_001.pt: refusing to write output over")
    assert checkpoint.read_bytes() == digest
    ref = tiny_data / "eval" / "strong.tsv"
    assert_one_line_error(run_cli("sed-tune", "--run", str(tiny_run), "--audio", str(tmp_path), "--ref", str(ref),
                                  "-o", str(ref)), "strong.tsv: is also an input")


def test_an_output_folder_that_does_not_exist_is_created_before_the_work(tiny_run, tiny_data, tmp_path):
    result = run_cli("evaluate", "--run", str(tiny_run), "--data", str(tiny_data / "eval"),
                     "--per-class", str(tmp_path / "no" / "such" / "pc.csv"))
    assert result.returncode == 0, result.stderr and (tmp_path / "no" / "such" / "pc.csv").is_file()
    (tmp_path / "file").write_text("")
    assert_one_line_error(run_cli("sed-tune", "--run", str(tiny_run), "--audio", str(tiny_data / "eval" / "audio"),
                                  "--ref", str(tiny_data / "eval" / "strong.tsv"), "-o",
                                  str(tmp_path / "file" / "t.json")), "t.json: cannot create its folder")


# --- arguments ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["tag", "x.wav", "--run", "r", "--hop-s", "0"], "--hop-s: expected a finite number > 0, got '0'"),
    (["tag", "x.wav", "--run", "r", "--hop-s", "-5"], "--hop-s: expected a finite number > 0"),
    (["tag", "x.wav", "--run", "r", "--hop-s", "nan"], "--hop-s: expected a finite number > 0, got 'nan'"),
    (["tag", "x.wav", "--run", "r", "--top-k", "-1"], "--top-k: expected an integer >= 1"),
    (["tag", "x.wav", "--run", "r", "--device", "cuda:abc"], "--device: device must be auto, cpu, cuda"),
    (["pack", "--data", "d", "--out", "o", "--shard-mb", "0"], "--shard-mb: expected a finite number > 0"),
    (["pack", "--data", "d", "--out", "o", "--shard-mb", "-1"], "--shard-mb: expected a finite number > 0"),
    (["sed-tune", "--run", "r", "--audio", "a", "--ref", "f", "-o", "t.json", "--grid=-1,2"],
     "--grid: expected a finite number >= 0 and <= 1"),
    (["sed-tune", "--run", "r", "--audio", "a", "--ref", "f", "-o", "t.json", "--kernels", "0,3"],
     "--kernels: expected an odd integer >= 1"),
    (["download", "--csv", "c", "--out", "o", "--retries", "-1"], "--retries: expected an integer >= 0"),
    (["view", "--run", "r", "--port", "99999"], "--port: expected an integer >= 1 and <= 65535"),
    (["view", "--run", "r", "--port", "-5"], "--port: expected an integer >= 1 and <= 65535"),
    (["detect", "x.wav", "--run", "r", "-o", "e.tsv", "--thresholds", "missing.json"],
     "--thresholds: missing.json: no such tuning file"),
    (["detect", "x.wav", "--run", "r", "-o", "e.tsv", "--thresholds", "1.5"], "--thresholds: expected a finite"),
    (["sed-eval", "--ref", "a", "--est", "b", "--collar", "0"], "--collar: expected a finite number > 0"),
])
def test_numeric_and_path_arguments_are_checked_at_the_boundary(args, fragment):
    assert_one_line_error(run_cli(*args), fragment)


def test_the_api_checks_the_same_arguments(tiny_run):
    for options, fragment in (({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
                              ({"hop_s": 0}, "hop_s must be a finite number > 0, got 0"),
                              ({"hop_s": float("nan")}, "hop_s must be a finite number > 0, got nan")):
        with pytest.raises(InputError, match=fragment):
            Tagger.from_run(tiny_run, checkpoint="last", device="cpu", **options)
    tagger = Tagger.from_run(tiny_run, checkpoint="last", device="cpu")
    with pytest.raises(InputError, match="top_k must be an integer >= 1, got -1"):
        tagger.tag(sine(440, 1.0, 16000), top_k=-1)
    with pytest.raises(training.ConfigError, match="device must be"):
        Tagger.from_run(tiny_run, checkpoint="last", device="tpu")


# --- file names and special files ------------------------------------------------------------------

def test_names_with_tabs_or_newlines_are_refused_not_mangled(tiny_run, tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, sine(440, 3.0, 16000), 16000)
    bad = tmp_path / "bad\tname\n.wav"
    shutil.copy(good, bad)
    result = run_cli("tag", str(tmp_path), "--run", str(tiny_run))
    assert result.returncode == 1 and "'bad\\tname\\n.wav': the file name contains a tab" in result.stderr
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("good.wav\t")  # one line per file
    out = tmp_path / "events.tsv"
    result = run_cli("detect", str(tmp_path), "--run", str(tiny_run), "--thresholds", "0", "-o", str(out))
    assert result.returncode == 1 and {e.filename for e in read_events_tsv(out)} == {"good.wav"}
    with pytest.raises(EventFileError, match="cannot store 'a\\\\tb.wav' in a TSV"):
        write_events_tsv(tmp_path / "e.tsv", [Event("a\tb.wav", 0.0, 1.0, "Dog")])
    events = [Event("a b,é.wav", 0.0, 1.0, "Dog")]  # everything the writer accepts reads back
    write_events_tsv(tmp_path / "e.tsv", events)
    assert read_events_tsv(tmp_path / "e.tsv") == events


def test_a_fifo_is_refused_instead_of_hanging(tiny_run, tmp_path):
    fifo = tmp_path / "x.wav"
    os.mkfifo(fifo)
    result = subprocess.run([sys.executable, "-m", "audioscene", "tag", str(fifo), "--run", str(tiny_run)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "x.wav: not a regular file" in result.stderr


def test_tuning_json_is_strict_json(tmp_path):
    tuning = Tuning(("Dog", "Cat"), (0.5, 0.3), (1, 3), (0.5, float("nan")), (0.4, float("nan")))
    tuning.save(tmp_path / "t.json")
    text = (tmp_path / "t.json").read_text()
    assert "NaN" not in text and json.loads(text)["classes"]["Cat"]["f1"] is None
    back = Tuning.load(tmp_path / "t.json")
    assert back.labels == tuning.labels and np.isnan(back.f1[1]) and back.f1[0] == 0.5


def test_select_data_picks_the_peak_epoch_on_another_split(tiny_run, tiny_data):
    own = evaluate_run(tiny_run, tiny_data / "eval", device="cpu", progress=False)
    on_train = evaluate_run(tiny_run, tiny_data / "train", device="cpu", progress=False)
    chosen = evaluate_run(tiny_run, tiny_data / "eval", device="cpu", progress=False,
                                   select_data=tiny_data / "train")
    assert own.selected_on == str(tiny_data / "eval") and chosen.selected_on == str(tiny_data / "train")
    assert chosen.peak_epoch == on_train.peak_epoch
    # scored on the reported split: the same weights on the same batches in this process, so exact
    assert chosen.peak["mAP"] == own.epochs[chosen.peak_epoch]["mAP"]


def test_evaluation_is_float32_unless_asked(tiny_run, tiny_data, monkeypatch):
    seen = []
    real = torch.autocast

    def spy(*args, **kwargs):
        seen.append(kwargs.get("dtype"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    evaluate_run(tiny_run, tiny_data / "eval", device="cpu", progress=False)
    assert seen == []
    bf16 = evaluate_run(tiny_run, tiny_data / "eval", device="cpu", progress=False, amp=True)
    assert seen and set(seen) == {torch.bfloat16} and 0 < bf16.avg["mAP"] <= 1


@pytest.mark.parametrize("args, fragment", [
    (["train", "--data", "x", "--eval-data", "y", "--spec-time-masks", "1000000"], "expected an integer >= 0 and <= 100"),
    (["sed-tune", "--run", "r", "--audio", "a", "--ref", "t.tsv", "-o", "o.json", "--upsample", "100000"],
     "expected an integer >= 1 and <= 32"),
    (["detect", "a.wav", "--run", "r", "-o", "e.tsv", "--upsample", "33"], "expected an integer >= 1 and <= 32"),
    (["report", "--runs", "r", "--eval-data", "e", "-o", "o", "--bootstrap", "10000000"],
     "expected an integer >= 100 and <= 100000"),
    (["report", "--runs", "r", "--eval-data", "e", "-o", "o", "--bootstrap", "1"], "expected an integer >= 100"),
    (["detect", "a.wav", "--run", "r", "-o", "e.tsv", "--median", "4"], "expected an odd integer >= 1"),
    (["detect", "a.wav", "--run", "r", "-o", "e.tsv", "--median", "3,4"], "expected an odd integer"),
    (["sed-tune", "--run", "r", "--audio", "a", "--ref", "t.tsv", "-o", "o.json", "--kernels", "1,2"], "an odd integer"),
    (["sed-tune", "--run", "r", "--audio", "a", "--ref", "t.tsv", "-o", "o.json", "--grid", "tuned.json"],
     "expected a finite number >= 0 and <= 1, numbers like that separated by commas; got 'tuned.json'"),
])
def test_sizes_without_bounds_and_values_that_cannot_work_are_refused_at_the_flag(args, fragment):
    assert_one_line_error(run_cli(*args), fragment)


def test_library_bounds_match_the_flags():
    from audioscene.metrics.bootstrap import confidence_intervals
    from audioscene.sed import upsample

    with pytest.raises(InputError, match="n_resamples must be an integer >= 100"):
        confidence_intervals(np.eye(4), np.eye(4), n_resamples=1)
    with pytest.raises(InputError, match="upsample factor must be an integer >= 1 and <= 32"):
        upsample(np.zeros((10, 2)), 100000)


def test_synthetic_embeddings_of_a_split_with_audioset_labels_or_unknown_ones(tmp_path):
    from audioscene.data.embeddings import write_synthetic
    from audioscene.data.synthetic import generate

    split = generate(tmp_path / "s", n_clips=2, seed=3, progress=False)
    rows = (split / "weak.csv").read_text().splitlines()
    (split / "weak.csv").write_text("\n".join([rows[0], rows[1].split(",")[0] + ",Music", rows[2]]) + "\n")
    assert len(write_synthetic(split, tmp_path / "e", progress=False)) >= 1  # an AudioSet name maps to itself
    (split / "weak.csv").write_text("\n".join([rows[0], rows[1].split(",")[0] + ",Tuba solo", rows[2]]) + "\n")
    with pytest.raises(InputError, match="label 'Tuba solo' is neither a DCASE 2018 class nor an AudioSet label"):
        write_synthetic(split, tmp_path / "e2", progress=False)


def test_a_foreign_checkpoint_in_a_run_folder_is_refused_by_every_reader(tiny_run, tiny_data, tmp_path):
    from audioscene.distill import predict_to_file
    from audioscene.infer import Tagger

    run = training.train(tiny_config(tiny_data, tmp_path / "own", epochs=1, seed=11), progress=False)
    shutil.copy(tiny_run / "epoch_002.pt", run / "epoch_002.pt")  # another run's checkpoint, now the "last"
    message = "belongs to another run than"
    for read in (lambda: Tagger.from_run(run, "avg"), lambda: Tagger.from_run(run, "best"),
                 lambda: predict_to_file([run], str(tiny_data / "eval"), tmp_path / "t.npz", "last", progress=False)):
        with pytest.raises(CheckpointError, match=message):
            read()
    assert_one_line_error(run_cli("evaluate", "--run", str(run), "--data", str(tiny_data / "eval")), message)
    assert_one_line_error(run_cli("export-onnx", "--run", str(run), "-o", str(tmp_path / "m.onnx")), message)


def test_a_model_given_the_wrong_kind_of_data_says_which_it_needs(tiny_run, tiny_data, tmp_path):
    assert_one_line_error(run_cli("train", "--data", "embeddings:emb/train", "--eval-data", "embeddings:emb/eval",
                                  "--out", str(tmp_path / "r")),
                          "embeddings:emb/train: holds AudioSet's released embeddings, but resnet_b_att takes audio")
    assert_one_line_error(run_cli("train", "--data", str(tiny_data / "train"), "--eval-data", str(tiny_data / "eval"),
                                  "--model", "yu_multilevel_att", "--out", str(tmp_path / "r")),
                          "holds audio, but yu_multilevel_att takes AudioSet's released embeddings")
    assert_one_line_error(run_cli("evaluate", "--run", str(tiny_run), "--data", "embeddings:emb"),
                          "embeddings:emb: holds AudioSet's released embeddings, but resnet_b_att takes audio")
