"""`audioscene download` against a loopback HTTP server that serves generated media, some failing."""

import io
import logging
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
from audioscene.data.audioset import Segment, read_segments
from audioscene.data.download import DownloadSetupError, download
from audioscene.errors import InputError


def media(seconds: float = 30.0, sr: int = 44100, freq: float = 440.0) -> bytes:
    """A stereo 44.1 kHz WAV: a sine whose frequency names the clip."""
    t = np.arange(int(seconds * sr)) / sr
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([wave, wave], axis=1), sr, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


class Media(BaseHTTPRequestHandler):
    """ok_* → the file; gone_* → 404; flaky_* → 503 on its first request, then the file;
    slow_* → the file after 0.4 s; busy_* → 429 with `Retry-After: 1` on its first request;
    trickle_* → headers, then one byte every 0.5 s; moved_* → a redirect to a file:// URL.
    Every request is logged as (path, status, time)."""

    log: list[tuple[str, int]] = []
    times: list[tuple[str, int, float]] = []
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
        elif name.startswith("busy_") and name not in Media.seen:
            status = 429
        elif name.startswith("moved_"):
            status = 302
        Media.seen.add(name)
        if name.startswith("slow_"):
            time.sleep(0.4)
        Media.log.append((name, status))
        Media.times.append((name, status, time.monotonic()))
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "1")
        if status == 302:
            self.send_header("Location", "file:///etc/passwd")
        if status != 200:
            self.end_headers()
            return
        if name.startswith("trickle_"):
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            try:
                for byte in self.body[:200]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.5)
            except (BrokenPipeError, ConnectionResetError):
                pass
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
def needs_ffmpeg():
    if shutil.which("ffmpeg") is None:
        if os.environ.get("AUDIOSCENE_REQUIRE_SYSTEM_TOOLS"):
            pytest.fail("ffmpeg is required (AUDIOSCENE_REQUIRE_SYSTEM_TOOLS is set) but not installed")
        pytest.skip("no ffmpeg on this machine: apt-get install ffmpeg (.ci/run does) to run the download tests")


@pytest.fixture
def server(needs_ffmpeg):
    """The loopback media server (downloads through it need ffmpeg)."""
    Media.log, Media.times, Media.seen = [], [], set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Media)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/{{ytid}}.wav"
    httpd.shutdown()


def segments(*ytids: str) -> list[Segment]:
    return [Segment(ytid, 5.0, 15.0, ("/m/09x0r",)) for ytid in ytids]


def ytid(stem: str) -> str:
    """A YouTube-shaped id (11 characters) that starts with `stem`: `ok_a` → `ok_aXXXXXXX`."""
    return (stem + "X" * 11)[:11]


def test_success_permanent_and_transient_failures(server, tmp_path):
    ok, gone, flaky = ytid("ok_a"), ytid("gone_b"), ytid("flaky_c")
    report = download(segments(ok, gone, flaky), tmp_path, jobs=3, url_template=server,
                      retries=2, backoff_s=0.01, progress=False)
    assert (report.requested, report.fetched, report.fetched_now) == (3, 2, 2)
    assert report.lost_percent == pytest.approx(100 / 3)
    assert [key for key, _ in report.failed] == [f"{gone}_5000"] and "404" in report.failed[0][1]
    assert (f"{flaky}.wav", 503) in Media.log and (f"{flaky}.wav", 200) in Media.log  # retried, then fetched
    for key in (f"{ok}_5000", f"{flaky}_5000"):
        wave, sr = sf.read(tmp_path / "audio" / f"{key}.flac")
        assert sr == 16000 and wave.ndim == 1 and abs(len(wave) / sr - 10.0) < 0.05
        spectrum = np.abs(np.fft.rfft(wave))
        assert abs(np.argmax(spectrum) * sr / len(wave) - 440) < 2  # the right content
    assert sorted(p.name for p in (tmp_path / "audio").iterdir()) == [f"{flaky}_5000.flac", f"{ok}_5000.flac"]
    failures = (tmp_path / "failures.csv").read_text().splitlines()
    assert failures[0] == "key,ytid,start,end,attempts,kind,reason"
    assert failures[1].startswith(f"{gone}_5000,{gone},5.0,15.0,1,permanent,")

    Media.log.clear()  # a second run skips what is done and what failed for good
    again = download(segments(ok, gone, flaky), tmp_path, url_template=server, progress=False)
    assert Media.log == [] and (again.fetched, again.fetched_now, len(again.failed)) == (2, 0, 1)
    retried = download(segments(gone), tmp_path, url_template=server, retry_failed=True, progress=False)
    assert (f"{gone}.wav", 404) in Media.log and retried.failed[0][0] == f"{gone}_5000"


def test_a_trickling_server_hits_the_clip_deadline_and_is_retried_later(server, tmp_path):
    """A few bytes every half second defeat every per-read timeout; the attempt's deadline ends it."""
    slow = ytid("trickle_a")
    started = time.monotonic()
    report = download(segments(slow), tmp_path, url_template=server, retries=0, clip_timeout_s=4, progress=False)
    assert time.monotonic() - started < 30 and report.fetched == 0
    assert "timed out" in report.failed[0][1]
    failures = (tmp_path / "failures.csv").read_text().splitlines()
    assert failures[1].startswith(f"{slow}_5000,{slow},5.0,15.0,1,transient,gave up after 1 attempts: timed out")
    Media.log.clear()  # transient: the next run tries it again (permanent failures are skipped)
    download(segments(slow), tmp_path, url_template=server, retries=0, clip_timeout_s=2, progress=False)
    assert any(name == f"{slow}.wav" for name, _ in Media.log)
    assert not list((tmp_path / ".partial").iterdir())  # the killed attempts left no scratch folder


def test_retry_after_is_honoured_and_each_wait_is_told(server, tmp_path, caplog, capsys):
    busy = ytid("busy_a")
    with caplog.at_level(logging.INFO, logger="audioscene.data.download"):
        report = download(segments(busy), tmp_path, url_template=server, retries=2, backoff_s=0.01, progress=True)
    assert report.fetched == 1
    times = [t for name, _, t in Media.times if name == f"{busy}.wav"]
    first_ok = next(t for name, status, t in Media.times if name == f"{busy}.wav" and status == 200)
    assert first_ok - times[0] >= 0.95  # waited the server's 1 s, not the 0.01 s backoff
    waits = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert len(waits) == 1 and waits[0].startswith("127.0.0.1: waiting 1 s before attempt 2 of 3 for ")
    assert "(the server asked for 1 s)" in waits[0] and "429" in waits[0]  # host, seconds, attempt k of n, why
    assert "127.0.0.1: waiting 1 s before attempt 2 of 3" in capsys.readouterr().err  # beside the progress bar


def test_redirects_to_local_files_and_odd_templates_are_refused(server, tmp_path, capsys):
    report = download(segments(ytid("moved_a")), tmp_path, url_template=server, retries=0, progress=False)
    assert report.fetched == 0 and not list((tmp_path / "audio").iterdir())
    for template, problem in (("https://example.org/{video}", "bad placeholder"),
                              ("https://example.org/{0}", "bad placeholder"),
                              ("file:///etc/{ytid}", "only http:// and https://")):
        with pytest.raises(InputError, match=problem):
            download(segments(ytid("ok_a")), tmp_path, url_template=template, progress=False)
        csv_path = tmp_path / "s.csv"
        csv_path.write_text('abcdefghijk, 0.000, 10.000, "/m/09x0r"\n')
        assert main(["download", "--csv", str(csv_path), "--out", str(tmp_path / "o"), "--url-template",
                     template]) == 1
        assert problem in capsys.readouterr().err
    with pytest.raises(InputError, match="retries must be an integer >= 0"):
        download(segments(ytid("ok_a")), tmp_path, url_template=server, retries=-1, progress=False)


def test_a_run_that_fetches_nothing_fails(server, tmp_path, capsys):
    csv_path = tmp_path / "s.csv"
    csv_path.write_text("".join(f'{ytid(f"gone_{i}")}, 5.000, 15.000, "/m/09x0r"\n' for i in range(3)))
    assert main(["download", "--csv", str(csv_path), "--out", str(tmp_path / "o"), "--url-template", server]) == 1
    assert "none of the 3 clips could be fetched" in capsys.readouterr().err


def test_killed_run_resumes_with_every_clip_once(server, tmp_path):
    names = [ytid(f"slow_{i}") for i in range(6)]
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
        download(segments(ytid("ok_a")), tmp_path, progress=False)
    csv_path = tmp_path / "s.csv"
    csv_path.write_text('abcdefghijk, 0.000, 10.000, "/m/09x0r"\n')
    assert main(["download", "--csv", str(csv_path), "--out", str(tmp_path / "o")]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("audioscene download: error: ffmpeg is not installed")


def test_cli_reports_a_malformed_csv_line(tmp_path, capsys):
    csv_path = tmp_path / "s.csv"
    csv_path.write_text('abcdefghijk, 0.000, 10.000, "/m/09x0r"\nbroken line\n')
    assert main(["download", "--csv", str(csv_path), "--out", str(tmp_path / "o")]) == 1
    assert "s.csv:2: expected 4 columns" in capsys.readouterr().err
    assert len(read_segments(csv_path, skip_bad=True).segments) == 1


def test_an_attempts_deadline_starts_when_its_process_has_started():
    """A child that takes longer to start (a loaded machine importing yt-dlp) than the whole deadline
    still gets the deadline for its work; one that then works too long is killed."""
    from audioscene.data.download import STARTED, _run_with_deadline

    def child(startup_s: float, work_s: float) -> list[str]:
        return [sys.executable, "-c", f"import time; time.sleep({startup_s}); print({STARTED!r}, flush=True); "
                                      f"time.sleep({work_s}); print('{{\"ok\": true, \"reason\": \"\"}}')"]

    assert _run_with_deadline(child(2.5, 0.0), timeout_s=1.5) == {"ok": True, "reason": ""}
    started = time.monotonic()
    result = _run_with_deadline(child(0.0, 60.0), timeout_s=1.0)
    assert result["reason"].startswith("timed out: not finished after 1 s") and time.monotonic() - started < 30
