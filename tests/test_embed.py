"""Embeddings of recordings: `Tagger.embed` (one model's vectors, windows stitched as frame scores
are) and `audioscene embed` (one .npz for many files, read back without pickle)."""

import numpy as np
import soundfile as sf
import torch
from helpers import run_cli

from audioscene.audio import load
from audioscene.infer import Tagger


def test_embed_gives_the_model_s_own_vectors_and_stitches_long_recordings(tiny_run, tiny_data, tmp_path):
    tagger = Tagger.from_run(tiny_run, device="cpu")
    clip = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[0]
    wave = load(clip, sr=tagger.sample_rate)
    result = tagger.embed(clip)
    with torch.no_grad():
        out = tagger.models[0](tagger.frontend(torch.from_numpy(wave)[None]))
    width = out["embedding"].shape[1]
    assert result.clip.shape == (width,) and result.frames.shape[1] == width and result.frame_hop == tagger.frame_hop
    # same vectors through other batch sizes: kernels may round differently on other CPUs, hence the tolerance
    np.testing.assert_allclose(result.clip, out["embedding"][0].numpy(), rtol=1e-4, atol=1e-5)  # one window
    np.testing.assert_allclose(result.frames, out["frame_embedding"][0, :len(result.frames)].numpy(), rtol=1e-4,
                               atol=1e-5)
    long = np.concatenate([wave, wave[::-1], wave])  # 30 s: windows of the tagger's length, the last one short
    sf.write(tmp_path / "long.wav", long, tagger.sample_rate, subtype="FLOAT")
    stitched = tagger.embed(tmp_path / "long.wav")
    step = tagger.window_frames * tagger.frame_samples
    windows = [tagger.embed(long[start:start + step].copy()) for start in range(0, len(long), step)]
    np.testing.assert_allclose(stitched.clip, np.mean([w.clip for w in windows], axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stitched.frames, np.concatenate([w.frames for w in windows]), rtol=1e-4, atol=1e-5)
    assert stitched.duration == len(long) / tagger.sample_rate


def test_the_embed_command_writes_every_readable_file_into_one_npz(tiny_run, tiny_data, tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    clips = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[:3]
    for path in clips:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.wav").write_bytes(b"not audio")
    result = run_cli("embed", str(folder), "--run", str(tiny_run), "-o", str(tmp_path / "emb.npz"), "--workers", "0")
    assert result.returncode == 1 and "broken.wav" in result.stderr and "embeddings of 3 file(s)" in result.stdout
    tagger = Tagger.from_run(tiny_run, device="cpu")
    with np.load(tmp_path / "emb.npz", allow_pickle=False) as data:
        assert list(data["files"]) == [p.name for p in clips]
        assert data["clip"].shape[0] == 3 and data["offsets"][0] == 0 and data["offsets"][-1] == len(data["frames"])
        for i, path in enumerate(clips):  # batched with the other files there, alone here: float rounding apart
            expected = tagger.embed(path)
            frames = data["frames"][data["offsets"][i]:data["offsets"][i + 1]]
            np.testing.assert_allclose(frames, expected.frames, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(data["clip"][i], expected.clip, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(data["times"][data["offsets"][i]:data["offsets"][i + 1]], expected.times)
        assert float(data["frame_hop"]) == tagger.frame_hop and data["duration"].shape == (3,)


def test_every_embed_flag_reaches_the_tagger(tiny_run, tiny_data, tmp_path):
    clip = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[0]
    result = run_cli("embed", str(clip), "--run", str(tiny_run), "--checkpoint", "last", "--weights", "raw", "--hop-s",
                     "5", "--batch-size", "2", "--device", "cpu", "--workers", "1", "-o", str(tmp_path / "e.npz"))
    assert result.returncode == 0, result.stderr
    expected = Tagger.from_run(tiny_run, "last", device="cpu", weights="raw", hop_s=5.0, batch_size=2).embed(clip)
    with np.load(tmp_path / "e.npz", allow_pickle=False) as data:
        np.testing.assert_allclose(data["frames"], expected.frames, rtol=1e-4, atol=1e-5)  # overlapping windows
