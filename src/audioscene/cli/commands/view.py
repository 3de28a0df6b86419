"""`audioscene view`: a local web page: drop a file, see tags, activations and events."""

from __future__ import annotations

from ..arguments import (
    add_event_options,
    add_model_options,
    number,
    positive,
    positive_int,
)
from ..common import open_tagger


def arguments(sub) -> None:
    p = sub.add_parser("view", help="a local web page: drop a file, see tags, activations and events",
                       description="Serve a page (loopback only by default) where you drop or pick an audio file and "
                                   "see its log-mel spectrogram, top tags, activation curves and detected events, "
                                   "with playback and a moving cursor. Works offline.",
                       epilog="example: audioscene view --run runs/b_att --thresholds tuned.json --median tuned.json")
    p.add_argument("--port", type=number(integer=True, low=1, high=65535), default=8765, help="port (default 8765)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to this host name (e.g. the machine's DNS name when "
                        "serving on 0.0.0.0); others get 400, which stops DNS-rebinding attacks")
    p.add_argument("--top-k", type=positive_int, default=5, help="tags shown (default 5)")
    add_event_options(p)
    p.add_argument("--max-upload-mb", type=positive, default=100.0, help="largest upload accepted (default 100 MB)")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args) -> None:
    from ...viewer import ViewerConfig, serve

    config = ViewerConfig(top_k=args.top_k, thresholds=args.thresholds, median=args.median,
                          max_upload_mb=args.max_upload_mb)
    serve(open_tagger(args), config, host=args.host, port=args.port, extra_hosts=args.allow_host)
