"""Live detection (`live.py`, `detect --stream`, `listen`): a recording fed as a stream gives the
events `detect` gives on the file, each once; onsets come early; memory stays flat over an hour of
stream; bad streams end in one line after the lines so far."""

import io
import json
import subprocess
import sys
import threading
import types

import numpy as np
import pytest
import soundfile as sf
from helpers import LoudnessDetector, noise_bursts, run_cli

from audioscene.audio import load
from audioscene.events import read_events_tsv
from audioscene.infer import Tagger, events_from_analysis

THRESHOLD = "0.3"


@pytest.fixture(scope="module")
def recording(tiny_data, tmp_path_factory):
    """57.3 s of the synthetic eval clips one after another, as 16-bit PCM (what s16le carries exactly)."""
    clips = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[:6]
    wave = np.concatenate([load(clip, sr=16000) for clip in clips])[:int(57.3 * 16000)]
    path = tmp_path_factory.mktemp("live") / "recording.wav"
    sf.write(path, wave, 16000, subtype="PCM_16")
    return path, load(path, sr=16000)


def _cut(wave, seed=0, pieces=40):
    cuts = np.sort(np.random.default_rng(seed).integers(0, len(wave), pieces))
    return np.split(wave, cuts)


@pytest.mark.parametrize("hop_s, median, upsample, classes, threshold", [
    (None, 1, 1, "all", 0.3), (1.0, 5, 1, "all", 0.3), (3.2, 3, 4, "all", 0.3),
    (1.0, 3, 1, {"animal": ["Dog", "Cat"], "kitchen": ["Dishes", "Frying", "Blender"]}, 0.41)])
def test_a_recording_fed_as_a_stream_gives_detect_s_events_each_once(tiny_run, recording, hop_s, median, upsample,
                                                                      classes, threshold):
    _, wave = recording
    tagger = Tagger.from_run(tiny_run, device="cpu", hop_s=hop_s, batch_size=1)
    analysis = tagger.analyze(wave)
    if classes != "all":
        from audioscene.infer import to_classes
        analysis = to_classes(analysis, classes)
    offline = [(e.label, e.onset, e.offset) for e in events_from_analysis(analysis, "w", threshold, median, upsample)]
    lines = list(tagger.stream(_cut(wave), thresholds=threshold, median=median, upsample=upsample, classes=classes,
                               onsets=True))
    streamed = [(line.label, line.onset, line.offset) for line in lines if line.kind == "event"]
    assert len(offline) >= 4 and sorted(streamed) == sorted(offline)
    assert len(set(streamed)) == len(streamed)  # never twice
    # every event line comes after the onset line of its class (at most one per event), and no later
    onsets = [line for line in lines if line.kind == "onset"]
    for event in (line for line in lines if line.kind == "event"):
        before = [o for o in onsets if o.label == event.label and o.stream_s <= event.stream_s]
        assert before, event
    assert all(line.stream_s >= line.offset - 1e-6 for line in lines if line.kind == "event")


def test_known_bursts_are_found_once_and_their_onsets_said_within_a_hop():
    """A stand-in model whose frame scores are known (loudness: `helpers.LoudnessDetector`) on noise
    bursts at known times: one event per burst on the 0.32 s grid, its onset line within one hop
    (0.96 s: 3 frames), the frame it straddles, the window's last frame (a 10.24 s window gives the
    model 1022 VGGish frames: 31 whole output frames, so its 32nd comes from the next window) and
    one 0.1 s block of the burst's start; its event line only once its end is final."""
    from audioscene.features import LogMel
    from audioscene.labels import LabelSet

    bursts = [(12.3, 14.0), (20.5, 23.2), (31.0, 31.8), (44.1, 50.0), (58.0, 60.0)]
    wave = noise_bursts(60, bursts)
    tagger = Tagger([LoudnessDetector()], LogMel(), LabelSet(("burst",)), device="cpu", hop_s=1.0)
    lines = list(tagger.stream(np.split(wave, np.arange(1600, len(wave), 1600)), median=3, onsets=True))
    events = [line for line in lines if line.kind == "event"]
    onsets = [line for line in lines if line.kind == "onset"]
    assert len(events) == len(onsets) == len(bursts)
    for (onset, offset), event, said in zip(bursts, events, onsets):
        assert abs(event.onset - onset) <= 0.32 and abs(event.offset - offset) <= 0.32
        assert said.onset == event.onset and said.stream_s - onset <= 0.96 + 2 * 0.32 + 0.1 + 1e-6
        assert event.stream_s >= event.offset and said.stream_s < event.stream_s
    assert events[-1].offset >= 60.0 - 0.32 and events[-1].stream_s == 60.0  # closed by the end of the stream


def test_detect_stream_reads_pcm_on_stdin_and_ffmpeg_sources_like_the_file(tiny_run, recording, tmp_path,
                                                                             monkeypatch):
    path, wave = recording
    assert run_cli("detect", str(path), "--run", str(tiny_run), "--thresholds", THRESHOLD, "--hop-s", "1",
                   "--median", "3", "-o", str(tmp_path / "file.tsv")).returncode == 0
    expected = [(e.onset, e.offset, e.label) for e in read_events_tsv(tmp_path / "file.tsv")]
    pcm = (np.round(wave * 32768)).astype("<i2").tobytes()
    stereo = np.repeat(wave[:, None], 2, axis=1).astype("<f4").tobytes()
    for source, extra, stdin in (("-", [], pcm), ("-", ["--format", "f32le", "--channels", "2"], stereo),
                                 (str(path), [], b"")):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        result = run_cli("detect", "--stream", source, *extra, "--run", str(tiny_run), "--thresholds", THRESHOLD,
                         "--median", "3", "--lines", "json", "-o", str(tmp_path / "stream.tsv"))
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert {line["kind"] for line in lines} == {"event"}  # no --onsets, no --tag-every
        assert sorted((e.onset, e.offset, e.label) for e in read_events_tsv(tmp_path / "stream.tsv")) == sorted(expected)
        assert len(lines) == len(expected) and "events in 57.3 s of" in result.stderr


def test_every_stream_flag_typed_reaches_the_stream(tiny_run, recording, tmp_path, monkeypatch):
    path, wave = recording
    at_8k = load(path, sr=8000)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(at_8k.astype("<f4").tobytes())))
    result = run_cli("detect", "--stream", "-", "--format", "f32le", "--rate", "8000", "--channels", "1",
                     "--run", str(tiny_run), "--device", "cpu", "--hop-s", "2",
                     "--thresholds", THRESHOLD, "--onsets", "--tag-every", "5", "--lines", "tsv", "--classes", "all")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    kinds = {row[0] for row in rows}
    assert kinds == {"event", "onset", "tags"}
    tag_times = [float(row[1]) for row in rows if row[0] == "tags"]
    assert len(tag_times) >= 10 and min(np.diff(tag_times[:-1])) >= 5.0 - 1e-6  # every 5 s at most, and at the end
    assert all(len(row) == 7 for row in rows if row[0] != "tags")
    started = __import__("time").monotonic()
    short = tmp_path / "short.wav"
    sf.write(short, wave[:3 * 16000], 16000, subtype="PCM_16")
    played = run_cli("detect", "--stream", str(short), "--realtime", "--run", str(tiny_run), "--thresholds", "0.3",
                     "--view", "--port", "0", "--host", "127.0.0.1", "--allow-host", "audio.example")
    assert played.returncode == 0 and __import__("time").monotonic() - started >= 2.9  # played at its own pace
    assert f"live page of {short} on http://127.0.0.1:" in played.stderr


def test_an_hour_of_stream_runs_in_flat_memory(tiny_run):
    tagger = Tagger.from_run(tiny_run, device="cpu", batch_size=1)  # 10 s windows, back to back
    from audioscene.live import LiveStream

    stream = LiveStream(tagger, thresholds=0.3, median=3, onsets=True, tag_every=60)
    rng = np.random.default_rng(0)
    noise = (0.05 * rng.standard_normal(16000 * 60)).astype(np.float32)
    t = np.arange(16000 * 60) / 16000
    minute = noise + (0.3 * np.sin(2 * np.pi * 800 * t) * (np.sin(2 * np.pi * t / 7) > 0.5)).astype(np.float32)

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    marks = {}
    for m in range(60):
        for block in np.split(minute, 60):  # 1 s blocks
            stream.feed(block)
        if m + 1 in (10, 60):
            marks[m + 1] = rss_mb()
    stream.close()
    assert stream.stream_s == 3600.0
    assert marks[60] - marks[10] < 4.0, marks  # what it holds does not grow with the stream
    assert len(stream.buffer) <= stream.window and len(stream.events.frames) < 64


def _error_line(result, *fragments):
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert lines and all(fragment in lines[-1] for fragment in fragments), lines
    assert not [line for line in lines[:-1] if "error" in line.lower()], lines  # the error is said once


def test_bad_streams_end_in_one_line_after_the_lines_so_far(tiny_run, recording, tmp_path, monkeypatch):
    path, wave = recording
    run = ["--run", str(tiny_run), "--thresholds", THRESHOLD]
    cut = (np.round(wave[:30 * 16000] * 32768)).astype("<i2").tobytes() + b"\x01"  # a stream ending mid-sample
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(cut)))
    result = run_cli("detect", "--stream", "-", *run, "-o", str(tmp_path / "cut.tsv"))
    _error_line(result, "standard input: the stream ended inside a sample (1 of 2 bytes")
    assert result.stdout.count("event\t") >= 1 and len(read_events_tsv(tmp_path / "cut.tsv")) >= 1  # flushed
    nan = np.full(16000, np.nan, "<f4").tobytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(wave[:16000].astype("<f4").tobytes() + nan)))
    _error_line(run_cli("detect", "--stream", "-", "--format", "f32le", *run), "standard input: the stream holds NaN")
    (tmp_path / "not_audio.wav").write_text("hello")
    _error_line(run_cli("detect", "--stream", str(tmp_path / "not_audio.wav"), *run), "not_audio.wav: ffmpeg failed")
    with __import__("socket").socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    _error_line(run_cli("detect", "--stream", f"http://127.0.0.1:{port}/live", *run),
                f"http://127.0.0.1:{port}/live: ffmpeg failed")
    monkeypatch.setattr("shutil.which", lambda name: None)
    _error_line(run_cli("detect", "--stream", str(path), *run), "ffmpeg is not installed")
    silent = np.zeros(12 * 16000, "<i2").tobytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(silent)))
    quiet = run_cli("detect", "--stream", "-", *run)
    assert quiet.returncode == 0 and "standard input: 10 s of digital silence" in quiet.stderr
    assert run_cli("detect", "a.wav", "--stream", "-", *run).returncode != 0


class FakeSoundDevice(types.ModuleType):
    """`sounddevice` with an input that plays `wave` in 0.1 s blocks from a thread, then stops
    (a device unplugged) unless `then_wait`."""

    def __init__(self, wave, rate=16000):
        super().__init__("sounddevice")
        self.wave, self.rate, self.opened = wave, rate, []

    def query_devices(self):
        return "  0 fake microphone, ALSA (2 in, 0 out)"

    def InputStream(self, samplerate, channels, dtype, device, blocksize, callback, finished_callback):  # noqa: N802
        fake = self
        fake.opened.append((samplerate, channels, dtype, device))

        class Stream:
            active = False

            def start(self):
                self.active = True
                threading.Thread(target=self.play, daemon=True).start()

            def play(self):
                for start in range(0, len(fake.wave), blocksize):
                    callback(fake.wave[start:start + blocksize, None], blocksize, None, None)
                self.active = False
                finished_callback()

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.active = False

        return Stream()


def test_listen_reads_the_sound_card_and_says_when_the_device_goes(tiny_run, recording, monkeypatch):
    _, wave = recording
    fake = FakeSoundDevice(wave[:20 * 16000])
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    listed = run_cli("listen", "--list-devices")
    assert listed.returncode == 0 and "fake microphone" in listed.stdout
    result = run_cli("listen", "--run", str(tiny_run), "--device", "0", "--compute-device", "cpu",
                     "--thresholds", THRESHOLD, "--median", "3", "--upsample", "2", "--hop-s", "2", "--onsets",
                     "--tag-every", "3", "--lines", "json")
    _error_line(result, "input device 0: the input stopped (was it unplugged?)")
    assert fake.opened == [(16000, 1, "float32", 0)]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [line["kind"] for line in lines]
    assert "event" in kinds and "onset" in kinds and "tags" in kinds  # open events were closed and flushed
    assert all(round(line["onset"] / 0.16, 6).is_integer() for line in lines if "onset" in line)  # upsampled grid
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # not installed
    _error_line(run_cli("listen", "--run", str(tiny_run)), "pip install 'audioscene[live]'")
    _error_line(run_cli("listen"), "give --run RUN (or --list-devices)")


def test_the_stream_command_line_runs_as_a_pipe(tiny_run, recording):
    """`detect --stream -` in a process of its own, fed through a pipe by another (as arecord would)."""
    path, _ = recording
    decode = subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-f", "s16le", "-ac", "1",
                               "-ar", "16000", "pipe:1"], stdout=subprocess.PIPE)
    detect = subprocess.run([sys.executable, "-m", "audioscene", "detect", "--stream", "-", "--run", str(tiny_run),
                             "--thresholds", THRESHOLD], stdin=decode.stdout, capture_output=True, text=True,
                            timeout=300)
    decode.wait()
    assert detect.returncode == 0, detect.stderr
    assert detect.stdout.count("event\t") >= 4


def test_the_live_page_shows_the_stream_as_it_plays_in_headless_chromium(tmp_path):
    """A fed stream (noise bursts through the stand-in model) on the live page: the spectrogram and
    score lines are drawn, onsets appear as open events and are closed by their event lines, no
    console errors; a request for another Host is refused."""
    import time
    import urllib.error
    import urllib.request

    from playwright.sync_api import sync_playwright

    from audioscene.features import LogMel
    from audioscene.labels import LabelSet
    from audioscene.live import LiveStream
    from audioscene.live_page import LivePage, serve_in_background
    from helpers import ARTIFACTS, browser_path

    executable = browser_path()
    bursts = [(12.3, 14.0), (20.5, 23.2), (31.0, 31.8)]
    wave = noise_bursts(45, bursts)
    tagger = Tagger([LoudnessDetector()], LogMel(), LabelSet(("burst",)), device="cpu", hop_s=1.0)
    stream = LiveStream(tagger, median=3, onsets=True, tag_every=5)
    page_server = LivePage()
    page_server.watch(stream)
    url, server = serve_in_background(page_server, port=0)
    try:
        evil = urllib.request.Request(url + "api/stream", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError, match="400"):
            urllib.request.urlopen(evil, timeout=10)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 900, "height": 900})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(url)
            page.wait_for_selector("#status.live")
            for block in np.split(wave, np.arange(1600, len(wave), 1600)):  # 0.1 s blocks, 4.5x real time
                for line in stream.feed(block):
                    page_server.publish_line(line)
                time.sleep(0.02)
            for line in stream.close():
                page_server.publish_line(line)
            page.wait_for_function("document.querySelectorAll('#events tbody tr').length >= 3", timeout=30_000)
            page.wait_for_timeout(500)
            rows = page.locator("#events tbody tr")
            assert rows.count() == len(bursts) and page.locator("#events tbody tr.open").count() == 0, rows.all_inner_texts()
            assert "burst" in page.locator("#legend").inner_text() and page.locator("#tags li").count() == 1
            lit = page.evaluate("""() => { const c = document.getElementById('spectrogram');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
                for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 0) n++; return n / (d.length / 4); }""")
            assert lit > 0.5  # drawn over most of its width (45 s of stream for a 30 s view)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "live.png"), full_page=True)
            browser.close()
    finally:
        server.should_exit = True
    assert errors == []


def test_a_stream_behind_real_time_drops_windows_but_no_event():
    """Fed 3 s of backlog at a time with `skip` (as `run_live` does when the model is behind), only
    the newest window of each backlog runs; every burst still gives its one event."""
    from audioscene.features import LogMel
    from audioscene.labels import LabelSet
    from audioscene.live import LiveStream

    bursts = [(11.3, 13.9), (21.3, 23.2), (29.1, 30.0), (36.2, 37.9), (43.0, 43.9), (51.9, 54.1)]
    wave = noise_bursts(60, bursts)
    tagger = Tagger([LoudnessDetector()], LogMel(), LabelSet(("burst",)), device="cpu", hop_s=0.32)
    stream = LiveStream(tagger, median=3)
    lines = [line for start in range(0, len(wave), 48000) for line in stream.feed(wave[start:start + 48000], skip=True)]
    lines += stream.close()
    events = [(line.onset, line.offset) for line in lines if line.kind == "event"]
    assert stream.dropped > 100 and len(events) == len(bursts)
    assert all(abs(on - b_on) <= 0.32 and abs(off - b_off) <= 0.32 for (on, off), (b_on, b_off) in zip(events, bursts))
