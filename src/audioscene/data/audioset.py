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
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..labels import LabelSet, UnknownLabelError, audioset


class SegmentFileError(ValueError):
    """A malformed segment CSV; the message names the file and line."""


@dataclass(frozen=True)
class Segment:
    ytid: str
    start: float
    end: float
    mids: tuple[str, ...]

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


def _parse_row(row: list[str]) -> Segment:
    if len(row) != 4:
        raise ValueError(f"expected 4 columns (YTID, start_seconds, end_seconds, \"mids\"), got {len(row)}")
    ytid, start_text, end_text, mids_text = (cell.strip() for cell in row)
    if not ytid:
        raise ValueError("empty YTID")
    try:
        start, end = float(start_text), float(end_text)
    except ValueError:
        raise ValueError(f"start/end must be numbers, got {start_text!r}, {end_text!r}") from None
    if not 0 <= start < end:
        raise ValueError(f"need 0 <= start < end, got {start}, {end}")
    mids = tuple(m.strip() for m in mids_text.split(",") if m.strip())
    if not mids:
        raise ValueError("no labels")
    return Segment(ytid, start, end, mids)


def read_segments(path: str | os.PathLike, label_set: LabelSet | None = None, skip_bad: bool = False) -> SegmentList:
    """Parse a segment CSV. Unknown mids are counted in `unknown_mids` (not an error: the ontology
    has grown since some lists were made). A malformed line raises `SegmentFileError` naming file
    and line, or with `skip_bad` is recorded in `bad_lines` and skipped."""
    path = Path(path)
    label_set = label_set or audioset()
    if not path.is_file():
        raise SegmentFileError(f"{path}: no such file")
    result = SegmentList(path, [])
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, skipinitialspace=True)
        for row in reader:
            if not row or row[0].lstrip().startswith("#") or not "".join(row).strip():
                continue
            try:
                segment = _parse_row(row)
            except ValueError as exc:
                if not skip_bad:
                    raise SegmentFileError(f"{path}:{reader.line_num}: {exc}") from None
                result.bad_lines.append((reader.line_num, str(exc)))
                continue
            for mid in segment.mids:
                try:
                    label_set.index_of_mid(mid)
                except UnknownLabelError:
                    result.unknown_mids[mid] += 1
            result.segments.append(segment)
    return result
