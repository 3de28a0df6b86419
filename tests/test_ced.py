"""CED's transformers against the authors' code: the front end and the model each on the same input,
and the whole chain, on seeded weights in their release format (the reference outputs were made by
tests/data/make_ced_reference.py with their code at a named commit); inputs shorter and longer than
their training length; the release files' checks; a CED release through every command, alone and
in an ensemble with a CNN."""

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    assert_one_line_error,
    reference_script,
    released_run_goes_through_every_command,
    run_cli,
)

from audioscene import models
from audioscene.checkpoints import Checkpoint
from audioscene.features import LogMel
from audioscene.pretrained import CATALOGUE, import_release

DATA = Path(__file__).parent / "data"


SCRIPT = reference_script("make_ced_reference")


@pytest.fixture(scope="module")
def reference():
    with np.load(DATA / "ced_reference.npz") as data:
        assert str(data["commit"]) == SCRIPT.COMMIT
        return {key: data[key] for key in data.files}


def _release_file(name: str, path: Path, filterbank: np.ndarray | None = None) -> Path:
    """The reference's seeded weights saved as CED saves a release: the model's state dict with
    their front end's window and filterbank (`front_end.0.*`) beside it."""
    model = models.create(name)
    weights = SCRIPT.seeded_weights(model.state_dict(), SCRIPT.SEED + list(SCRIPT.SHAPES).index(name))
    frontend = LogMel(CATALOGUE[name].frontend)
    weights["front_end.0.spectrogram.window"] = frontend.window.float()
    weights["front_end.0.mel_scale.fb"] = torch.from_numpy(frontend.mel.numpy() if filterbank is None else filterbank
                                                           ).float()
    torch.save(weights, path)
    return path


def test_the_front_end_equals_theirs_to_1e_4_db(reference):
    frontend = LogMel(CATALOGUE["ced_tiny"].frontend)
    for i, wave in enumerate(SCRIPT.clips()):
        ours = frontend(torch.from_numpy(wave)).numpy().T  # (bands, frames), as theirs
        assert ours.shape == reference[f"logmel_{i}"].shape == (64, 1 + len(wave) // 160)
        np.testing.assert_allclose(ours, reference[f"logmel_{i}"], atol=1e-4)
    silent_half = frontend(torch.from_numpy(SCRIPT.clips()[1]))
    assert float(silent_half.min()) == pytest.approx(float(silent_half.max()) - 120.0)  # the 120 dB floor binds


@pytest.mark.parametrize("name", list(SCRIPT.SHAPES))
def test_an_imported_release_gives_their_clip_and_frame_outputs(reference, tmp_path, name):
    path = import_release(_release_file(name, tmp_path / f"{name}.pt"), name, tmp_path / "run")
    state = Checkpoint.load(path)
    model, frontend, labels = state.build(path)
    assert len(labels) == 527 and state.frontend_config["kind"] == "ced" and model.frame_hop == 0.16
    for i, wave in enumerate(SCRIPT.clips()):
        clipwise, framewise = reference[f"{name}/clipwise_{i}"], reference[f"{name}/framewise_{i}"]
        assert np.mean((clipwise > 0.01) & (clipwise < 0.99)) > 0.5  # mostly unsaturated: a comparison that means something
        with torch.no_grad():
            same_input = model(torch.from_numpy(reference[f"logmel_{i}"]).T[None])
            chained = model(frontend(torch.from_numpy(wave))[None])
        assert same_input["framewise"].shape[1] == reference[f"logmel_{i}"].shape[1] // 16
        for out in (same_input, chained):
            np.testing.assert_allclose(out["clipwise"].numpy(), clipwise, atol=1e-4)
            np.testing.assert_allclose(out["framewise"].numpy(), framewise, atol=1e-4)


def test_short_and_long_inputs_follow_their_handling():
    torch.manual_seed(0)
    model = models.create("ced_tiny").eval()
    generator = torch.Generator().manual_seed(3)
    logmel = -40 + 15 * torch.randn(2, 2500, 64, generator=generator)
    with torch.no_grad():
        whole = model(logmel)
        # longer than 1012 frames: chunks of 63 patches (1008 frames), the last padded with zeros after
        # the band norm (here: the input the norm turns into zeros), clip = the mean of the chunks'
        chunks = [model(logmel[:, start:start + 1008]) for start in (0, 1008)]
        tail = logmel[:, 2016:]
        assert tail.shape[1] == 484
        norm = model.init_bn[1]
        zeros_after_norm = (norm.running_mean - norm.bias * (norm.running_var + norm.eps).sqrt() / norm.weight)
        padded = torch.cat([tail, zeros_after_norm.expand(2, 1008 - 484, 64)], dim=1)
        chunks.append(model(padded))
        short = model(logmel[:, :5])
        exact = model(logmel[:, :1012])
    torch.testing.assert_close(whole["clipwise"], sum(c["clipwise"] for c in chunks) / 3, atol=1e-5, rtol=0)
    assert whole["framewise"].shape == (2, 2500 // 16, 527)
    expected_frames = torch.cat([c["framewise"] for c in chunks], dim=1)[:, :2500 // 16]
    torch.testing.assert_close(whole["framewise"], expected_frames, atol=1e-5, rtol=0)
    assert short["framewise"].shape == (2, 1, 527) and exact["framewise"].shape == (2, 63, 527)
    # the clip output is the head on the mean of the frame vectors
    torch.testing.assert_close(exact["embedding"], exact["frame_embedding"].mean(dim=1))
    torch.testing.assert_close(exact["clipwise"], torch.sigmoid(model.outputlayer(exact["embedding"])))


def test_a_release_with_another_front_end_or_other_weights_is_refused(tmp_path):
    slaney = LogMel(CATALOGUE["panns_cnn14_16k"].frontend).mel.numpy()  # PANNs' 16 kHz filterbank: also [257, 64]
    path = _release_file("ced_tiny", tmp_path / "other_frontend.pt", filterbank=slaney)
    assert_one_line_error(run_cli("pretrained", "import", "ced_tiny", str(path), "--out", str(tmp_path / "run")),
                          "other_frontend.pt: its mel filterbank ((257, 64)) is not CED-Tiny's published front end")
    mini = _release_file("ced_mini", tmp_path / "mini.pt")
    assert_one_line_error(run_cli("pretrained", "import", "ced_tiny", str(mini), "--out", str(tmp_path / "run")),
                          "mini.pt: not a CED-Tiny checkpoint", "has shape (256,")
    assert not (tmp_path / "run").exists()


@pytest.fixture
def ced_cached(tmp_path, monkeypatch):
    """CED-Tiny's seeded release imported by hand into an empty cache: `pretrained:ced_tiny`, offline."""
    monkeypatch.setenv("AUDIOSCENE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("AUDIOSCENE_OFFLINE", "1")
    imported = run_cli("pretrained", "import", "ced_tiny", str(_release_file("ced_tiny", tmp_path / "tiny.pt")))
    assert imported.returncode == 0, imported.stderr
    return "pretrained:ced_tiny"


def test_ced_goes_through_every_command(ced_cached, tiny_data, tmp_path):
    """tag, detect (DCASE classes), predict, export-onnx with its front end (ONNX Runtime parity; its
    tags equal PyTorch's), evaluate, report (its published row) and fine-tuning onto the tiny data's
    labels, all by name."""
    walked = released_run_goes_through_every_command(ced_cached, tiny_data, tmp_path, "CED-Tiny (Dinkel et al. 2024)",
                                                     "0.481", "outputlayer.1.weight")
    from audioscene.export import OnnxModel

    onnx = OnnxModel(tmp_path / "m.onnx")
    assert onnx.metadata["max_frames"] == 1012 and onnx.metadata["model"] == "ced_tiny"
    onnx_tags = run_cli("tag", str(walked["clip"]), "--run", str(tmp_path / "m.onnx"), "--top-k", "3")
    assert onnx_tags.returncode == 0 and onnx_tags.stdout == walked["tagged"], onnx_tags.stderr
    state, source = walked["tuned"], walked["release"]
    assert state.model_config["name"] == "ced_tiny" and state.frontend_config["kind"] == "ced"
    for key in ("blocks.11.attn.qkv.weight", "outputlayer.0.weight", "time_pos_embed"):  # the rest kept
        torch.testing.assert_close(state.model[key], source[key])


def test_ced_and_a_cnn_tag_as_one_ensemble(ced_cached, tmp_path):
    """CED-Tiny beside PANNs' 16 kHz CNN14 (each through its own front end): the ensemble's scores
    are the mean of the two runs' own."""
    torch.manual_seed(1)
    torch.save({"model": models.create("cnn14_16k").state_dict()}, tmp_path / "cnn14_16k.pth")
    import_release(tmp_path / "cnn14_16k.pth", "panns_cnn14_16k", tmp_path / "cnn")
    from audioscene.infer import Tagger

    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(5 * 16000)).astype(np.float32)
    ced, cnn = Tagger.from_runs([ced_cached]), Tagger.from_runs([str(tmp_path / "cnn")])
    both = Tagger.from_runs([ced_cached, str(tmp_path / "cnn")])
    alone, joint = (ced.analyze(wave), cnn.analyze(wave)), both.analyze(wave)
    np.testing.assert_allclose(joint.clipwise, (alone[0].clipwise + alone[1].clipwise) / 2, atol=1e-6)
    # frames on CNN14's 0.32 s grid, each CED's two 0.16 s frames within it averaged
    assert (ced.frame_hop, cnn.frame_hop, both.frame_hop) == (0.16, 0.32, 0.32)
    n = len(joint.framewise)
    pooled = alone[0].framewise[:2 * n].reshape(n, 2, -1).mean(axis=1)
    np.testing.assert_allclose(joint.framewise, (pooled + alone[1].framewise[:n]) / 2, atol=1e-6)
    assert n == min(len(alone[0].framewise) // 2, len(alone[1].framewise))
    from audioscene.predictor import Predictor

    coarser = models.create("efficientat_mn04", input_hop_s=0.0125)  # frames every 0.4 s: 2.5 of CED's
    with pytest.raises(Exception, match=r"frame hops \[0.16, 0.4\] s cannot be averaged: each must divide"):
        Predictor([ced.models[0], coarser], [ced.frontend, ced.frontend], "cpu")
