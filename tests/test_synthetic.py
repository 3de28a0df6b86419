import csv

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from audioscene.data.synthetic import CLIP_SECONDS, SIGNATURES, SR, generate, render_clip
from audioscene.events import read_events_tsv
from audioscene.labels import dcase2018


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "set", n_clips=40, seed=3, progress=False)


def test_classes_are_the_dcase_classes():
    assert tuple(SIGNATURES) == dcase2018().names


def test_same_seed_gives_identical_bytes(synth_set, tmp_path):
    again = generate(tmp_path / "again", n_clips=40, seed=3, progress=False)
    for name in ("weak.csv", "strong.tsv"):
        assert (synth_set / name).read_bytes() == (again / name).read_bytes()
    for path in sorted((synth_set / "audio").iterdir()):
        assert path.read_bytes() == (again / "audio" / path.name).read_bytes()


def test_other_seed_differs_and_smaller_set_is_a_prefix(synth_set, tmp_path):
    other = generate(tmp_path / "other", n_clips=5, seed=4, progress=False)
    assert (other / "audio" / "synth_000000.flac").read_bytes() != (synth_set / "audio" / "synth_000000.flac").read_bytes()
    prefix = generate(tmp_path / "prefix", n_clips=5, seed=3, progress=False)
    assert (prefix / "audio" / "synth_000004.flac").read_bytes() == (synth_set / "audio" / "synth_000004.flac").read_bytes()


def test_files_are_10s_16k_mono(synth_set):
    for path in (synth_set / "audio").iterdir():
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames) == (SR, 1, SR * CLIP_SECONDS)


def test_events_lie_inside_clips_and_match_weak_labels(synth_set):
    events = read_events_tsv(synth_set / "strong.tsv")
    assert events, "a 40-clip set has events"
    for event in events:
        assert 0 <= event.onset < event.offset <= CLIP_SECONDS
        lo, hi = SIGNATURES[event.label].duration
        assert lo - 1e-3 <= event.offset - event.onset <= hi + 1e-3
    with open(synth_set / "weak.csv", newline="") as f:
        weak = {row["filename"]: set(filter(None, row["labels"].split(";"))) for row in csv.DictReader(f)}
    assert len(weak) == 40
    for filename, labels in weak.items():
        assert labels == {e.label for e in events if e.filename == filename}
    counts = [len([e for e in events if e.filename == f]) for f in weak]
    assert set(counts) == {0, 1, 2, 3, 4}  # 0-4 events per clip, each count seen in 40 clips


def test_each_class_signature_sounds_inside_its_interval_only():
    """Band energy (the class's band) inside the event is well above the same band outside it."""
    ratios = {label: [] for label in SIGNATURES}
    index = 0
    while min(map(len, ratios.values())) < 3:
        audio, events = render_clip(seed=11, index=index)
        index += 1
        if len(events) != 1 or len(ratios[events[0].label]) >= 3:
            continue
        event = events[0]
        low, high = SIGNATURES[event.label].band
        freqs, times, spec = signal.stft(audio, SR, nperseg=512, noverlap=352)
        band_energy = (np.abs(spec[(freqs >= low) & (freqs <= high)]) ** 2).sum(axis=0)
        inside = (times >= event.onset + 0.02) & (times <= event.offset - 0.02)
        outside = (times < event.onset - 0.05) | (times > event.offset + 0.05)
        ratios[event.label].append(band_energy[inside].mean() / band_energy[outside].mean())
    for label, values in ratios.items():
        assert min(values) > 2.0, f"{label}: inside/outside band energy {values}"


def test_event_level_follows_snr():
    index = next(i for i in range(100) if len(render_clip(seed=5, index=i)[1]) == 1)

    def inside_to_outside(snr_db: float) -> float:
        audio, (event,) = render_clip(seed=5, index=index, snr_db=(snr_db, snr_db))
        inside = np.zeros(len(audio), dtype=bool)
        inside[int(event.onset * SR):int(event.offset * SR)] = True
        return float(np.sqrt(np.mean(audio[inside] ** 2) / np.mean(audio[~inside] ** 2)))

    # event plus background over background alone: sqrt(1 + 10^(snr/10))
    assert inside_to_outside(20.0) == pytest.approx(np.sqrt(1 + 100), rel=0.1)
    assert inside_to_outside(0.0) == pytest.approx(np.sqrt(2), rel=0.1)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_clips"):
        generate(tmp_path, n_clips=0)
    with pytest.raises(ValueError, match="low <= high"):
        generate(tmp_path, n_clips=1, snr_db=(10.0, 0.0))


def test_a_full_disk_stops_synth_with_one_line_naming_the_clip(tmp_path):
    """A file-size limit stands in for a full disk: a write past it fails with an OSError (EFBIG),
    as one past a full disk does (ENOSPC), at the same point of writing."""
    import resource
    import signal
    import subprocess
    import sys

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    result = subprocess.run([sys.executable, "-m", "audioscene", "synth", "--out", str(tmp_path / "s"), "--n-clips",
                             "3", "--workers", "1"], capture_output=True, text=True, timeout=120, preexec_fn=limit)
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and "synth_000000.flac: could not be written (File too large)" in lines[0]
    assert not list((tmp_path / "s" / "audio").glob("*.flac"))  # no partial clip under a clip's name
