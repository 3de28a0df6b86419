"""`audioscene detect`: sound events in audio files (any length) as a DCASE TSV, or in a stream as
it plays (`--stream`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...sed import MAX_UPSAMPLE
from ..arguments import (
    add_event_options,
    add_live_options,
    add_model_options,
    number,
    positive_int,
)
from ..common import open_tagger, readable_analyses, run_stream

STREAM_HOP_S = 1.0  # the window step when streaming, unless --hop-s says otherwise


def arguments(sub) -> None:
    p = sub.add_parser("detect", help="sound events in audio files (any length) as a DCASE TSV",
                       description="Find when each sound happens: frame scores of 10 s windows, stitched, median-"
                                   "filtered, thresholded and turned into events. Files that cannot be read are "
                                   "named on stderr and skipped (exit code 1 at the end).",
                       epilog="examples:\n  audioscene detect recordings/ --run runs/b_att -o events.tsv\n"
                              "  audioscene detect a.wav b.flac --run runs/b_att --thresholds tuned.json "
                              "--median tuned.json -o events.tsv\n"
                              "  arecord -f S16_LE -r 16000 -c 1 | audioscene detect --stream - --run runs/b_att "
                              "--realtime --onsets\n"
                              "  audioscene detect --stream rtsp://camera/audio --run pretrained:ced_mini --realtime",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", type=Path, metavar="FILES", help="audio files or folders of them")
    p.add_argument("-o", "--output", type=Path,
                   help="events TSV to write (required for files; with --stream, written at the stream's end too)")
    add_event_options(p)
    p.add_argument("--upsample", type=number(integer=True, low=1, high=MAX_UPSAMPLE),
                   help=f"interpolate the frame scores onto a grid this many times finer first, at most {MAX_UPSAMPLE} "
                        "(default: the tuning JSON's, else 1)")
    add_model_options(p)
    stream = p.add_argument_group("streams", "detect --stream SOURCE: events on stdout as the stream plays, each once "
                                             f"(window step --hop-s, default {STREAM_HOP_S:g} s when streaming)")
    stream.add_argument("--stream", metavar="SOURCE",
                        help="-: raw PCM on standard input (--format, --rate, --channels); else a file or an "
                             "HTTP/RTSP URL that ffmpeg decodes")
    stream.add_argument("--format", choices=("s16le", "f32le"), default="s16le",
                        help="raw PCM sample format on standard input (default s16le)")
    stream.add_argument("--rate", type=number(integer=True, low=1000, high=768000),
                        help="raw PCM sample rate in Hz (default: the model's); resampled to the model's")
    stream.add_argument("--channels", type=positive_int, default=1, help="raw PCM channels, mixed to mono (default 1)")
    stream.add_argument("--realtime", action="store_true",
                        help="the source plays at its own pace (a file through ffmpeg is played so): windows the "
                             "model cannot keep up with are dropped and counted rather than falling behind")
    add_live_options(stream)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..._io import prepare_output
    from ...errors import InputError
    from ...events import write_events_tsv
    from ...infer import events_from_analysis

    if args.stream is not None:
        if args.files:
            raise InputError("give audio files or --stream SOURCE, not both")
        if args.hop_s is None:
            args.hop_s = STREAM_HOP_S
        return run_stream(args, open_tagger(args))
    if not args.files or args.output is None:
        raise InputError("give audio files and -o/--output (or --stream SOURCE)")
    output = prepare_output(args.output, inputs=args.files)
    events, n_files, failed = [], 0, []
    for name, result in readable_analyses(args, open_tagger(args), args.files, failed):
        events += events_from_analysis(result, name, args.thresholds, args.median, args.upsample)
        n_files += 1
    write_events_tsv(output, events)
    print(f"{len(events)} events in {n_files} files -> {output}")
    return 1 if failed else 0
