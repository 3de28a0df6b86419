"""EfficientAT's MobileNets and DyMNs against the authors' code: the front end and the model each on the same
input, and the whole chain, on seeded weights in their release format (the reference outputs were
made by tests/data/make_efficientat_reference.py with their code at a named commit); the release
files' checks; the catalogue's published shapes."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, reference_script, run_cli

from audioscene import models
from audioscene.checkpoints import Checkpoint, CheckpointError
from audioscene.features import LogMel
from audioscene.pretrained import CATALOGUE, import_release

DATA = Path(__file__).parent / "data"


SCRIPT = reference_script("make_efficientat_reference")


@pytest.fixture(scope="module")
def reference():
    with np.load(DATA / "efficientat_reference.npz") as data:
        assert str(data["commit"]) == SCRIPT.COMMIT
        return {key: data[key] for key in data.files}


def _release_file(reference: dict, name: str, path: Path) -> Path:
    """The seeded weights of the reference, with its measured BatchNorm statistics, saved as
    EfficientAT saves a release (`torch.save` of the state dict)."""
    offset = list(SCRIPT.SHAPES).index(name)
    model = models.create(CATALOGUE[f"efficientat_{name}"].model)
    weights = SCRIPT.seeded_weights(model.state_dict(), SCRIPT.SEED + offset)
    for key in weights:
        if f"{name}/{key}" in reference:
            weights[key] = torch.from_numpy(reference[f"{name}/{key}"])
    torch.save(weights, path)
    return path


def test_the_front_end_equals_theirs(reference):
    frontend = LogMel(CATALOGUE["efficientat_mn10_as"].frontend)
    for i, wave in enumerate(SCRIPT.clips()):
        ours = frontend(torch.from_numpy(wave)).numpy().T  # (bands, frames), as theirs
        assert ours.shape == reference[f"logmel_{i}"].shape
        # their units, (ln(mel + 1e-5) + 4.5) / 5; their float32 STFT alone rounds ~6e-5 away from ours (float64)
        np.testing.assert_allclose(ours, reference[f"logmel_{i}"], atol=1e-4)


@pytest.mark.parametrize("name", list(SCRIPT.SHAPES))
def test_an_imported_release_gives_their_clip_and_frame_outputs(reference, tmp_path, name):
    path = import_release(_release_file(reference, name, tmp_path / f"{name}.pt"), f"efficientat_{name}",
                          tmp_path / "run")
    state = Checkpoint.load(path)
    model, frontend, labels = state.build(path)
    assert len(labels) == 527 and state.source["catalogue"] == f"efficientat_{name}"
    # a random DyMN is chaotic away from the statistics it was measured with (see the script): it is
    # compared on the clip they were measured on, where its outputs are in range
    for i, wave in enumerate(SCRIPT.clips()[:1] if name.startswith("dymn") else SCRIPT.clips()):
        clipwise, framewise = reference[f"{name}/clipwise_{i}"], reference[f"{name}/framewise_{i}"]
        assert np.mean((clipwise > 0.01) & (clipwise < 0.99)) > 0.5  # mostly unsaturated: a comparison that means something
        with torch.no_grad():
            same_input = model(torch.from_numpy(reference[f"logmel_{i}"]).T[None])
            chained = model(frontend(torch.from_numpy(wave))[None])
        np.testing.assert_allclose(same_input["clipwise"].numpy(), clipwise, atol=1e-4)
        np.testing.assert_allclose(same_input["framewise"].numpy(), framewise, atol=1e-4)
        assert same_input["framewise"].shape[1] == -(-reference[f"logmel_{i}"].shape[1] // 32)
        # the whole chain: the front ends' 6e-5 (their float32 rounding) moves outputs by up to ~3e-4
        np.testing.assert_allclose(chained["clipwise"].numpy(), clipwise, atol=1e-3)
        np.testing.assert_allclose(chained["framewise"].numpy(), framewise, atol=2e-3)


def test_a_release_file_with_other_weights_or_code_is_refused_and_leaves_nothing(reference, tmp_path):
    good = _release_file(reference, "mn10_as", tmp_path / "mn10_as.pt")
    weights = torch.load(good, weights_only=True)
    weights.pop("classifier.5.bias")
    weights["extra.weight"] = torch.zeros(1)
    weights["features.0.0.weight"] = torch.zeros(8, 1, 3, 3)
    torch.save(weights, tmp_path / "foreign.pt")
    assert_one_line_error(run_cli("pretrained", "import", "efficientat_mn10_as", str(tmp_path / "foreign.pt"),
                                  "--out", str(tmp_path / "run")),
                          "foreign.pt: not a mn10_as checkpoint (3 mismatches", "missing classifier.5.bias",
                          "unexpected extra.weight", "features.0.0.weight has shape (8, 1, 3, 3), mn10_as has (16, 1, 3, 3)")
    assert not (tmp_path / "run").exists()

    class Boom:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"model": torch.load(good, weights_only=True), "extra": Boom()}, tmp_path / "evil.pt",
               pickle_module=pickle)
    with pytest.raises(CheckpointError, match="evil.pt: refused: the file's pickle names a global"):
        import_release(tmp_path / "evil.pt", "efficientat_mn10_as", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_catalogue_s_models_have_their_published_sizes():
    sizes = {}
    for release in CATALOGUE.values():
        if release.model not in sizes:
            model = models.create(release.model)
            sizes[release.model] = sum(p.numel() for p in model.parameters()) / 1e6
        # CED's README gives two digits (Mini's 9.6 M is 9.70 M of the layers their code builds, Small's 22 M 21.6 M)
        rel = 0.02 if release.name.startswith("ced_") else 0.01
        assert sizes[release.model] == pytest.approx(release.parameters_m, rel=rel), release.name
        assert release.url.startswith("https://") and release.file_name in release.url.replace("%3D", "=")
