"""Every error type of the package, and the one check for numeric arguments.

Every error a user can cause and fix (a bad file, data set, configuration, argument) derives from
`AudioSceneError`; its message names the file, key or argument and the problem. The CLI turns
exactly these into one line on stderr; anything else, an `OSError` from a bug included, is a bug
and keeps its traceback (a user's file that cannot be read or written is reported as one of these
where it is opened). Each module raises the specific class of its concept, defined here.
"""

from __future__ import annotations

import math
import numbers
import os


class AudioSceneError(Exception):
    """Base of the errors caused by input the user can fix."""


class InputError(AudioSceneError, ValueError):
    """An argument, array or option outside what a function accepts."""


def check_number(name: str, value, *, integer: bool = False, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False):
    """Return `value` if it is a finite number (an integer if `integer`) in the range, else raise
    `InputError` naming `name`, the value and the allowed range. `low_open` excludes `low` itself,
    `high_open` `high`.

    >>> check_number("hop_s", 0.5, low=0, low_open=True)
    0.5
    >>> check_number("top_k", 0, integer=True, low=1)
    Traceback (most recent call last):
    ...
    audioscene.errors.InputError: top_k must be an integer >= 1, got 0
    """
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise InputError(f"{name} must be {describe_range(integer, low, high, low_open, high_open)}, got {value!r}")
    return value


def describe_range(integer: bool, low, high, low_open: bool, high_open: bool = False) -> str:
    parts = ["an integer" if integer else "a finite number"]
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'and ' if low is not None else ''}{'<' if high_open else '<='} {high:g}")
    return " ".join(parts)


class ConfigError(AudioSceneError, ValueError):
    """A configuration that cannot be used (unknown key, wrong type, value out of range, device)."""


class CheckpointError(AudioSceneError, ValueError):
    """A checkpoint file or run folder that cannot be used; the message names it."""


class ExportError(AudioSceneError, ValueError):
    """The export failed, or the exported model disagrees with PyTorch beyond the tolerance."""


class UnknownLabelError(AudioSceneError, ValueError):
    """A label name or mid that the label set does not contain."""


# --- files the user gives or asks for --------------------------------------------------------------

class AudioError(AudioSceneError, ValueError):
    """A file could not be used as audio; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class EventFileError(AudioSceneError, ValueError):
    """A malformed event TSV; the message names the file and line."""


class OutputError(AudioSceneError, OSError):
    """An output file that cannot or must not be written; the message names it."""


class UploadError(AudioSceneError, ValueError):
    """An upload to the viewer that cannot be analysed; `status` is the HTTP status it answers."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# --- data sets ----------------------------------------------------------------------------------------

class DataSetError(AudioSceneError, ValueError):
    """A data set folder or label file that cannot be used; the message names the file."""


class SegmentFileError(AudioSceneError, ValueError):
    """A malformed segment CSV; the message names the file and line."""


class ShardError(AudioSceneError, ValueError):
    """A shard or index that cannot be read; the message names the shard (and member)."""


class RecordError(AudioSceneError, ValueError):
    """A TFRecord file or record that cannot be read; the message names the file and record."""


class EmbeddingError(AudioSceneError, ValueError):
    """A record of released embeddings that cannot be used; the message names file and record."""


class DownloadSetupError(AudioSceneError, ValueError):
    """A tool the download needs is missing; the message says how to install it."""


class FetchError(AudioSceneError, OSError):
    """A file of the model zoo could not be fetched or failed its checks; the message names the URL
    and how to fetch it by hand."""


class StreamError(InputError):
    """A live stream that cannot be read on (`live.py`): its source and the problem in one line."""
