"""`audioscene download` against a loopback HTTP server that serves generated media, some failing."""

import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf

from audioscene.cli import main
from audioscene.data.audioset import DownloadSetupError, Segment, download, read_segments


def media(seconds: float = 30.0, sr: int = 44100, freq: float = 440.0) -> bytes:
    """A stereo 44.1 kHz WAV: a sine whose frequency names the clip."""
    t = np.arange(int(seconds * sr)) / sr
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([wave, wave], axis=1), sr, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


class Media(BaseHTTPRequestHandler):
    """ok_* → the file; gone_* → 404; flaky_* → 503 on its first request, then the file;
    slow_* → the file after 0.4 s. Every request is logged as (path, status)."""

    log: list[tuple[str, int]] = []
    seen: set[str] = set()
    body = media()

    def do_GET(self):
        self._answer(with_body=True)

    def do_HEAD(self):
        self._answer(with_body=False)

    def _answer(self, with_body: bool):
        name = self.path.lstrip("/")
        status = 200
        if name.startswith("gone_"):
            status = 404
        elif name.startswith("flaky_") and name not in Media.seen:
            status = 503
        Media.seen.add(name)
        if name.startswith("slow_"):
            time.sleep(0.4)
        Media.log.append((name, status))
        self.send_response(status)
        if status != 200:
            self.end_headers()
            return
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if with_body:
            try:
                self.wfile.write(self.body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Media.log, Media.seen = [], set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Media)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/{{ytid}}.wav"
    httpd.shutdown()


@pytest.fixture(autouse=True)
def needs_ffmpeg():
    if shutil.which("ffmpeg") is None:
        if os.environ.get("AUDIOSCENE_REQUIRE_SYSTEM_TOOLS"):
            pytest.fail("ffmpeg is required (AUDIOSCENE_REQUIRE_SYSTEM_TOOLS is set) but not installed")
        pytest.skip("no ffmpeg on this machine: apt-get install ffmpeg (.ci/run does) to run the download tests")


def segments(*ytids: str) -> list[Segment]:
    return [Segment(ytid, 5.0, 15.0, ("/m/09x0r",)) for ytid in ytids]


def test_success_permanent_and_transient_failures(server, tmp_path):
    report = download(segments("ok_a", "gone_b", "flaky_c"), tmp_path, jobs=3, url_template=server,
                      retries=2, backoff_s=0.01, progress=False)
    assert (report.requested, report.fetched, report.fetched_now) == (3, 2, 2)
    assert report.lost_percent == pytest.approx(100 / 3)
    assert [key for key, _ in report.failed] == ["gone_b_5000"] and "404" in report.failed[0][1]
    assert ("flaky_c.wav", 503) in Media.log and ("flaky_c.wav", 200) in Media.log  # retried, then fetched
    for key in ("ok_a_5000", "flaky_c_5000"):
        wave, sr = sf.read(tmp_path / "audio" / f"{key}.flac")
        assert sr == 16000 and wave.ndim == 1 and abs(len(wave) / sr - 10.0) < 0.05
        spectrum = np.abs(np.fft.rfft(wave))
        assert abs(np.argmax(spectrum) * sr / len(wave) - 440) < 2  # the right content
    assert sorted(p.name for p in (tmp_path / "audio").iterdir()) == ["flaky_c_5000.flac", "ok_a_5000.flac"]
    failures = (tmp_path / "failures.csv").read_text().splitlines()
    assert failures[0] == "key,ytid,start,end,attempts,reason" and failures[1].startswith("gone_b_5000,gone_b,5.0,15.0,1,")

    Media.log.clear()  # a second run skips what is done and what failed for good
    again = download(segments("ok_a", "gone_b", "flaky_c"), tmp_path, url_template=server, progress=False)
    assert Media.log == [] and (again.fetched, again.fetched_now, len(again.failed)) == (2, 0, 1)
    retried = download(segments("gone_b"), tmp_path, url_template=server, retry_failed=True, progress=False)
    assert ("gone_b.wav", 404) in Media.log and retried.failed[0][0] == "gone_b_5000"


def test_killed_run_resumes_with_every_clip_once(server, tmp_path):
    names = [f"slow_{i}" for i in range(6)]
    csv_path = tmp_path / "segments.csv"
    csv_path.write_text("# YTID, start_seconds, end_seconds, positive_labels\n"
                        + "".join(f'{n}, 5.000, 15.000, "/m/09x0r,/m/0bt9lr"\n' for n in names))
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "audioscene", "download", "--csv", str(csv_path), "--out",
                                str(out), "--jobs", "1", "--url-template", server],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list((out / "audio").glob("*.flac"))) < 2:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = {p.stem for p in (out / "audio").iterdir()}
    assert 2 <= len(before) < 6 and all(p.suffix == ".flac" for p in (out / "audio").iterdir())
    for key in before:  # what is in audio/ is complete
        assert abs(sf.info(str(out / "audio" / f"{key}.flac")).duration - 10.0) < 0.05
    Media.log.clear()
    assert main(["download", "--csv", str(csv_path), "--out", str(out), "--jobs", "2", "--url-template", server]) == 0
    assert sorted(p.name for p in (out / "audio").iterdir()) == sorted(f"{n}_5000.flac" for n in names)
    refetched = {path.removesuffix(".wav") + "_5000" for path, _ in Media.log}
    assert not refetched & before  # nothing fetched twice
    labels = (out / "labels.csv").read_text().splitlines()
    assert labels[0] == "filename,labels" and len(labels) == 7 and labels[1].endswith(",Speech;Dog")


def test_missing_ffmpeg_is_one_clear_message(tmp_path, monkeypatch, capsys):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "ffmpeg" else real_which(name))
    with pytest.raises(DownloadSetupError, match="apt-get install ffmpeg"):
        download(segments("ok_a"), tmp_path, progress=False)
    csv_path = tmp_path / "s.csv"
    csv_path.write_text('abc, 0.000, 10.000, "/m/09x0r"\n')
    assert main(["download", "--csv", str(csv_path), "--out", str(tmp_path / "o")]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("audioscene download: error: ffmpeg is not installed")


def test_cli_reports_a_malformed_csv_line(tmp_path, capsys):
    csv_path = tmp_path / "s.csv"
    csv_path.write_text('abc, 0.000, 10.000, "/m/09x0r"\nbroken line\n')
    assert main(["download", "--csv", str(csv_path), "--out", str(tmp_path / "o")]) == 1
    assert "s.csv:2: expected 4 columns" in capsys.readouterr().err
    assert len(read_segments(csv_path, skip_bad=True).segments) == 1
