"""PANNs checkpoints: parity with the authors' code (`panns_inference`, a test extra), safe loading,
and an imported run through every command."""

import io
import os
import pickle
import shutil
import zipfile
from importlib import resources

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, audioset_folder, run_cli

from audioscene.audio import load
from audioscene.checkpoints import Checkpoint, CheckpointError
from audioscene.pretrained import CATALOGUE, PANNS_ARCHS, import_panns

ARCHS = ("Cnn14", "Cnn14_DecisionLevelMax")


@pytest.fixture(scope="module")
def theirs(tmp_path_factory):
    """`panns_inference.models`, imported with a HOME that already holds the label CSV it would
    otherwise fetch at import (ours: the same file), so nothing touches the network."""
    home = tmp_path_factory.mktemp("home")
    (home / "panns_data").mkdir()
    with resources.as_file(resources.files("audioscene.resources") / "class_labels_indices.csv") as labels:
        shutil.copy(labels, home / "panns_data" / "class_labels_indices.csv")
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    try:
        import panns_inference.models as models
    finally:
        os.environ["HOME"] = old
    return models


def _their_model(theirs, arch: str, waves: torch.Tensor):
    """Their `arch` with seeded random weights and BatchNorm statistics measured on real input and
    then perturbed (default statistics, 0 and 1, leave every layer at one scale: a weak test)."""
    torch.manual_seed(3)
    settings = dict(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000,
                    classes_num=527)
    model = getattr(theirs, arch)(**settings)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches below
    with torch.no_grad():
        model.train()
        model(waves)
        for norm in norms:
            norm.running_mean += 0.05 * torch.randn_like(norm.running_mean) * norm.running_var.sqrt()
            norm.running_var *= torch.empty_like(norm.running_var).uniform_(0.7, 1.4)
            norm.weight.uniform_(0.6, 1.4)
            norm.bias.normal_(0.0, 0.1)
    return model.eval()


def _save_released(model, path, numpy_module: str = "numpy._core.multiarray"):
    """As PANNs saved them: iteration, model and a sampler state holding numpy arrays."""
    state = {"iteration": 600000, "model": model.state_dict(),
             "sampler": {"indexes_per_class": [np.arange(5), np.arange(3)], "queue": [1, 2],
                         "random_state": np.random.RandomState(0).get_state()}}
    torch.save(state, path)
    if numpy_module != "numpy._core.multiarray":  # rewrite the pickle as numpy 1 named its globals
        with zipfile.ZipFile(path) as z:
            members = {name: z.read(name) for name in z.namelist()}
        pkl = next(name for name in members if name.endswith("data.pkl"))
        members[pkl] = members[pkl].replace(b"numpy._core.multiarray", numpy_module.encode())
        with zipfile.ZipFile(path, "w") as z:
            for name, data in members.items():
                z.writestr(name, data)


def expected_logmel(model, waves: torch.Tensor, n_fft: int, float32: bool = False) -> np.ndarray:
    """Their front end's log-mel `[B, frames, 64]`: as shipped (float32), or in float64 with its
    DFT matrix and mel filterbank rebuilt in float64 by the same librosa calls it makes."""
    import copy

    import librosa

    spectrogram, logmel = copy.deepcopy(model.spectrogram_extractor), copy.deepcopy(model.logmel_extractor)
    if not float32:
        spectrogram, logmel, waves = spectrogram.double(), logmel.double(), waves.double()
        window = librosa.util.pad_center(librosa.filters.get_window("hann", n_fft, fftbins=True), size=n_fft)
        dft = np.exp(-2j * np.pi * np.outer(np.arange(n_fft), np.arange(n_fft)) / n_fft)[:, :n_fft // 2 + 1]
        spectrogram.stft.conv_real.weight.data = torch.from_numpy(np.real(dft * window[:, None]).T[:, None, :].copy())
        spectrogram.stft.conv_imag.weight.data = torch.from_numpy(np.imag(dft * window[:, None]).T[:, None, :].copy())
        logmel.melW.data = torch.from_numpy(librosa.filters.mel(sr=32000, n_fft=n_fft, n_mels=64, fmin=50, fmax=14000,
                                                                dtype=np.float64).T.copy())
    with torch.no_grad():
        return logmel(spectrogram(waves))[:, 0].double().numpy()


@pytest.fixture(scope="module")
def clips(tiny_data):
    paths = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[:3]
    return paths, torch.stack([torch.from_numpy(load(p, sr=32000)) for p in paths])


@pytest.mark.parametrize("arch", ARCHS)
def test_an_imported_checkpoint_gives_the_authors_outputs(theirs, clips, tmp_path, arch):
    paths, waves = clips
    model = _their_model(theirs, arch, waves)
    _save_released(model, tmp_path / "released.pth")
    run = import_panns(tmp_path / "released.pth", arch, tmp_path / "run").parent
    ours, frontend, labels = Checkpoint.load(run / "epoch_001.pt").build()
    assert len(labels) == 527 and frontend.config == CATALOGUE[PANNS_ARCHS[arch]].frontend
    features = {}
    model.conv_block6.register_forward_hook(lambda module, args, out: features.update(block6=out))
    with torch.no_grad():
        expected = model(waves)
        got = ours(frontend(waves))
        # the front end: theirs, run in float64 with its DFT and mel weights made in float64 (its own
        # are float32: their rounding alone moves quiet bands by ~1e-4 dB), to 1e-4 dB; as shipped, to 1e-3
        np.testing.assert_allclose(frontend(waves).numpy(), expected_logmel(model, waves, 1024, float32=True), atol=1e-3)
        np.testing.assert_allclose(frontend(waves).double().numpy(), expected_logmel(model, waves, 1024), atol=1e-4)
    np.testing.assert_allclose(got["clipwise"].numpy(), expected["clipwise_output"].numpy(), atol=1e-4)
    assert 0.05 < float(expected["clipwise_output"].std())  # not saturated: the comparison means something
    if arch == "Cnn14":  # their fc layers applied to every frame before the pooling
        frames = features["block6"].mean(dim=3).transpose(1, 2)
        with torch.no_grad():
            framewise = torch.sigmoid(model.fc_audioset(torch.relu(model.fc1(frames))))
    else:  # theirs repeats each output frame 32 times (and pads the end); ours keeps one per 0.32 s
        framewise = expected["framewise_output"][:, :32 * got["framewise"].shape[1]:32]
    np.testing.assert_allclose(got["framewise"].numpy(), framewise.numpy(), atol=1e-4)


def test_tag_on_a_recording_shorter_than_the_window_gives_the_authors_output(theirs, clips, tmp_path):
    import soundfile as sf

    from audioscene.infer import Tagger

    paths, waves = clips
    model = _their_model(theirs, "Cnn14", waves)
    _save_released(model, tmp_path / "released.pth")
    import_panns(tmp_path / "released.pth", "Cnn14", tmp_path / "run")
    short = tmp_path / "short.wav"
    sf.write(short, waves[0, :3 * 32000].numpy(), 32000, subtype="FLOAT")  # 3 s at the model's rate
    result = Tagger.from_run(tmp_path / "run", device="cpu").analyze(short)
    with torch.no_grad():
        expected = model(torch.from_numpy(load(short, sr=32000))[None])["clipwise_output"][0].numpy()
    np.testing.assert_allclose(result.clipwise, expected, atol=1e-4)


def test_numpy_1_pickles_load_and_anything_else_is_refused(theirs, clips, tmp_path):
    _, waves = clips
    model = _their_model(theirs, "Cnn14", waves[:1])
    _save_released(model, tmp_path / "numpy1.pth", numpy_module="numpy.core.multiarray")
    assert b"numpy.core.multiarray" in zipfile.ZipFile(tmp_path / "numpy1.pth").read(
        next(n for n in zipfile.ZipFile(tmp_path / "numpy1.pth").namelist() if n.endswith("data.pkl")))
    import_panns(tmp_path / "numpy1.pth", "Cnn14", tmp_path / "run1")

    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "executed"),))

    torch.save({"model": model.state_dict(), "sampler": Boom()}, tmp_path / "evil.pth", pickle_module=pickle)
    with pytest.raises(CheckpointError, match="evil.pth: refused: the file's pickle names a global"):
        import_panns(tmp_path / "evil.pth", "Cnn14", tmp_path / "run2")
    assert not (tmp_path / "executed").exists() and not (tmp_path / "run2").exists()
    state = model.state_dict()
    state.pop("fc1.bias")
    state["extra.weight"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "foreign.pth")
    assert_one_line_error(run_cli("import-panns", str(tmp_path / "foreign.pth"), "--out", str(tmp_path / "run3")),
                          "foreign.pth: not a Cnn14 checkpoint", "missing fc1.bias", "unexpected extra.weight")
    state = model.state_dict()
    state["fc_audioset.weight"], state["fc_audioset.bias"] = torch.zeros(10, 2048), torch.zeros(10)
    torch.save({"model": state}, tmp_path / "ten.pth")
    with pytest.raises(CheckpointError, match=r"fc_audioset.weight has shape \(10, 2048\), Cnn14 has \(527, 2048\)"):
        import_panns(tmp_path / "ten.pth", "Cnn14", tmp_path / "run4")
    (tmp_path / "broken.pth").write_bytes(io.BytesIO(b"PK\x03\x04 not a zip").getvalue())
    assert_one_line_error(run_cli("import-panns", str(tmp_path / "broken.pth"), "--out", str(tmp_path / "run5")),
                          "broken.pth: not a readable PyTorch checkpoint")
    assert_one_line_error(run_cli("import-panns", str(tmp_path / "numpy1.pth"), "--arch", "Cnn14_16k", "--out",
                                  str(tmp_path / "run6")), "mel filterbank", "not Cnn14_16k's published front end")


def test_an_imported_run_goes_through_every_command(theirs, clips, tiny_data, tmp_path):
    """import-panns and report through the command line; tag, detect, predict, export and fine-tuning
    through the functions those commands call (the command glue is tested on our own runs)."""
    from audioscene import train as training
    from audioscene.data import DataSpec
    from audioscene.distill import predict_to_file, read_teacher
    from audioscene.export import export_onnx
    from audioscene.infer import Tagger

    _, waves = clips
    model = _their_model(theirs, "Cnn14", waves[:2])
    _save_released(model, tmp_path / "released.pth")
    result = run_cli("import-panns", str(tmp_path / "released.pth"), "--arch", "Cnn14", "--out", str(tmp_path / "run"))
    assert result.returncode == 0 and "published mAP 0.431" in result.stdout, result.stderr[-2000:]
    run = tmp_path / "run"
    state = Checkpoint.load(run / "epoch_001.pt")
    assert state.source["published"]["mAP"] == 0.431 and len(state.source["sha256"]) == 64
    names = sorted(p.name for p in (tiny_data / "eval" / "audio").glob("*.flac"))
    data, labels = audioset_folder(tiny_data / "eval", names[:6], tmp_path / "eval6")
    tagger = Tagger.from_run(run, device="cpu")
    clip = tiny_data / "eval" / "audio" / names[0]
    assert len(tagger.tag(clip, top_k=3)) == 3 and tagger.frame_hop == pytest.approx(0.32)
    [(_, _, dcase)] = tagger.analyze_files([clip], classes="dcase2018")
    assert len(dcase.labels) == 10 and dcase.framewise.shape == (31, 10)  # 1001 frames // 32, as Cnn14 pools
    reported = run_cli("report", "--runs", f"cnn14={run}", "--eval-data", data, "--labels", labels, "--bootstrap", "100",
                       "-o", str(tmp_path / "report"))
    assert reported.returncode == 0, reported.stderr[-2000:]
    row = next(line for line in reported.stdout.splitlines() if line.startswith("| cnn14 (peak"))
    assert "PANNs Cnn14 (Kong et al. 2020)" in row and "0.431" in row  # the published row beside ours
    predict_to_file([run], DataSpec.parse(data, labels), tmp_path / "t.npz", progress=False)
    assert read_teacher(tmp_path / "t.npz")[1].shape == (6, 527)
    # 80 M float32 weights: ONNX Runtime and PyTorch differ by ~5e-5 here; other CPUs round differently
    parity = export_onnx(run, tmp_path / "m.onnx", with_frontend=True, tolerance=1e-3)
    assert parity.clipwise < 1e-3 and parity.frontend < 1e-3
    # fine-tuning onto the data's own labels: trunk kept, a new classifier, PANNs' front end taken along
    config, init = training.configure(dict(train_data=data, labels_csv=labels, eval_data=data, eval_labels_csv=labels,
                                           init=str(run / "epoch_001.pt"), epochs=1, batch_size=6, lr=1e-12,
                                           out_dir=str(tmp_path / "tuned"), device="cpu"))
    assert (config.model, config.frontend) == ("cnn14", CATALOGUE["panns_cnn14"].frontend)
    tuned = Checkpoint.load(training.train(config, progress=False, init=init) / "epoch_001.pt")
    assert tuned.model["fc_audioset.weight"].shape[0] == len(tuned.labels) < 527
    assert tuned.frontend_config["kind"] == "panns"
    torch.testing.assert_close(tuned.model["conv_block1.conv1.weight"], state.model["conv_block1.conv1.weight"])
