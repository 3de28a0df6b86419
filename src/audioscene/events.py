"""Sound events and the file format that holds them: `Event` and DCASE TSV files.

A DCASE TSV has a header line `filename<TAB>onset<TAB>offset<TAB>event_label` and one event per
line, times in seconds; a file with no events may appear as a line with only its filename, or with
empty fields. Event lists flow from `sed` (frames → events) to `metrics.events` (scores) and to disk.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

from ._io import atomic_open, read_text
from .errors import EventFileError

TSV_HEADER = ("filename", "onset", "offset", "event_label")


class Event(NamedTuple):
    """One sound event: `label` sounds in `filename` from `onset` to `offset` seconds."""

    filename: str
    onset: float
    offset: float
    label: str


# --- DCASE TSV -----------------------------------------------------------------------------------

def read_events_tsv(path: str | os.PathLike) -> list[Event]:
    """Read a DCASE event TSV (header line required). Filename-only lines carry no event.

    Raises:
        EventFileError: missing file or header, missing columns, non-numeric or negative times,
            onset after offset; the message names the file and line number.
    """
    return [event for _, event in read_events_lines(path)]


def read_events_lines(path: str | os.PathLike) -> list[tuple[int, Event]]:
    """`read_events_tsv`, each event with its line number (for errors found later, e.g. an unknown label)."""
    path = Path(path)
    lines = read_text(path, EventFileError).splitlines()
    if not lines or tuple(lines[0].strip().split("\t")) != TSV_HEADER:
        raise EventFileError(f"{path}:1: expected the header {' '.join(TSV_HEADER)!r} (tab-separated)")
    events = []
    for line_number, line in enumerate(lines[1:], start=2):
        fields = line.rstrip("\r\n").split("\t")
        if not line.strip() or (fields[0].strip() and not any(f.strip() for f in fields[1:])):
            continue  # blank line, or a file listed without events (DCASE writes empty fields)
        where = f"{path}:{line_number}"
        if len(fields) != 4 or not all(field.strip() for field in fields):
            raise EventFileError(f"{where}: expected 4 tab-separated columns {TSV_HEADER}, got {line!r}")
        filename, onset_text, offset_text, label = (field.strip() for field in fields)
        try:
            onset, offset = float(onset_text), float(offset_text)
        except ValueError:
            raise EventFileError(f"{where}: onset/offset must be numbers, got {onset_text!r}, {offset_text!r}") from None
        if not (np.isfinite(onset) and np.isfinite(offset)):
            raise EventFileError(f"{where}: onset/offset must be finite, got {onset_text!r}, {offset_text!r}")
        if onset < 0 or offset < 0:
            raise EventFileError(f"{where}: negative time ({onset}, {offset})")
        if onset > offset:
            raise EventFileError(f"{where}: onset {onset} is after offset {offset}")
        events.append((line_number, Event(filename, onset, offset, label)))
    return events


def write_events_tsv(path: str | os.PathLike, events: Iterable[Event]) -> None:
    """Write events as a DCASE TSV (times with millisecond precision), atomically. A file name or
    label with a tab, line break or other control character cannot be stored in the format (it
    would not read back) and raises `EventFileError` naming it before anything is written."""
    events = list(events)
    for event in events:
        for text in (event.filename, event.label):
            if UNSTORABLE.search(text):
                raise EventFileError(f"{path}: cannot store {text!r} in a TSV (it contains a tab, line break or "
                                     "other control character); rename the file")
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(TSV_HEADER) + "\n")
        for event in events:
            f.write(f"{event.filename}\t{event.onset:.3f}\t{event.offset:.3f}\t{event.label}\n")


UNSTORABLE = re.compile(r"[\x00-\x1f\x7f]")
