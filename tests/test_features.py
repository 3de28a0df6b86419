import numpy as np
import pytest
import torch
from helpers import sine
from scipy.signal import chirp
from torchvggish import mel_features

from audioscene.data.synthetic import render_clip
from audioscene.features import FrontendConfig, LogMel, logmel_from_file, mel_matrix

SR = 16000


def reference_logmel(wave: np.ndarray) -> np.ndarray:
    """The VGGish reference front end (numpy, float64)."""
    return mel_features.log_mel_spectrogram(
        wave.astype(np.float64), audio_sample_rate=SR, log_offset=0.01, window_length_secs=0.025,
        hop_length_secs=0.010, num_mel_bins=64, lower_edge_hertz=125.0, upper_edge_hertz=7500.0)


def signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(10 * SR) / SR
    return {
        "white noise": rng.uniform(-1, 1, 10 * SR),
        "quiet noise": 1e-3 * rng.standard_normal(10 * SR),
        "tones": sine(440, 10, SR) + sine(3000, 10, SR, 0.2) + sine(7000, 10, SR, 0.1),
        "chirp": 0.8 * chirp(t, f0=50, t1=10, f1=7900, method="logarithmic"),
        "silence": np.zeros(10 * SR),
        "synthetic clip 3": render_clip(seed=0, index=3)[0],
        "synthetic clip 7": render_clip(seed=0, index=7)[0],
        "odd length": rng.uniform(-1, 1, 12345),
    }


def test_mel_matrix_equals_reference():
    expected = mel_features.spectrogram_to_mel_matrix(64, 257, SR, 125.0, 7500.0)
    np.testing.assert_allclose(mel_matrix(), expected, atol=1e-12)


@pytest.mark.parametrize("name", list(signals()))
def test_logmel_matches_vggish_reference(name):
    wave = signals()[name]
    ours = LogMel()(torch.tensor(wave, dtype=torch.float32)).numpy()
    expected = reference_logmel(wave.astype(np.float32))
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= 1e-3


@pytest.mark.parametrize("n_samples", [400, 401, 559, 560, 16000, 160000, 160159, 160160])
def test_frame_count(n_samples):
    frames = LogMel()(torch.zeros(1, n_samples)).shape[1]
    assert frames == 1 + (n_samples - 400) // 160 == FrontendConfig().n_frames(n_samples)


def test_ten_seconds_give_998_frames():
    assert LogMel()(torch.zeros(3, 160000)).shape == (3, 998, 64)


def test_shorter_than_one_window_gives_one_frame():
    assert LogMel()(torch.zeros(2, 100)).shape == (2, 1, 64)


def test_batch_equals_per_item():
    frontend = LogMel()
    batch = torch.tensor(np.stack([signals()[k][:32000] for k in ("white noise", "tones", "chirp")]),
                         dtype=torch.float32)
    together = frontend(batch)
    for i in range(len(batch)):
        torch.testing.assert_close(together[i], frontend(batch[i]), atol=1e-5, rtol=0)
    # the one-pass path GPUs take (all items and frames at once) gives the same numbers
    frames = torch.nn.functional.pad(batch, (0, 512 - 400)).unfold(1, 512, 160)
    one_pass = torch.empty_like(together)
    frontend._logmel(frames, one_pass)
    torch.testing.assert_close(one_pass, together, atol=1e-5, rtol=0)


def test_output_dtype_and_bad_shape():
    assert LogMel()(torch.zeros(16000, dtype=torch.float64)).dtype == torch.float32
    with pytest.raises(ValueError, match="batch, samples"):
        LogMel()(torch.zeros(1, 2, 16000))


def test_invalid_band_edges():
    with pytest.raises(ValueError, match="f_max"):
        LogMel(FrontendConfig(f_max=9000.0))


def test_logmel_from_file(write_audio):
    wave = sine(1000, 2.0, 44100)
    logmel = logmel_from_file(write_audio("tone.wav", wave, 44100))
    assert logmel.shape == (FrontendConfig().n_frames(32000), 64)
    centre = 1127 * np.log1p(1000 / 700)
    edges = np.linspace(1127 * np.log1p(125 / 700), 1127 * np.log1p(7500 / 700), 66)
    assert int(logmel.mean(0).argmax()) == int(np.abs(edges[1:-1] - centre).argmin())
