"""AudioSet segment lists: the official CSVs (`balanced_train_segments.csv`, ...) as `Segment`s.

Format (Gemmeke et al. 2017)::

    # Segments csv created Sun Mar  5 10:54:25 2017
    # num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882
    # YTID, start_seconds, end_seconds, positive_labels
    --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"

Lines starting with `#` are comments; the labels are machine ids (mids) of the ontology, quoted and
comma-separated. A clip's file is named `YTID_START` (start in whole milliseconds,
`Segment.key`), as written by `audioscene download` (`data.download`), which also writes
`labels.csv` (`write_labels_csv`) so the clips train as `folder:OUT/audio`.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .._io import atomic_open, csv_rows
from ..errors import SegmentFileError
from ..labels import LabelSet, UnknownLabelError, audioset

log = logging.getLogger(__name__)


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
