"""The HEAR API (`audioscene.hear`) on a run of the tool: the attributes and shapes HEAR asks for,
float32 on the model's device, a timestamp hop of at most 50 ms, and timestamps that are the centres
of the frames whose embeddings they carry."""

import numpy as np
import pytest
import torch

from audioscene import hear
from audioscene.audio import load


def test_a_run_is_a_hear_module_with_timestamps_at_its_frames_centres(tiny_run, tiny_data):
    model = hear.load_model(str(tiny_run), device="cpu")
    assert model.sample_rate == 16000 and model.scene_embedding_size == model.timestamp_embedding_size == 256
    assert model.hop_s == 0.04 and model.shifts == 8 and model.step == 640  # 0.32 s in whole samples of <= 50 ms
    clips = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[:2]
    audio = torch.from_numpy(np.stack([load(path, sr=16000)[:4 * 16000] for path in clips]))  # 4 s each
    scene = hear.get_scene_embeddings(audio, model)
    frames, times = hear.get_timestamp_embeddings(audio, model)
    assert scene.shape == (2, 256) and scene.dtype == frames.dtype == times.dtype == torch.float32
    assert frames.shape[:2] == times.shape and frames.shape[0] == 2 and frames.shape[2] == 256
    steps = np.diff(times[0].numpy())
    assert np.allclose(steps, model.hop_s * 1000, atol=1e-3) and times[0, 0] == pytest.approx(model.frame_hop * 500)
    with torch.no_grad():  # timestamp m: frame m // shifts of the audio shifted by (m % shifts) hops, at its centre
        direct = model.model(model.frontend(audio))["frame_embedding"]
        step = model.step
        shifted = model.model(model.frontend(audio[:, 3 * step:]))["frame_embedding"]
    torch.testing.assert_close(frames[:, 0::model.shifts], direct[:, :frames.shape[1] // model.shifts])
    torch.testing.assert_close(frames[:, 3::model.shifts], shifted[:, :frames.shape[1] // model.shifts])
    centre = (3 * step / 16000 + 0.5 * model.frame_hop) * 1000  # shift 3's first frame
    assert float(times[0, 3]) == pytest.approx(centre, abs=1e-3)
    with pytest.raises(Exception, match="expected audio"):
        hear.get_scene_embeddings(audio[0], model)


def test_a_zoo_family_at_32_khz_gets_a_40_ms_hop_too():
    from audioscene import models
    from audioscene.features import LogMel
    from audioscene.pretrained import CATALOGUE

    torch.manual_seed(0)
    release = CATALOGUE["efficientat_mn04_as"]
    model = hear.HearModel(models.create(release.model), LogMel(release.frontend), "cpu")
    assert (model.sample_rate, model.shifts, model.step, model.scene_embedding_size) == (32000, 8, 1280, 384)
    frames, times = hear.get_timestamp_embeddings(torch.randn(1, 3 * 32000) * 0.1, model)
    assert frames.shape == (1, len(times[0]), 384) and np.allclose(np.diff(times[0].numpy()), 40.0)


def test_hears_own_validator_passes_a_run(tiny_run, tmp_path):
    """`hearvalidator` (installed without its dependencies by the Makefile) imports TensorFlow only
    to recognise TensorFlow models: a stand-in module with `Module` and `device` serves here."""
    import os
    import subprocess
    import sys

    stand_in = tmp_path / "stand_in" / "tensorflow"
    stand_in.mkdir(parents=True)
    (stand_in / "__init__.py").write_text("import contextlib\n\n\nclass Module:\n    pass\n\n\n"
                                          "def device(name):\n    return contextlib.nullcontext()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(stand_in.parent),
                                                                     os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "hearvalidator.validate", "audioscene.hear", "--model", str(tiny_run),
                             "--device", "cpu"], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0 and "Looks good!" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Interval between timestamps is 40.0ms" in result.stdout
