"""Where fetched files live and how one is fetched: the cache folder (`home`: `$AUDIOSCENE_HOME`,
else the platform's user cache folder), a lock per name so that processes fetching the same file
leave one good copy, and `fetch`: a download that resumes a cut transfer (HTTP Range), checks the
size and SHA-256 it is given, and renames the file into place only when it is whole and checked.

URLs come from the package's own catalogue (`pretrained.CATALOGUE`), never from a data file; only
http(s) is opened. `AUDIOSCENE_OFFLINE=1` (or `audioscene --offline`) forbids every download.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

from tqdm.auto import tqdm

from ._io import make_folder
from .errors import FetchError, OutputError

log = logging.getLogger(__name__)

HOME_VARIABLE, OFFLINE_VARIABLE = "AUDIOSCENE_HOME", "AUDIOSCENE_OFFLINE"
CHUNK = 1 << 20


def home() -> Path:
    """The cache folder: `$AUDIOSCENE_HOME`, else `~/.cache/audioscene` (`$XDG_CACHE_HOME` if set) on
    Linux, `~/Library/Caches/audioscene` on macOS, `%LOCALAPPDATA%\\audioscene\\Cache` on Windows."""
    if os.environ.get(HOME_VARIABLE):
        return Path(os.environ[HOME_VARIABLE]).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "audioscene"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "audioscene" / "Cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "audioscene"


def offline() -> bool:
    return os.environ.get(OFFLINE_VARIABLE, "").lower() in ("1", "true", "yes")


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """Hold the cache's lock `name` (one process at a time; others wait for it)."""
    path = make_folder(home() / "locks") / f"{name}.lock"
    try:
        handle = open(path, "a+b")
    except OSError as exc:
        raise OutputError(f"{path}: cannot lock the cache ({exc.strerror or exc}); set {HOME_VARIABLE} to a "
                          "writable folder") from None
    with handle:
        if sys.platform == "win32":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
        else:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # the lock goes with the handle when it is closed


def fetch(url: str, target: Path, sha256: str | None = None, size: int | None = None, timeout_s: float = 60.0,
          by_hand: str = "") -> Path:
    """Download `url` to `target` through `target.part` (resumed from where a cut transfer stopped),
    check its `size` and `sha256` where given, and rename it into place. A failure raises
    `FetchError` naming the URL and `by_hand` (how to fetch and import it manually); a file that
    fails its checks is removed. Call it under `locked`."""
    if not url.startswith(("https://", "http://")):
        raise FetchError(f"{url}: only http(s) URLs are fetched")
    if offline():
        raise FetchError(f"{url}: not fetched, offline ({OFFLINE_VARIABLE} or --offline); {by_hand}")
    part = make_folder(target.parent) / f"{target.name}.part"
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "audioscene", **({"Range": f"bytes={start}-"} if start else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not start:  # 416: the part is whole already
            raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}; {by_hand}") from None
        response = None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise FetchError(f"{url}: cannot be reached ({reason}); {by_hand}") from None
    if response is not None:
        with response:
            _receive(response, part, start, url, by_hand)
    _check(part, url, sha256, size, by_hand)
    os.replace(part, target)
    return target


def _receive(response, part: Path, start: int, url: str, by_hand: str) -> None:
    """Append the response's body to `part` (or write it anew when the server sent the whole file);
    a transfer cut short leaves the part, to be resumed by the next call."""
    resumed = start and response.status == 206
    total = (start if resumed else 0) + int(response.headers.get("Content-Length") or 0)
    if start:
        log.info("%s: %s", url, f"resuming after {start:,} bytes" if resumed else "the server does not resume; "
                 "fetching it whole")
    try:
        out = open(part, "ab" if resumed else "wb")
    except OSError as exc:
        raise OutputError(f"{part}: cannot be written ({exc.strerror or exc}); set {HOME_VARIABLE} to a writable "
                          "folder") from None
    with out, tqdm(total=total or None, initial=start if resumed else 0, unit="B", unit_scale=True,
                   desc=part.name.removesuffix(".part"), disable=None) as bar:
        while True:
            try:
                block = response.read(CHUNK)
            except (OSError, TimeoutError) as exc:
                raise FetchError(f"{url}: the transfer stopped ({exc}); run the command again to resume, or "
                                 f"{by_hand}") from None
            if not block:
                break
            try:
                out.write(block)
            except OSError as exc:
                raise OutputError(f"{part}: cannot be written ({exc.strerror or exc})") from None
            bar.update(len(block))
    if total and part.stat().st_size < total:
        raise FetchError(f"{url}: the transfer stopped after {part.stat().st_size:,} of {total:,} bytes; run the "
                         f"command again to resume, or {by_hand}")


def _check(part: Path, url: str, sha256: str | None, size: int | None, by_hand: str) -> None:
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        raise FetchError(f"{url}: {got:,} bytes, expected {size:,}; the partial file was removed; {by_hand}")
    if sha256 is not None:
        digest = hashlib.sha256()
        with open(part, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                digest.update(block)
        if digest.hexdigest() != sha256:
            part.unlink()
            raise FetchError(f"{url}: SHA-256 {digest.hexdigest()[:12]}..., expected {sha256[:12]}...; the file was "
                             f"removed; {by_hand}")
