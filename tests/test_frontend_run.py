"""The front end belongs to the run: a 32 kHz / 128-mel run trains, evaluates, tags, detects and
exports with the right frame times, and the output frame hop follows the front end's hop."""

import math

import numpy as np
import pytest
import soundfile as sf
from helpers import assert_one_line_error, run_cli, tiny_config

from audioscene import models
from audioscene import train as training
from audioscene.checkpoints import Checkpoint
from audioscene.evaluate import evaluate_run
from audioscene.events import read_events_tsv
from audioscene.features import FrontendConfig
from audioscene.infer import Tagger
from audioscene.train import ConfigError, TrainConfig

PANNS_LIKE = FrontendConfig(sample_rate=32000, window_ms=32.0, n_fft=1024, n_mels=128, f_min=50.0, f_max=14000.0)


@pytest.fixture(scope="module")
def wide_run(tiny_data, tmp_path_factory):
    return training.train(tiny_config(tiny_data, tmp_path_factory.mktemp("runs") / "wide", epochs=1,
                                      frontend=PANNS_LIKE), progress=False)


def test_a_32k_128_mel_run_end_to_end(wide_run, tiny_data, tmp_path):
    state = Checkpoint.load(wide_run / "epoch_001.pt")
    assert FrontendConfig(**state.frontend_config) == PANNS_LIKE and state.model_config["n_mels"] == 128
    scores = evaluate_run(wide_run, tiny_data / "eval", device="cpu", progress=False)
    assert 0 < scores.avg["mAP"] <= 1
    clip = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[0]  # a 16 kHz file: resampled to 32 kHz
    tagger = Tagger.from_run(wide_run, "last", device="cpu")
    result = tagger.analyze(clip)
    assert tagger.sample_rate == 32000 and tagger.frontend.config.n_mels == 128
    assert result.duration == pytest.approx(sf.info(str(clip)).duration) and result.frame_hop == pytest.approx(0.32)
    assert len(result.framewise) == math.ceil(result.duration / 0.32) and result.times[-1] < result.duration
    events_tsv = tmp_path / "events.tsv"
    out = run_cli("detect", str(clip), "--run", str(wide_run), "--checkpoint", "last", "--thresholds", "0",
                  "-o", str(events_tsv))
    assert out.returncode == 0, out.stderr
    events = read_events_tsv(events_tsv)
    assert events and all(e.offset <= result.duration + 1e-6 for e in events)
    assert all(abs(e.onset / 0.32 - round(e.onset / 0.32)) < 1e-3 for e in events)  # on the 0.32 s grid


def test_the_wide_run_exports_to_onnx_with_its_front_end(wide_run, tiny_data, tmp_path):
    from audioscene.export import OnnxModel, export_onnx

    path = tmp_path / "wide.onnx"
    parity = export_onnx(wide_run, path, checkpoint="last", with_frontend=True)
    assert parity.ok and parity.frontend < 1e-5
    assert OnnxModel(path).frontend_config == PANNS_LIKE
    clip = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[1]
    ours, theirs = Tagger.from_run(wide_run, "last", device="cpu").analyze(clip), Tagger.from_onnx(path).analyze(clip)
    assert theirs.frame_hop == ours.frame_hop and theirs.framewise.shape == ours.framewise.shape
    np.testing.assert_allclose(theirs.framewise, ours.framewise, atol=1e-4)


@pytest.mark.parametrize("name, hop_ms, frame_hop", [("resnet_b_att", 20.0, 0.64), ("resnet_a", 20.0, 1.92),
                                                     ("resnet_c_att", 10.0, 0.32)])
def test_the_output_frame_hop_follows_the_front_end(name, hop_ms, frame_hop):
    config = TrainConfig(model=name, model_args={"width": 8}, frontend=FrontendConfig(hop_ms=hop_ms))
    model = models.AudioResNet(config.model_config(5))
    assert model.frame_hop == pytest.approx(frame_hop) and model.config.pad_value == pytest.approx(math.log(0.01))


def test_front_end_settings_from_toml_and_flags(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[frontend]\nsample_rate = 32000\nn_fft = 1024\nn_mels = 128\nf_max = 14000\n")
    config = TrainConfig.from_toml(path, frontend={"n_mels": 96})  # flags win key by key
    assert (config.frontend.sample_rate, config.frontend.n_mels, config.frontend.f_max) == (32000, 96, 14000.0)
    path.write_text("[frontend]\nn_mel = 128\n")
    with pytest.raises(ConfigError, match="run.toml: frontend: unknown key.s. n_mel"):
        TrainConfig.from_toml(path)
    with pytest.raises(ConfigError, match=r"frontend: f_min 125 Hz and f_max 9000 Hz: need f_min < f_max <= 8000 Hz"):
        TrainConfig(frontend={"f_max": 9000})


@pytest.mark.parametrize("settings, n_fft, f_max", [
    (dict(sample_rate=32000), 1024, 15000.0),  # the FFT follows the window: 800 samples -> 1024, as PANNs'
    (dict(sample_rate=32000, window_ms=64), 2048, 15000.0),  # f_max 15/32 of a rate above 16 kHz
    (dict(window_ms=50), 1024, 7500.0),
    (dict(sample_rate=8000), 256, 4000.0),  # f_max follows a rate below 15 kHz
    (dict(sample_rate=32000, n_fft=4096, f_max=7500), 4096, 7500.0),  # explicit values win
    (dict(sample_rate=32000, n_mels=128), 1024, 15000.0),  # 128 bands at 32 kHz need no --f-max
])
def test_changing_the_rate_or_window_alone_gives_a_front_end(settings, n_fft, f_max):
    frontend = TrainConfig(frontend=settings).frontend
    assert (frontend.n_fft, frontend.f_max) == (n_fft, f_max)


@pytest.mark.parametrize("flags, fragment", [
    (["--hop-ms", "0.01"], "hop_ms = 0.01: 0 samples at 16000 Hz; expected at least 1"),
    (["--window-ms", "0.01"], "window_ms = 0.01: 0 samples at 16000 Hz; expected at least 2"),
    (["--n-mels", "1000"], "n_mels = 1000: 537 of the bands hold no FFT bin"),
    (["--f-min", "8000"], "f_min 8000 Hz and f_max 7500 Hz: need f_min < f_max <= 8000 Hz"),
    (["--model", "kong_att", "--sample-rate", "32000"], "front-end settings do not apply to kong_att"),
])
def test_front_end_flags_that_cannot_work_give_one_line(flags, fragment, tmp_path):
    assert_one_line_error(run_cli("train", "--train-data", "x", "--eval-data", "y", "--out", str(tmp_path / "r"),
                                  *flags), fragment)
