import numpy as np
import pytest
import soundfile as sf
from helpers import sine

from audioscene.audio import AudioError, load


def dominant_frequency(x: np.ndarray, sr: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spectrum.argmax()])


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_resamples_to_16k_keeping_pitch(write_audio, sr):
    path = write_audio(f"tone_{sr}.wav", sine(440.0, 2.0, sr), sr)
    wave = load(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 32000) <= 1
    assert dominant_frequency(wave) == pytest.approx(440.0, abs=1.0)
    assert np.sqrt(np.mean(wave[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_load_at_other_rate(write_audio):
    wave = load(write_audio("tone.wav", sine(440.0, 1.0, 16000), 16000), sr=8000)
    assert abs(len(wave) - 8000) <= 1


@pytest.mark.parametrize("channels", [2, 6])
def test_multichannel_is_downmixed_by_mean(write_audio, channels):
    gains = np.linspace(1.0, -0.5, channels)
    stereo = sine(440.0, 1.0, 16000)[:, None] * gains[None, :].astype(np.float32)
    wave = load(write_audio(f"multi_{channels}.wav", stereo, subtype="FLOAT"))
    np.testing.assert_allclose(wave, stereo.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("name", ["clip.flac", "clip.ogg", "clip.wav"])
def test_formats(write_audio, name):
    wave = load(write_audio(name, sine(1000.0, 1.0, 16000)))
    assert len(wave) == 16000
    assert dominant_frequency(wave) == pytest.approx(1000.0, abs=2.0)


def test_silence_is_valid(write_audio):
    wave = load(write_audio("silence.wav", np.zeros(16000, dtype=np.float32)))
    assert wave.shape == (16000,) and not wave.any()


def test_values_are_clipped_to_full_scale(write_audio):
    wave = load(write_audio("loud.wav", np.full(1000, 1.5, dtype=np.float32), subtype="FLOAT"))
    assert wave.max() == 1.0


def _zero_samples(tmp_path):
    path = tmp_path / "zero.wav"
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16"):
        pass
    return path


def _bad_values(value):
    def make(tmp_path):
        x = np.zeros(1000, dtype=np.float32)
        x[500] = value
        path = tmp_path / f"bad_{value}.wav"
        sf.write(path, x, 16000, subtype="FLOAT")
        return path
    return make


def _text_bytes(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 50)
    return path


def _empty(tmp_path):
    path = tmp_path / "empty.flac"
    path.touch()
    return path


@pytest.mark.parametrize("make, reason", [
    (lambda tmp_path: tmp_path / "missing.wav", "no such file"),
    (_empty, "empty file"),
    (_zero_samples, "0 samples"),
    (_text_bytes, "cannot decode"),
    (_bad_values(np.nan), "NaN or Inf"),
    (_bad_values(np.inf), "NaN or Inf"),
])
def test_errors_name_the_file_and_reason(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(AudioError, match=reason) as info:
        load(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
