"""The package's error types and the one check for numeric arguments.

Every error a user can cause and fix (a bad file, data set, configuration, argument) derives from
`AudioSceneError`; its message names the file, key or argument and the problem. The CLI turns
exactly these (and `OSError` from the user's own files) into one line on stderr; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import math
import numbers


class AudioSceneError(Exception):
    """Base of the errors caused by input the user can fix."""


class InputError(AudioSceneError, ValueError):
    """An argument, array or option outside what a function accepts."""


def check_number(name: str, value, *, integer: bool = False, low: float | None = None, high: float | None = None,
                 low_open: bool = False):
    """Return `value` if it is a finite number (an integer if `integer`) in the range, else raise
    `InputError` naming `name`, the value and the allowed range. `low_open` excludes `low` itself.

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
        ok = value <= high
    if not ok:
        raise InputError(f"{name} must be {describe_range(integer, low, high, low_open)}, got {value!r}")
    return value


def describe_range(integer: bool, low, high, low_open: bool) -> str:
    parts = ["an integer" if integer else "a finite number"]
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'and ' if low is not None else ''}<= {high:g}")
    return " ".join(parts)


class ConfigError(AudioSceneError, ValueError):
    """A configuration that cannot be used (unknown key, wrong type, value out of range, device)."""
