"""`audioscene embed`: clip and frame embeddings of audio files (any length), one `.npz`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..arguments import add_compute_options, add_weights_option, count, positive, positive_int
from ..common import readable_analyses


def arguments(sub) -> None:
    p = sub.add_parser("embed", help="clip and frame embeddings of audio files (any length), one .npz",
                       description="The vectors a model reads its outputs from, for every audio file: a clip "
                                   "embedding (the mean over its ~10 s windows) and frame embeddings on the model's "
                                   "frame hop, written to one .npz (files, clip, frames, offsets, times, duration, "
                                   "frame_hop; np.load reads it). Files that cannot be read are named on stderr and "
                                   "skipped (exit code 1 at the end).",
                       epilog="examples:\n  audioscene embed recordings/ --run pretrained:efficientat_mn10_as -o emb.npz\n"
                              "  audioscene embed a.wav b.wav --run runs/b_att -o emb.npz",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATHS", help="audio files or folders of them")
    p.add_argument("--run", type=Path, required=True, help="run folder or pretrained:NAME (one model)")
    p.add_argument("--checkpoint", default="best", help="best, last or a .pt path (default best)")
    add_weights_option(p)
    add_compute_options(p, batch_size=False, workers=False)
    p.add_argument("--hop-s", type=positive, help="window step in seconds (default: the window, about 10 s)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="windows per forward pass (default 8)")
    p.add_argument("--workers", type=count, default=2, help="threads decoding the next files (default 2; 0: none)")
    p.add_argument("-o", "--output", type=Path, required=True, help=".npz file to write")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..._io import prepare_output
    from ...infer import Tagger, write_embeddings

    output = prepare_output(args.output, args.paths)
    tagger = Tagger.from_run(args.run, args.checkpoint, device=args.device, weights=args.weights, hop_s=args.hop_s,
                             batch_size=args.batch_size)
    failed: list = []
    path, n = write_embeddings(output, readable_analyses(args, tagger, args.paths, failed, embeddings=True))
    print(f"embeddings of {n} file(s) -> {path} (clip [N, D], frames [F, D] every {tagger.frame_hop:g} s)")
    return 1 if failed else 0
