"""`audioscene download`: fetch AudioSet clips (yt-dlp + ffmpeg), resumable, with a shrinkage report."""

from __future__ import annotations

import sys
from pathlib import Path

from ..arguments import (
    count,
    number,
    positive,
    positive_int,
)
from ..common import warn


def arguments(sub) -> None:
    p = sub.add_parser("download", help="fetch AudioSet clips (yt-dlp + ffmpeg), resumable, with a shrinkage report",
                       description="Fetch the [start, end] section of each segment of an AudioSet CSV as 16 kHz mono "
                                   "FLAC (OUT/audio/YTID_STARTMS.flac). Re-running resumes: fetched clips and "
                                   "permanent failures (OUT/failures.csv) are skipped. Writes OUT/labels.csv.",
                       epilog="example: audioscene download --csv balanced_train_segments.csv --out data/audioset/"
                              "balanced --jobs 8")
    p.add_argument("--csv", type=Path, required=True, help="AudioSet segment CSV (# YTID, start, end, labels)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--jobs", type=positive_int, default=8, help="parallel downloads (default 8)")
    p.add_argument("--retries", type=count, default=3, help="retries of a transient failure (default 3)")
    p.add_argument("--backoff", type=number(low=0), default=2.0, help="first retry delay in seconds, doubled each time (default 2)")
    p.add_argument("--url-template", default="https://www.youtube.com/watch?v={ytid}",
                   help="source URL with {ytid} (and {start}, {end}); default the YouTube watch URL")
    p.add_argument("--clip-timeout", type=positive, default=300.0,
                   help="seconds one attempt at one clip may take before it is killed and retried (default 300)")
    p.add_argument("--retry-failed", action="store_true", help="try the clips in failures.csv again")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed CSV lines (counted) instead of stopping")
    p.add_argument("--limit", type=positive_int, help="only the first N segments")
    p.set_defaults(func=run)


def run(args) -> int:
    from ...data.audioset import read_segments, write_labels_csv
    from ...data.download import check_url_template, download

    check_url_template(args.url_template)
    segments = read_segments(args.csv, skip_bad=args.skip_bad)
    print(segments.report(), file=sys.stderr)
    chosen = segments.segments[:args.limit] if args.limit else segments.segments
    report = download(chosen, args.out, jobs=args.jobs, url_template=args.url_template, retries=args.retries,
                      backoff_s=args.backoff, retry_failed=args.retry_failed, clip_timeout_s=args.clip_timeout)
    labels_csv = write_labels_csv(segments, chosen, args.out)
    print(report.text())
    if report.failed:
        print(f"failures and their reasons: {args.out / 'failures.csv'}")
    if report.requested and not report.fetched:
        warn(args, f"error: none of the {report.requested} clips could be fetched (see {args.out / 'failures.csv'})")
        return 1
    print(f"train on it: --data folder:{args.out / 'audio'} --labels {labels_csv}")
    return 0
