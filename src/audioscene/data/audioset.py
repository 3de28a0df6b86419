"""AudioSet segment lists: the official CSVs (`balanced_train_segments.csv`, ...) as `Segment`s.

Format (Gemmeke et al. 2017)::

    # Segments csv created Sun Mar  5 10:54:25 2017
    # num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882
    # YTID, start_seconds, end_seconds, positive_labels
    --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"

Lines starting with `#` are comments; the labels are machine ids (mids) of the ontology, quoted and
comma-separated. A clip's file is named `YTID_START` (start in whole milliseconds,
`Segment.key`), as written by `audioscene download`.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .._io import atomic_open, csv_rows
from ..audio import SAMPLE_RATE
from ..errors import AudioSceneError, InputError, check_number
from ..labels import LabelSet, UnknownLabelError, audioset

log = logging.getLogger(__name__)


class SegmentFileError(AudioSceneError, ValueError):
    """A malformed segment CSV; the message names the file and line."""


@dataclass(frozen=True)
class Segment:
    ytid: str
    start: float
    end: float
    mids: tuple[str, ...]

    def __post_init__(self):
        if not isinstance(self.ytid, str) or not YTID.match(self.ytid):  # the id becomes a file name
            raise SegmentFileError(f"YTID {self.ytid!r} is not a YouTube id (11 characters of A-Z, a-z, 0-9, _ and -)")

    @property
    def key(self) -> str:
        """File stem of the clip: `YTID_START` with the start in milliseconds (e.g. `abc_30000`)."""
        return f"{self.ytid}_{int(round(self.start * 1000))}"


@dataclass
class SegmentList:
    """Segments of a CSV, the unknown mids seen (count per mid) and the lines skipped with `skip_bad`."""

    path: Path
    segments: list[Segment]
    unknown_mids: Counter = field(default_factory=Counter)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)

    def labels(self, segment: Segment, label_set: LabelSet | None = None) -> tuple[str, ...]:
        """Display names of a segment's known mids."""
        label_set = label_set or audioset()
        return tuple(label_set.names[label_set.index_of_mid(m)] for m in segment.mids if m not in self.unknown_mids)

    def report(self) -> str:
        lines = [f"{self.path}: {len(self.segments)} segments"]
        if self.unknown_mids:
            top = ", ".join(f"{mid} ×{n}" for mid, n in self.unknown_mids.most_common(5))
            lines.append(f"  {sum(self.unknown_mids.values())} labels with {len(self.unknown_mids)} unknown mids "
                         f"ignored: {top}")
        if self.bad_lines:
            lines.append(f"  {len(self.bad_lines)} malformed lines skipped, e.g. line {self.bad_lines[0][0]}: "
                         f"{self.bad_lines[0][1]}")
        return "\n".join(lines)


YTID = re.compile(r"^[A-Za-z0-9_-]{11}$")  # YouTube video ids; anything else could be a path


def _parse_row(row: list[str]) -> Segment:
    if len(row) != 4:
        raise ValueError(f"expected 4 columns (YTID, start_seconds, end_seconds, \"mids\"), got {len(row)}")
    ytid, start_text, end_text, mids_text = (cell.strip() for cell in row)
    try:
        start, end = float(start_text), float(end_text)
    except ValueError:
        raise ValueError(f"start/end must be numbers, got {start_text!r}, {end_text!r}") from None
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
        raise ValueError(f"need finite 0 <= start < end, got {start_text!r}, {end_text!r}")
    mids = tuple(m.strip() for m in mids_text.split(",") if m.strip())
    if not mids:
        raise ValueError("no labels")
    return Segment(ytid, start, end, mids)


def read_segments(path: str | os.PathLike, label_set: LabelSet | None = None, skip_bad: bool = False) -> SegmentList:
    """Parse a segment CSV. Unknown mids are counted in `unknown_mids` (not an error: the ontology
    has grown since some lists were made). A malformed line (also: a YTID that is not YouTube-shaped,
    a quote left open, bad encoding) raises `SegmentFileError` naming file and line, or with
    `skip_bad` is recorded in `bad_lines` and skipped."""
    path = Path(path)
    label_set = label_set or audioset()
    result = SegmentList(path, [])
    for first, last, row in csv_rows(path, SegmentFileError, skipinitialspace=True):
        if not row or row[0].lstrip().startswith("#") or not "".join(row).strip():
            continue
        try:
            if last != first:
                raise ValueError(f"a quote opened on this line is not closed before line {last}")
            segment = _parse_row(row)
        except ValueError as exc:
            if not skip_bad:
                raise SegmentFileError(f"{path}:{first}: {exc}") from None
            result.bad_lines.append((first, str(exc)))
            continue
        for mid in segment.mids:
            try:
                label_set.index_of_mid(mid)
            except UnknownLabelError:
                result.unknown_mids[mid] += 1
        result.segments.append(segment)
    return result


# --- download -------------------------------------------------------------------------------------

DEFAULT_URL_TEMPLATE = "https://www.youtube.com/watch?v={ytid}"
# yt-dlp messages that no retry will change
PERMANENT_ERRORS = ("HTTP Error 404", "HTTP Error 403", "HTTP Error 410", "Video unavailable", "Private video",
                    "has been removed", "is not available", "account associated", "copyright", "confirm your age",
                    "Unsupported URL")
FAILURES_HEADER = ("key", "ytid", "start", "end", "attempts", "kind", "reason")  # kind: permanent | transient
MAX_RETRY_AFTER_S = 600.0  # the longest Retry-After honoured
DEFAULT_CLIP_TIMEOUT_S = 300.0


class DownloadSetupError(AudioSceneError, ValueError):
    """A tool the download needs is missing; the message says how to install it."""


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
    short by a crash is ignored; files from before the `kind` column count as permanent)."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {row["key"]: row["reason"] for row in csv.DictReader(f)
                if row.get("reason") and row.get("kind", "permanent") == "permanent"}


def _upgrade_failures_file(path: Path) -> None:
    """Rewrite a failures.csv from before the `kind` column in today's format (all permanent)."""
    if not path.is_file():
        return
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) == FAILURES_HEADER:
            return
        rows = [row for row in reader if row.get("reason")]
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, FAILURES_HEADER, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**row, "kind": "permanent"} for row in rows)


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
    """Entry point of the child process: arguments as JSON in argv[1], result as JSON on stdout."""
    args = json.loads(sys.argv[1])
    print(json.dumps(_attempt(args["url"], args["start"], args["end"], Path(args["scratch"]),
                              args["socket_timeout_s"])))


def _fetch(segment: Segment, audio_dir: Path, work_dir: Path, url_template: str, retries: int,
           backoff_s: float, clip_timeout_s: float) -> tuple[bool, int, str, bool]:
    """Fetch one segment as 16 kHz mono FLAC: (ok, attempts, reason, permanent).

    Each attempt runs in a child process with a deadline of `clip_timeout_s`: a server that
    trickles bytes defeats every per-read timeout, so the whole attempt is killed (with its
    ffmpeg) when time is up, and counts as a transient failure. Work happens in a private folder;
    only a finished file is renamed into `audio_dir`. A `Retry-After` header sets the next delay.
    """
    url = url_template.format(ytid=segment.ytid, start=segment.start, end=segment.end)
    reason = ""
    for attempt in range(1, retries + 2):
        scratch = Path(tempfile.mkdtemp(prefix=f"{segment.key}.", dir=work_dir))
        try:
            args = json.dumps({"url": url, "start": segment.start, "end": segment.end, "scratch": str(scratch),
                               "socket_timeout_s": min(30.0, clip_timeout_s)})
            result = _run_with_deadline([sys.executable, "-c", "from audioscene.data.audioset import _attempt_main; "
                                         "_attempt_main()", args], clip_timeout_s)
            if result["ok"]:
                os.replace(scratch / "clip.flac", audio_dir / f"{segment.key}.flac")
                return True, attempt, "", False
            reason = result["reason"]
            if any(marker in reason for marker in PERMANENT_ERRORS):
                return False, attempt, reason, True
            if attempt <= retries:
                delay = backoff_s * 2 ** (attempt - 1)
                if result.get("retry_after") is not None:
                    delay = min(max(delay, result["retry_after"]), MAX_RETRY_AFTER_S)
                time.sleep(delay)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return False, retries + 1, f"gave up after {retries + 1} attempts: {reason}", False


def _run_with_deadline(command: list[str], timeout_s: float) -> dict:
    """Run an attempt's child process; kill it and everything it started when `timeout_s` passes."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return {"ok": False, "reason": f"timed out: not finished after {timeout_s:g} s (a slow or stalled server)"}
    try:
        return json.loads(out.decode().strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"ok": False, "reason": "the fetch process failed: " + " ".join(err.decode(errors="replace").split())[-300:]}


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

    check_number("jobs", jobs, integer=True, low=1)
    check_number("retries", retries, integer=True, low=0)
    check_number("backoff_s", backoff_s, low=0)
    check_number("clip_timeout_s", clip_timeout_s, low=0, low_open=True)
    check_url_template(url_template)
    _check_tools()
    out_dir = Path(out_dir)
    audio_dir, work_dir = out_dir / "audio", out_dir / ".partial"
    audio_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(exist_ok=True)
    unique = list({s.key: s for s in segments}.values())
    failures_path = out_dir / "failures.csv"
    earlier_failures = {} if retry_failed else _read_failures(failures_path)
    done = {p.stem for p in audio_dir.glob("*.flac")}
    todo = [s for s in unique if s.key not in done and s.key not in earlier_failures]
    log.info("%d segments: %d already fetched, %d failed before, %d to fetch", len(unique),
             len(done & {s.key for s in unique}), len(earlier_failures), len(todo))
    new_failures: list[tuple[str, str]] = []
    fetched_now = 0
    if not retry_failed:
        _upgrade_failures_file(failures_path)
    write_header = not failures_path.is_file() or retry_failed
    with open(failures_path, "w" if retry_failed else "a", newline="", encoding="utf-8") as failures_file, \
            ThreadPoolExecutor(max(1, jobs)) as pool:
        writer = csv.writer(failures_file)
        if write_header:
            writer.writerow(FAILURES_HEADER)
        futures = {pool.submit(_fetch, s, audio_dir, work_dir, url_template, retries, backoff_s, clip_timeout_s): s
                   for s in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc="download", unit="clip",
                           disable=not progress):
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


def write_labels_csv(segments: SegmentList, chosen: Sequence[Segment], out_dir: str | os.PathLike) -> Path:
    """`out_dir/labels.csv` (`filename,labels`, labels `;`-separated display names) for the `chosen`
    segments whose clip is in `out_dir/audio/`, so the download trains as `folder:out_dir/audio`.
    Written atomically; returns its path."""
    out_dir = Path(out_dir)
    present = {p.stem for p in (out_dir / "audio").glob("*.flac")}
    path = out_dir / "labels.csv"
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("filename", "labels"))
        writer.writerows((f"{s.key}.flac", ";".join(segments.labels(s))) for s in chosen if s.key in present)
    return path
