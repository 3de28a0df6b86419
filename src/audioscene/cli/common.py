"""What several `audioscene` commands share: a warning line, a data flag parsed once, the tagger of
`--run`, reading many files."""

from __future__ import annotations

import sys

from .arguments import PROG


def warn(args, message: str) -> None:
    print(f"{PROG} {args.command}: {message}", file=sys.stderr)


def data_spec(text: str | None, labels: str | None, data_flag: str, labels_flag: str):
    """The data set a flag names (`--data`) with its labels CSV (`--labels`), parsed once here; None
    when the flag is not given (a labels CSV without it is refused)."""
    from ..data import DataSpec
    from ..errors import InputError

    if text is None:
        if labels:
            raise InputError(f"{labels_flag} labels the {data_flag} data; give {data_flag} too")
        return None
    return DataSpec.parse(text, labels or "")


def open_tagger(args):
    """The tagger of `--run` (repeated: an ensemble of the runs)."""
    from ..errors import InputError
    from ..infer import Tagger

    if any(run.suffix == ".onnx" for run in args.run):
        if len(args.run) > 1:
            raise InputError("an ONNX file runs alone; give run folders (or pretrained:NAME) for an ensemble")
        return Tagger.from_onnx(args.run[0], hop_s=args.hop_s, batch_size=args.batch_size)
    return Tagger.from_runs(args.run, args.checkpoint, device=args.device, weights=args.weights, hop_s=args.hop_s,
                            batch_size=args.batch_size)


def readable_analyses(args, tagger, paths, failed: list, embeddings: bool = False):
    """(name, Analysis) (with `embeddings`: `Embeddings`) of each audio input that could be read;
    the others are named on stderr and appended to `failed`."""
    for path, name, result in tagger.analyze_files(paths, classes=getattr(args, "classes", "all"), progress=True,
                                                   workers=getattr(args, "workers", 0), embeddings=embeddings):
        if isinstance(result, Exception):
            warn(args, f"skipped {result}")
            failed.append(path)
        else:
            yield name, result


def run_stream(args, tagger, blocks=None) -> int:
    """A live stream through `tagger` (`live.run_live`): lines on stdout as they are decided, the
    events also to `--output` at the end. `blocks`: the samples (default: `--stream`'s source). A
    source that fails ends in one error line after the lines so far."""
    import sys

    from .._io import prepare_output
    from ..events import Event, write_events_tsv
    from ..live import FfmpegSource, LiveStream, pcm_blocks, run_live, writer

    output = prepare_output(args.output) if getattr(args, "output", None) else None
    stream = LiveStream(tagger, args.thresholds, args.median, args.upsample, args.classes, args.onsets, args.tag_every)
    name = "standard input" if getattr(args, "stream", None) == "-" else getattr(args, "stream", None) or "input"
    if blocks is None:
        if args.stream == "-":
            blocks = pcm_blocks(sys.stdin.buffer, name, args.format, args.rate or tagger.sample_rate, args.channels,
                                tagger.sample_rate)
        else:
            blocks = FfmpegSource(args.stream, tagger.sample_rate, realtime=args.realtime).blocks()
    events, write, page, server = [], writer(args.lines), None, None
    if args.view:
        from ..live_page import LivePage, serve_in_background

        page = LivePage()
        page.watch(stream)
        url, server = serve_in_background(page, args.host, args.port, args.allow_host)
        print(f"live page of {name} on {url}", file=sys.stderr, flush=True)

    def emit(line) -> None:
        write(line)
        if page is not None:
            page.publish_line(line)
        if line.kind == "event":
            events.append(Event(name, line.onset, line.offset, line.label))

    try:
        dropped = run_live(stream, blocks, emit, realtime=getattr(args, "realtime", True), source=name)
    finally:
        if output is not None:
            write_events_tsv(output, events)
        if server is not None:
            server.should_exit = True
    print(f"{len(events)} events in {stream.stream_s:.1f} s of {name}" + (f", {dropped} windows dropped" if dropped
                                                                         else ""), file=sys.stderr)
    return 0
