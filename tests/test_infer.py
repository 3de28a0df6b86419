"""Inference on files and long recordings with a tiny trained run; the SED command line."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import assert_one_line_error, run_cli

from audioscene.audio import AudioError, load, stream
from audioscene.checkpoints import Checkpoint, CheckpointError, Run
from audioscene.data.folder import ClipDataset
from audioscene.events import read_events_tsv
from audioscene.infer import Tagger, events_from_analysis, to_classes
from audioscene.labels import DCASE2018_AUDIOSET_NAMES, LabelSet
from audioscene.predictor import Predictor
from audioscene.sed import Tuning


@pytest.fixture(scope="module")
def tagger(tiny_run):
    return Tagger.from_run(tiny_run, checkpoint="last", device="cpu")


@pytest.fixture(scope="module")
def long_file(tiny_data, tmp_path_factory):
    """60 s: six synthetic clips end to end."""
    clips = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[:6]
    path = tmp_path_factory.mktemp("long") / "long.flac"
    sf.write(path, np.concatenate([load(p) for p in clips]), 16000, subtype="PCM_16")
    return path


def windowed_reference(tagger, wave):
    """One-shot inference: every window cut from the whole waveform in memory, run on its own."""
    model = tagger.models[0]
    window = tagger.window_frames * tagger.frame_samples
    frames = []
    with torch.no_grad():
        for start in range(0, len(wave), window):
            piece = torch.from_numpy(wave[start:start + window])
            out = model(tagger.frontend(piece[None]))["framewise"][0].numpy()
            frames.append(out[:int(np.ceil(len(piece) / tagger.frame_samples))])
    return np.concatenate(frames)


def test_stream_joins_to_load(long_file, write_audio):
    # the same decoder on the same samples, no resampling: exact
    np.testing.assert_array_equal(np.concatenate(list(stream(long_file, block_seconds=7.3))), load(long_file))
    stereo_44k = write_audio("s.wav", np.random.default_rng(0).uniform(-0.5, 0.5, (44100 * 3, 2)), sr=44100)
    np.testing.assert_allclose(np.concatenate(list(stream(stereo_44k, block_seconds=0.5))), load(stereo_44k),
                               atol=1e-6)


def test_long_file_streaming_equals_one_shot_windows(tagger, long_file):
    tagger.batch_size = 4
    times, labels, scores = tagger.framewise(long_file)
    reference = windowed_reference(tagger, load(long_file))
    assert scores.shape == reference.shape == (188, 10)  # ceil(60 s / 0.32 s)
    np.testing.assert_allclose(scores, reference, atol=1e-5)
    np.testing.assert_allclose(times[:3], [0.0, 0.32, 0.64])
    assert labels[0] == "Alarm_bell_ringing"


def test_overlapping_windows_average_onto_one_grid(tagger, long_file):
    wave = load(long_file)
    half = Tagger(tagger.models, tagger.frontend, tagger.labels, device="cpu", hop_s=5.12)
    assert (half.window_s, half.hop_s) == (pytest.approx(10.24), pytest.approx(5.12))
    scores = half.framewise(wave).scores
    # frame 40 (12.8 s) lies in the windows starting at 5.12 s (its frame 24) and 10.24 s (frame 8)
    model = tagger.models[0]
    with torch.no_grad():
        outs = [model(tagger.frontend(torch.from_numpy(wave[s:s + 163840])[None]))["framewise"][0].numpy()
                for s in (81920, 163840)]
    np.testing.assert_allclose(scores[40], (outs[0][24] + outs[1][8]) / 2, atol=1e-5)
    assert scores.shape == (188, 10)


def test_tag_of_a_clip_is_the_models_clip_output(tagger, tiny_data):
    path = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[0]
    tags = tagger.tag(path, top_k=3)
    assert len(tags) == 3 and tags[0][1] >= tags[1][1] >= tags[2][1]
    dataset = ClipDataset.from_folder(tiny_data / "eval", tagger.labels)
    expected = Predictor(tagger.models[:1], tagger.frontend, "cpu").predict(dataset, progress=False)
    index = [c.source for c in dataset.clips].index(path)
    clipwise = expected["clipwise"][index]
    assert tags[0] == (tagger.labels.names[int(clipwise.argmax())], pytest.approx(float(clipwise.max()), abs=1e-5))


def test_detect_follows_the_thresholds_and_tuning(tagger, tiny_data):
    path = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[1]
    assert tagger.detect(path, thresholds=1.0) == []
    everything = tagger.detect(path, thresholds=0.0)
    assert {e.label for e in everything} == set(tagger.labels.names)
    assert all(e.onset == 0.0 and e.offset == 10.0 and e.filename == path.name for e in everything)
    tuning = Tuning(tagger.labels.names, (1.0,) * 9 + (0.0,), (1,) * 10, (0.0,) * 10, (0.0,) * 10)
    assert [e.label for e in tagger.detect(path, thresholds=tuning, median=tuning)] == ["Vacuum_cleaner"]


def test_checkpoint_choice_and_errors(tiny_run, tmp_path):
    assert [p.name for p, _ in Run(tiny_run).average()] == ["epoch_001.pt", "epoch_002.pt"]
    history = Checkpoint.load(tiny_run / "epoch_002.pt").history
    best = max(history, key=lambda row: row["mAP"])["epoch"]
    assert [p for p, _ in Run(tiny_run).best()] == [tiny_run / f"epoch_{best:03d}.pt"]
    assert len(Tagger.from_run(tiny_run, "avg", device="cpu").models) == 2
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        Tagger.from_run(tiny_run, tmp_path / "junk.pt")


def test_bad_inputs_are_reported_per_file(tagger, tiny_data, tmp_path):
    (tmp_path / "broken.wav").write_bytes(b"RIFF....garbage")
    good = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[0]
    results = list(tagger.analyze_many([tmp_path / "broken.wav", good, tmp_path / "gone.wav"]))
    assert isinstance(results[0][1], AudioError) and "broken.wav" in str(results[0][1])
    assert results[1][1].framewise.shape == (32, 10)
    assert "no such file" in str(results[2][1])
    with pytest.raises(ValueError, match="NaN"):
        tagger.analyze(np.array([0.0, np.nan], dtype=np.float32))


def test_to_classes_maps_audioset_labels_to_dcase(tagger, tiny_data):
    result = tagger.analyze(sorted((tiny_data / "eval" / "audio").glob("*.flac"))[0])
    # a fake AudioSet-style model: relabel the 10 outputs with AudioSet names of different DCASE classes
    fake = ("Dog", "Cat", "Speech", "Male speech, man speaking", "Blender", "Frying (food)", "Alarm", "Bell",
            "Vacuum cleaner", "Dishes, pots, and pans")
    from dataclasses import replace

    groups = {name: DCASE2018_AUDIOSET_NAMES[name] for name in ("Speech", "Alarm_bell_ringing", "Dog")}
    mapped = to_classes(replace(result, labels=fake), groups)
    assert mapped.labels == ("Speech", "Alarm_bell_ringing", "Dog")
    speech = mapped.labels.index("Speech")
    np.testing.assert_array_equal(mapped.framewise[:, speech], result.framewise[:, 2:4].max(axis=1))  # a max: exact
    alarm = mapped.labels.index("Alarm_bell_ringing")
    np.testing.assert_array_equal(mapped.clipwise[alarm], result.clipwise[6:8].max())
    with pytest.raises(ValueError, match="'Electric_shaver_toothbrush': the model has none of its labels"):
        to_classes(replace(result, labels=fake), DCASE2018_AUDIOSET_NAMES)
    assert {e.label for e in events_from_analysis(mapped, "f", 0.0)} == set(groups)


def test_tagger_rejects_a_hop_longer_than_the_window(tagger):
    with pytest.raises(ValueError, match="longer than the window"):
        Tagger(tagger.models, tagger.frontend, LabelSet(tagger.labels.names), device="cpu", hop_s=30)


# --- command line ---------------------------------------------------------------------------------

def test_cli_detect_tune_eval_plot(tiny_run, tiny_data, tmp_path):
    eval_dir = tiny_data / "eval"
    tuned = tmp_path / "tuned.json"
    result = run_cli("sed-tune", "--run", str(tiny_run), "--audio", str(eval_dir / "audio"),
                     "--ref", str(eval_dir / "strong.tsv"), "-o", str(tuned), "--kernels", "1,3", "--grid", "0.3,0.6")
    assert result.returncode == 0, result.stderr
    classes = json.loads(tuned.read_text())["classes"]
    assert len(classes) == 10 and {c["median_kernel"] for c in classes.values()} <= {1, 3}
    assert "F1 % tuned" in result.stdout

    (tmp_path / "bad.flac").write_bytes(b"fLaC broken")
    events = tmp_path / "events.tsv"
    result = run_cli("detect", str(eval_dir / "audio"), str(tmp_path / "bad.flac"), "--run", str(tiny_run),
                     "--thresholds", str(tuned), "--median", str(tuned), "-o", str(events))
    assert result.returncode == 1  # the broken file is named and skipped, the others are detected
    skipped = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "bad.flac" in skipped[0] and "Traceback" not in result.stderr
    assert "in 24 files" in result.stdout
    assert {e.filename for e in read_events_tsv(events)} <= {p.name for p in (eval_dir / "audio").iterdir()}

    result = run_cli("sed-eval", "--ref", str(eval_dir / "strong.tsv"), "--est", str(events), "--collar", "0.4")
    assert result.returncode == 0, result.stderr
    assert "| Vacuum_cleaner" in result.stdout and "macro F1" in result.stdout

    figure = tmp_path / "fig.png"
    clip = sorted((eval_dir / "audio").glob("*.flac"))[0]
    result = run_cli("plot", str(clip), "--run", str(tiny_run), "--ref", str(eval_dir / "strong.tsv"),
                     "--thresholds", str(tuned), "-o", str(figure))
    assert result.returncode == 0, result.stderr
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_sed_errors_are_one_line(tiny_run, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("filename\tonset\toffset\tevent_label\na.wav\t1.0\t0.5\tDog\n")
    assert_one_line_error(run_cli("sed-eval", "--ref", str(bad), "--est", str(bad)), "bad.tsv:2", "after offset")
    assert_one_line_error(run_cli("detect", str(tmp_path), "--run", str(tiny_run), "-o", str(tmp_path / "e.tsv")),
                          "no audio files")
    assert_one_line_error(run_cli("detect", "x.wav", "--run", str(tmp_path), "-o", "e.tsv"), "no epoch_NNN.pt")
    assert_one_line_error(run_cli("detect", "x.wav", "--run", str(tiny_run), "-o", "e.tsv", "--median", "x"),
                          "--median")


# Peak RSS from /proc (VmHWM, kB): getrusage's ru_maxrss is inherited from the parent across exec.
MEMORY_PROBE = """
import re, sys
from audioscene.predictor import Predictor
from audioscene.infer import Tagger
peak = lambda: int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
tagger = Tagger.from_run(sys.argv[1], checkpoint="last", device="cpu", batch_size=4)
tagger.tag(sys.argv[3])  # warm-up: allocator and thread pools
before = peak()
scores = tagger.framewise(sys.argv[2]).scores
print(before, peak(), len(scores))
"""


def test_memory_stays_flat_in_the_recording_length(tiny_run, tiny_data, tmp_path):
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    peaks = {}
    for minutes in (1, 20):
        path = tmp_path / f"{minutes}min.wav"
        with sf.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as f:
            for _ in range(minutes):
                f.write((0.1 * rng.standard_normal(960_000)).astype(np.float32))
        clip = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[0]
        out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(tiny_run), str(path), str(clip)],
                             capture_output=True, text=True, timeout=300, check=True).stdout.split()
        before, peak, frames = map(int, out)
        assert frames == int(np.ceil(minutes * 60 / 0.32))
        peaks[minutes] = (peak, peak - before)  # kB
    assert peaks[20][0] < 2 * peaks[1][0]
    # stricter: decoding 20 min at once would add >= 77 MB (float32); streaming adds a few MB
    assert peaks[20][1] < peaks[1][1] + 48_000, peaks


def test_cli_tag_formats_and_a_bad_file(tiny_run, tiny_data, tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF nonsense")
    clips = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[:3]
    result = run_cli("tag", *map(str, clips), str(tmp_path / "bad.wav"), "--run", str(tiny_run),
                     "--format", "json", "--top-k", "3")
    assert result.returncode == 1
    skipped = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "bad.wav" in skipped[0] and "Traceback" not in result.stderr
    tags = json.loads(result.stdout)
    assert [t["file"] for t in tags] == [c.name for c in clips]
    assert all(len(t["tags"]) == 3 and t["tags"][0]["score"] >= t["tags"][2]["score"] for t in tags)

    result = run_cli("tag", str(tiny_data / "eval" / "audio"), "--run", str(tiny_run), "--format", "csv",
                     "--top-k", "2", "--workers", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "file,rank,label,score" and len(lines) == 1 + 2 * 24
    result = run_cli("tag", str(clips[0]), "--run", str(tiny_run))
    assert result.returncode == 0 and result.stdout.startswith(clips[0].name + "\t")


def test_workers_read_ahead_gives_the_same_results(tagger, tiny_data, tmp_path):
    (tmp_path / "bad.flac").write_bytes(b"fLaC")
    files = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[:5]
    files.insert(2, tmp_path / "bad.flac")
    serial = list(tagger.analyze_many(files))
    threaded = list(tagger.analyze_many(files, workers=2))
    assert [s for s, _ in threaded] == files
    for (_, a), (_, b) in zip(serial, threaded):
        if isinstance(a, Exception):
            assert type(a) is type(b) and str(a) == str(b)
        else:
            # exact: threads only decode; the model runs the same batches in this thread either way
            np.testing.assert_array_equal(a.framewise, b.framewise)


@pytest.mark.parametrize("with_frontend, precision", [(False, "float64"), (True, "float64"), (True, "float32")])
def test_onnx_export_parity(tiny_run, tiny_data, tmp_path, with_frontend, precision):
    from audioscene.export import ExportError, OnnxModel, export_onnx

    path = tmp_path / "model.onnx"
    parity = export_onnx(tiny_run, path, checkpoint="last", with_frontend=with_frontend, frontend_precision=precision)
    assert parity.ok and max(parity.clipwise, parity.framewise) <= 1e-4
    # the exported front end against LogMel: float64 is exact, float32 deviates (measured ~1e-4..1e-3)
    if not with_frontend:
        assert parity.frontend == 0.0
    elif precision == "float64":
        assert parity.frontend < 1e-5
    else:
        assert 1e-6 < parity.frontend < 1e-2
    if precision == "float32":
        return
    model = OnnxModel(path)
    assert model.takes_waveform == with_frontend and model.labels.names[0] == "Alarm_bell_ringing"
    torch_tagger = Tagger.from_run(tiny_run, checkpoint="last", device="cpu")
    onnx_tagger = Tagger.from_onnx(path)
    clip = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[0]
    a, b = torch_tagger.analyze(clip), onnx_tagger.analyze(clip)
    np.testing.assert_allclose(b.framewise, a.framewise, atol=1e-4)
    np.testing.assert_allclose(b.clipwise, a.clipwise, atol=1e-4)
    # a time axis the export never saw (37 s: windows of 10.24 s and a short last one)
    wave = np.concatenate([load(c) for c in sorted((tiny_data / "eval" / "audio").glob("*.flac"))[:4]])[:37 * 16000]
    np.testing.assert_allclose(onnx_tagger.framewise(wave).scores, torch_tagger.framewise(wave).scores, atol=1e-4)
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ExportError, match="junk.onnx"):
        OnnxModel(tmp_path / "junk.onnx")
    # an ONNX file whose audioscene metadata lacks a key, or has none at all
    import onnx

    proto = onnx.load(str(path))
    entry = proto.metadata_props[0]
    entry.value = json.dumps({k: v for k, v in json.loads(entry.value).items() if k != "frame_hop"})
    onnx.save(proto, str(tmp_path / "partial.onnx"))
    with pytest.raises(ExportError, match="partial.onnx: incomplete audioscene metadata .*frame_hop"):
        OnnxModel(tmp_path / "partial.onnx")
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(ExportError, match="bare.onnx: not exported by audioscene"):
        OnnxModel(tmp_path / "bare.onnx")


def test_avg_over_checkpoints_with_other_labels_is_refused(tiny_run, tmp_path):
    import shutil as sh

    run = tmp_path / "mixed"
    run.mkdir()
    sh.copy(tiny_run / "epoch_001.pt", run / "epoch_001.pt")
    state = Checkpoint.load(tiny_run / "epoch_002.pt")
    state.labels = [f"other_{k}" for k in range(10)]
    state.save(run / "epoch_002.pt")
    with pytest.raises(CheckpointError, match="epoch_002.pt: its label set differs"):
        Tagger.from_run(run, checkpoint="avg", device="cpu")


def test_one_predictor_averages_models_and_keeps_float32_unless_asked(tiny_run):
    """The same Predictor serves evaluation and Tagger: "avg" is the mean of the models' outputs."""
    models = Tagger.from_run(tiny_run, "avg", device="cpu").models
    frontend = Tagger.from_run(tiny_run, "last", device="cpu").frontend
    waves = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 32000)).astype(np.float32) * 0.1)
    both = Predictor(models, frontend, "cpu")(waves)
    each = [Predictor([m], frontend, "cpu")(waves) for m in models]
    for k in range(2):
        torch.testing.assert_close(both[k], (each[0][k] + each[1][k]) / 2, atol=1e-6, rtol=0)
        assert both[k].dtype == torch.float32
    bf16 = Predictor(models, frontend, "cpu", amp=True)(waves)[0]
    assert 0 < (bf16 - both[0]).abs().max() < 0.05  # bf16 on the CPU: close, not equal
