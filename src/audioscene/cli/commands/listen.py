"""`audioscene listen`: tags and events from the sound card's input as it plays."""

from __future__ import annotations

import argparse

from ...sed import MAX_UPSAMPLE
from ..arguments import add_event_options, add_live_options, add_model_options, number
from ..common import open_tagger, run_stream
from .detect import STREAM_HOP_S


def _device(text: str) -> int | str:
    """A device index, or a name (sounddevice matches part of it)."""
    return int(text) if text.strip().isdigit() else text


def arguments(sub) -> None:
    p = sub.add_parser("listen", help="events (and tags) from a microphone as it plays",
                       description="Listen to the default (or --device) input of the sound card and print each event "
                                   "once, when it closes (with --onsets also when it opens), and with --tag-every the "
                                   "latest window's top labels. Windows of the model's clip length every --hop-s "
                                   f"(default {STREAM_HOP_S:g} s), averaged as `detect` does for a file; if the model "
                                   "cannot keep up, windows are dropped and counted. Ctrl-C closes open events and "
                                   "ends. Needs the [live] extra (sounddevice, PortAudio).",
                       epilog="examples:\n  audioscene listen --run pretrained:efficientat_mn10_as --onsets\n"
                              "  audioscene listen --run runs/b_att --device 2 --thresholds tuned.json --median "
                              "tuned.json --tag-every 5\n  audioscene listen --list-devices",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list-devices", action="store_true", help="print the sound card's devices and exit")
    p.add_argument("--device", dest="input_device", type=_device, metavar="N",
                   help="input device index or (part of) its name (default: the system's default input; the model "
                        "runs on --compute-device)")
    add_event_options(p)
    p.add_argument("--upsample", type=number(integer=True, low=1, high=MAX_UPSAMPLE),
                   help=f"interpolate the frame scores onto a grid this many times finer first, at most {MAX_UPSAMPLE} "
                        "(default: the tuning JSON's, else 1)")
    add_live_options(p)
    add_model_options(p, device_flag="--compute-device", run_required=False)  # --run: not to list the devices
    p.set_defaults(func=run)


def run(args) -> int:
    from ...errors import InputError
    from ...live import list_devices, microphone_blocks

    if args.list_devices:
        print(list_devices())
        return 0
    if not args.run:
        raise InputError("give --run RUN (or --list-devices)")
    if args.hop_s is None:
        args.hop_s = STREAM_HOP_S
    tagger = open_tagger(args)
    args.realtime = True
    args.stream = f"input device {args.input_device if args.input_device is not None else '(default)'}"
    return run_stream(args, tagger, microphone_blocks(args.input_device, tagger.sample_rate))
