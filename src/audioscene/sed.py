"""Sound event detection: events and their DCASE TSV form (SPEC §6).

A DCASE TSV file has a header line `filename<TAB>onset<TAB>offset<TAB>event_label` and one event
per line, times in seconds. A file with no events may appear as a line with only its filename.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, NamedTuple

from ._io import atomic_open

TSV_HEADER = ("filename", "onset", "offset", "event_label")


class Event(NamedTuple):
    """One sound event: `label` sounds in `filename` from `onset` to `offset` seconds."""

    filename: str
    onset: float
    offset: float
    label: str


class EventFileError(ValueError):
    """A malformed event TSV; the message names the file and line."""


def read_events_tsv(path: str | os.PathLike) -> list[Event]:
    """Read a DCASE event TSV (header line required). Filename-only lines carry no event.

    Raises:
        EventFileError: missing file or header, missing columns, non-numeric or negative times,
            onset after offset; the message names the file and line number.
    """
    path = Path(path)
    if not path.is_file():
        raise EventFileError(f"{path}: no such file")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].strip().split("\t")) != TSV_HEADER:
        raise EventFileError(f"{path}:1: expected the header {' '.join(TSV_HEADER)!r} (tab-separated)")
    events = []
    for line_number, line in enumerate(lines[1:], start=2):
        fields = line.rstrip("\r\n").split("\t")
        if not line.strip() or (len(fields) == 1 and fields[0].strip()):
            continue  # blank line, or a file listed without events
        where = f"{path}:{line_number}"
        if len(fields) != 4 or not all(field.strip() for field in fields):
            raise EventFileError(f"{where}: expected 4 tab-separated columns {TSV_HEADER}, got {line!r}")
        filename, onset_text, offset_text, label = (field.strip() for field in fields)
        try:
            onset, offset = float(onset_text), float(offset_text)
        except ValueError:
            raise EventFileError(f"{where}: onset/offset must be numbers, got {onset_text!r}, {offset_text!r}") from None
        if onset < 0 or offset < 0:
            raise EventFileError(f"{where}: negative time ({onset}, {offset})")
        if onset > offset:
            raise EventFileError(f"{where}: onset {onset} is after offset {offset}")
        events.append(Event(filename, onset, offset, label))
    return events


def write_events_tsv(path: str | os.PathLike, events: Iterable[Event]) -> None:
    """Write events as a DCASE TSV (times with millisecond precision), atomically."""
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(TSV_HEADER) + "\n")
        for event in events:
            f.write(f"{event.filename}\t{event.onset:.3f}\t{event.offset:.3f}\t{event.label}\n")
