"""Files: atomic writes (a temporary file beside the target, then a rename), output path checks,
and strict reading of the text files that describe data (UTF-8, no NUL bytes, lines named)."""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import io
import os
import shutil
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from .audio import AUDIO_SUFFIXES
from .errors import OutputError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; rename it onto `path` only on success.

    A crash or exception inside the block leaves any previous `path` untouched and no partial
    file under its name. A write that fails (disk full, permissions) raises `OutputError` naming
    `path`. Temporary files left by a killed process are removed the next time `path` is written.
    """
    path = Path(path)
    remove_stale(path, ".tmp")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"{path}: could not be written ({exc.strerror or exc}); any previous version is "
                          "unchanged") from None
    finally:
        tmp.unlink(missing_ok=True)


def make_folder(path: str | os.PathLike) -> Path:
    """Create an output folder (and its parents) if needed; one that cannot be made (a file in the
    way, no permission, a read-only place) raises `OutputError` naming it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create this folder ({exc.strerror or exc})") from None
    return path


@contextlib.contextmanager
def staged_folder(out_dir: str | os.PathLike, ours: Callable[[Path], bool], what: str) -> Iterator[Path]:
    """Build a folder's new contents in a staging folder beside it (yielded) and swap it in only
    when the block succeeds (two renames; the old contents are deleted last): a failed or killed
    build leaves the earlier folder as it was, and nothing of the earlier build lingers in the new
    one. An existing non-empty `out_dir` that `ours` does not recognise as a `what` is refused (its
    files would be deleted)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: is a file; give a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not ours(out_dir):
        raise OutputError(f"{out_dir}: not empty and not a {what}; choose an empty or new folder")
    make_folder(out_dir.parent)
    for suffix in (".staging", ".old"):
        remove_stale(out_dir, suffix)
    staging = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    make_folder(staging)
    try:
        yield staging
        old = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.old")
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale(path: Path, suffix: str) -> None:
    """Delete the `.NAME.PID{suffix}` siblings of `path` (files or folders) whose writing process
    no longer runs: what a killed `atomic_open` or `pack` leaves behind."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*{suffix}"):
        pid = stale.name[len(path.name) + 2:-len(suffix)]
        if pid.isdigit() and not _running(int(pid)):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


PROTECTED_SUFFIXES = (".pt", *AUDIO_SUFFIXES)


def prepare_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Check an output file path before any work is done, and create its folder.

    Refused (`OutputError`): a path that is one of `inputs` or an existing file inside one of the
    folders among them, a folder, or names an audio file or a checkpoint (`PROTECTED_SUFFIXES`):
    writing a table there would destroy data.
    """
    path = Path(path)
    if path.suffix.lower() in PROTECTED_SUFFIXES:
        raise OutputError(f"{path}: refusing to write output over an audio file or checkpoint name "
                          f"({path.suffix}); choose another output name")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give an output file name")
    resolved = path.resolve()
    for source in map(Path, inputs):
        if resolved == source.resolve() or (source.is_dir() and path.is_file() and source.resolve() in resolved.parents):
            raise OutputError(f"{path}: is also an input{' (a file of ' + str(source) + ')' if source.is_dir() else ''}; "
                              "the output would replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create its folder ({exc.strerror or exc})") from None
    return path


def read_text(path: str | os.PathLike, error: type[Exception]) -> str:
    """The UTF-8 text of a data file (CSV, TSV). A file that is missing, not a regular file, holds
    a NUL byte or is not UTF-8 raises `error` with a message naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if b"\0" in data:
        line = data.count(b"\n", 0, data.index(b"\0")) + 1
        raise error(f"{path}:{line}: contains a NUL byte (a binary file?)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None


def csv_rows(path: str | os.PathLike, error: type[Exception], **reader_options) -> Iterator[tuple[int, int, list[str]]]:
    """`(first line, last line, cells)` of each row of a UTF-8 CSV (`read_text`'s checks). A row
    whose last line differs from its first spans lines: an unterminated quote joined them, and
    the caller decides whether its format allows that."""
    text = read_text(path, error)
    reader = csv.reader(io.StringIO(text, newline=""), **reader_options)
    first = 1
    try:
        for row in reader:
            yield first, reader.line_num, row
            first = reader.line_num + 1
    except csv.Error as exc:
        raise error(f"{path}:{first}: malformed CSV ({exc})") from None


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, read in 1 MB blocks (shards, imported checkpoints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
