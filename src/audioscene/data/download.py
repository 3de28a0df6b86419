"""Fetching AudioSet clips (`audioscene download`): the [start, end] section of each `Segment` as
16 kHz mono FLAC, with yt-dlp and ffmpeg, resumable, with retries and a record of failures.

Each attempt at a clip runs in a child process with a deadline, so a stalled download is killed
and retried; URLs come from a template formatted with the segment's (validated) YTID, and only
http(s) URLs are fetched.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import shutil
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .._io import make_folder
from ..audio import SAMPLE_RATE
from ..errors import DataSetError, DownloadSetupError, InputError, check_number
from .audioset import Segment

log = logging.getLogger(__name__)

DEFAULT_URL_TEMPLATE = "https://www.youtube.com/watch?v={ytid}"
# yt-dlp messages that no retry will change
PERMANENT_ERRORS = ("HTTP Error 404", "HTTP Error 403", "HTTP Error 410", "Video unavailable", "Private video",
                    "has been removed", "is not available", "account associated", "copyright", "confirm your age",
                    "Unsupported URL")
FAILURES_HEADER = ("key", "ytid", "start", "end", "attempts", "kind", "reason")  # kind: permanent | transient
MAX_RETRY_AFTER_S = 600.0  # the longest Retry-After honoured
DEFAULT_CLIP_TIMEOUT_S = 300.0
STARTUP_LIMIT_S = 120.0  # an attempt's child process must load within this (before its deadline starts)
STARTED = "started"


@dataclass
class DownloadReport:
    """What a download run achieved, over all the segments requested (including earlier runs)."""

    requested: int
    fetched: int  # clips present in the output folder now
    fetched_now: int
    failed: list[tuple[str, str]]  # (key, reason) of clips that could not be fetched

    @property
    def lost_percent(self) -> float:
        return 100.0 * (self.requested - self.fetched) / max(self.requested, 1)

    def text(self) -> str:
        return (f"requested {self.requested}, fetched {self.fetched} ({self.fetched_now} in this run), "
                f"lost {self.requested - self.fetched} = {self.lost_percent:.1f}% (the paper lost 5.3% of its "
                f"training clips)")


class _Quiet:
    """A yt-dlp logger that keeps its output off the console (errors come back as exceptions)."""

    def debug(self, message):
        pass

    info = warning = error = debug


def _check_tools() -> None:
    if shutil.which("ffmpeg") is None:
        raise DownloadSetupError("ffmpeg is not installed (not on PATH); install it: `sudo apt-get install ffmpeg` "
                                 "(Debian/Ubuntu), `brew install ffmpeg` (macOS) or `conda install -c conda-forge ffmpeg`")
    if importlib.util.find_spec("yt_dlp") is None:
        raise DownloadSetupError("yt-dlp is not installed: pip install 'audioscene[download]'")


def _read_failures(path: Path) -> dict[str, str]:
    """key → reason of earlier permanent failures (transient ones are tried again; a line cut
    short by a crash is ignored)."""
    if not path.is_file():
        return {}
    _check_failures_file(path)
    with open(path, newline="", encoding="utf-8") as f:
        return {row["key"]: row["reason"] for row in csv.DictReader(f)
                if row.get("reason") and row.get("kind") == "permanent"}


def _check_failures_file(path: Path) -> None:
    """Refuse a failures.csv this version did not write (its rows would be misread)."""
    if not path.is_file():
        return
    with open(path, newline="", encoding="utf-8") as f:
        header = tuple(next(csv.reader(f), ()))
    if header and header != FAILURES_HEADER:  # empty: a run killed before its first failure was written
        raise DataSetError(f"{path}: not a failures list of this version (header {','.join(header)!r}, expected "
                           f"{','.join(FAILURES_HEADER)!r}); delete it to try every clip again")


def check_url_template(url_template: str) -> str:
    """`url_template` if it formats with `{ytid}`, `{start}`, `{end}` into an http(s) URL."""
    try:
        url = url_template.format(ytid="abcdefghijk", start=0.0, end=10.0)
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(f"url template {url_template!r}: bad placeholder ({type(exc).__name__}: {exc}); "
                         "use {ytid}, {start} and {end}") from None
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise InputError(f"url template {url_template!r}: only http:// and https:// sources are fetched")
    return url_template


def _attempt(url: str, start: float, end: float, scratch: Path, socket_timeout_s: float) -> dict:
    """One try at one segment, in a child process (see `_fetch`): yt-dlp fetches the [start, end]
    section and ffmpeg converts it to `scratch/clip.flac`. Returns `{"ok", "reason", "retry_after"}`."""
    import yt_dlp
    from yt_dlp.utils import download_range_func

    options = {"format": "bestaudio/best", "outtmpl": str(scratch / "source.%(ext)s"), "quiet": True,
               "noprogress": True, "logger": _Quiet(), "retries": 0, "socket_timeout": socket_timeout_s,
               "download_ranges": download_range_func(None, [(start, end)]), "force_keyframes_at_cuts": True}
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            ydl.extract_info(url, download=True)
        source = next(p for p in scratch.iterdir() if p.name.startswith("source.") and not p.name.endswith(".part"))
        # the source is a local file: ffmpeg may open nothing else
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-protocol_whitelist", "file", "-y", "-i",
                        str(source), "-t", f"{end - start:.3f}", "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "flac",
                        str(scratch / "clip.flac")], check=True, capture_output=True, timeout=300)
        return {"ok": True, "reason": "", "retry_after": None}
    except (yt_dlp.utils.DownloadError, subprocess.CalledProcessError, subprocess.TimeoutExpired,
            StopIteration, OSError) as exc:
        stderr = getattr(exc, "stderr", b"") or b""
        reason = " ".join((str(exc) + " " + stderr.decode(errors="replace")).split())[:300] or type(exc).__name__
        return {"ok": False, "reason": reason, "retry_after": _retry_after(exc)}


def _retry_after(exc: BaseException) -> float | None:
    """Seconds from a `Retry-After: N` header of the HTTP error behind a yt-dlp error, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        response = getattr(exc, "response", None)
        value = response.headers.get("Retry-After") if response is not None and hasattr(response, "headers") else None
        if value is not None:
            try:
                return max(float(value), 0.0)
            except ValueError:
                return None  # an HTTP date: fall back to the backoff
        exc = getattr(exc, "exc_info", (None, None))[1] or exc.__cause__ or exc.__context__
    return None


def _attempt_main() -> None:
    """Entry point of the child process: arguments as JSON in argv[1]; a line `started` on stdout
    once the interpreter and yt-dlp are loaded (the attempt's deadline counts from there), then the
    result as JSON."""
    import yt_dlp  # noqa: F401  (loaded before the deadline starts)

    print(STARTED, flush=True)
    args = json.loads(sys.argv[1])
    print(json.dumps(_attempt(args["url"], args["start"], args["end"], Path(args["scratch"]),
                              args["socket_timeout_s"])))


def _fetch(segment: Segment, audio_dir: Path, work_dir: Path, url_template: str, retries: int,
           backoff_s: float, clip_timeout_s: float, on_wait: Callable[[str], None] = log.info
           ) -> tuple[bool, int, str, bool]:
    """Fetch one segment as 16 kHz mono FLAC: (ok, attempts, reason, permanent).

    Each attempt runs in a child process with a deadline of `clip_timeout_s`: a server that
    trickles bytes defeats every per-read timeout, so the whole attempt is killed (with its
    ffmpeg) when time is up, and counts as a transient failure. Work happens in a private folder;
    only a finished file is renamed into `audio_dir`. A `Retry-After` header sets the next delay;
    each wait is told to `on_wait` first (host, seconds, the attempt that follows, why), so a long
    one is never silent.
    """
    url = url_template.format(ytid=segment.ytid, start=segment.start, end=segment.end)
    reason = ""
    for attempt in range(1, retries + 2):
        scratch = Path(tempfile.mkdtemp(prefix=f"{segment.key}.", dir=work_dir))
        try:
            args = json.dumps({"url": url, "start": segment.start, "end": segment.end, "scratch": str(scratch),
                               "socket_timeout_s": min(30.0, clip_timeout_s)})
            result = _run_with_deadline([sys.executable, "-c", "from audioscene.data.download import _attempt_main; "
                                         "_attempt_main()", args], clip_timeout_s)
            if result["ok"]:
                os.replace(scratch / "clip.flac", audio_dir / f"{segment.key}.flac")
                return True, attempt, "", False
            reason = result["reason"]
            if any(marker in reason for marker in PERMANENT_ERRORS):
                return False, attempt, reason, True
            if attempt <= retries:
                delay, retry_after = backoff_s * 2 ** (attempt - 1), result.get("retry_after")
                if retry_after is not None:
                    delay = min(max(delay, retry_after), MAX_RETRY_AFTER_S)
                on_wait(f"{urllib.parse.urlsplit(url).hostname}: waiting {delay:g} s before attempt {attempt + 1} "
                        f"of {retries + 1} for {segment.key}"
                        + (f" (the server asked for {retry_after:g} s)" if retry_after is not None else "")
                        + f": {reason[:120]}")
                time.sleep(delay)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return False, retries + 1, f"gave up after {retries + 1} attempts: {reason}", False


def _run_with_deadline(command: list[str], timeout_s: float) -> dict:
    """Run an attempt's child process; kill it and everything it started when `timeout_s` passes
    after it reports `started` (its interpreter's start-up, slow on a loaded machine, is not the
    server's time; it has `STARTUP_LIMIT_S` of its own)."""
    # unbuffered: the `started` line is read byte by byte, so no later output is held back in a buffer
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                               bufsize=0)
    ready, _, _ = select.select([process.stdout], [], [], STARTUP_LIMIT_S)
    first = process.stdout.readline().decode().strip() if ready else ""
    try:
        out, err = process.communicate(timeout=timeout_s if first == STARTED else 0.1)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        if first != STARTED:
            return {"ok": False, "reason": f"the fetch process did not start within {STARTUP_LIMIT_S:g} s"}
        return {"ok": False, "reason": f"timed out: not finished after {timeout_s:g} s (a slow or stalled server)"}
    try:
        return json.loads(out.decode().strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"ok": False, "reason": "the fetch process failed: " + " ".join(err.decode(errors="replace").split())[-300:]}


def _check_settings(jobs: int, retries: int, backoff_s: float, clip_timeout_s: float, url_template: str) -> None:
    """Each setting of `download` in its range, the URL template usable and the tools there, before any work."""
    check_number("jobs", jobs, integer=True, low=1)
    check_number("retries", retries, integer=True, low=0)
    check_number("backoff_s", backoff_s, low=0)
    check_number("clip_timeout_s", clip_timeout_s, low=0, low_open=True)
    check_url_template(url_template)
    _check_tools()


def download(segments: list[Segment], out_dir: str | os.PathLike, jobs: int = 8,
             url_template: str = DEFAULT_URL_TEMPLATE, retries: int = 3, backoff_s: float = 2.0,
             retry_failed: bool = False, progress: bool = True,
             clip_timeout_s: float = DEFAULT_CLIP_TIMEOUT_S) -> DownloadReport:
    """Fetch the [start, end] section of each segment with yt-dlp + ffmpeg into
    `out_dir/audio/KEY.flac` (16 kHz mono), `jobs` at a time.

    Resumable: clips already there are skipped, and earlier permanent failures (listed in
    `out_dir/failures.csv` with their reason) too unless `retry_failed`; clips that failed
    transiently are tried again. Transient errors are retried `retries` times with exponential
    backoff from `backoff_s` (or the server's `Retry-After`); an attempt that takes longer than
    `clip_timeout_s` is killed. `url_template` is formatted with `ytid`, `start` and `end` (default:
    the YouTube watch URL; http and https only).
    """
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    _check_settings(jobs, retries, backoff_s, clip_timeout_s, url_template)
    out_dir = Path(out_dir)
    audio_dir, work_dir = make_folder(out_dir / "audio"), make_folder(out_dir / ".partial")
    unique = list({s.key: s for s in segments}.values())
    failures_path = out_dir / "failures.csv"
    earlier_failures = {} if retry_failed else _read_failures(failures_path)
    done = {p.stem for p in audio_dir.glob("*.flac")}
    todo = [s for s in unique if s.key not in done and s.key not in earlier_failures]
    log.info("%d segments: %d already fetched, %d failed before, %d to fetch", len(unique),
             len(done & {s.key for s in unique}), len(earlier_failures), len(todo))
    new_failures: list[tuple[str, str]] = []
    fetched_now = 0
    write_header = not failures_path.is_file() or failures_path.stat().st_size == 0 or retry_failed
    bar = tqdm(total=len(todo), desc="download", unit="clip", disable=not progress)

    def on_wait(note: str) -> None:  # in the log, and beside the bar until the next clip lands
        log.info(note)
        bar.set_postfix_str(note.split(" for ")[0], refresh=True)

    with open(failures_path, "w" if retry_failed else "a", newline="", encoding="utf-8") as failures_file, \
            ThreadPoolExecutor(max(1, jobs)) as pool, logging_redirect_tqdm(), bar:
        writer = csv.writer(failures_file)
        if write_header:
            writer.writerow(FAILURES_HEADER)
        futures = {pool.submit(_fetch, s, audio_dir, work_dir, url_template, retries, backoff_s, clip_timeout_s,
                               on_wait): s for s in todo}
        for future in as_completed(futures):
            bar.update()
            bar.set_postfix_str("", refresh=False)
            segment = futures[future]
            ok, attempts, reason, permanent = future.result()
            if ok:
                fetched_now += 1
                continue
            new_failures.append((segment.key, reason))
            writer.writerow((segment.key, segment.ytid, segment.start, segment.end, attempts,
                             "permanent" if permanent else "transient", reason))
            failures_file.flush()  # a killed run keeps every failure already known
    present = {p.stem for p in audio_dir.glob("*.flac")}
    keys = {s.key for s in unique}
    failed = [(k, r) for k, r in earlier_failures.items() if k in keys and k not in present] + new_failures
    return DownloadReport(len(unique), len(present & keys), fetched_now, failed)
