"""`audioscene import-panns`: a released PANNs checkpoint (Cnn14, ...) as a run for every command."""

from __future__ import annotations

from pathlib import Path


def arguments(sub) -> None:
    from ...pretrained import PANNS_ARCHS

    p = sub.add_parser("import-panns", help="a released PANNs checkpoint (Cnn14, ...) as a run for every command",
                       description="Check a PANNs AudioSet checkpoint (from the Zenodo record 10.5281/zenodo.3987831) "
                                   "against its architecture, load it without executing anything, and write it as a "
                                   "run folder (epoch_001.pt) with its front end and the 527 AudioSet labels.",
                       epilog="example: audioscene import-panns Cnn14_mAP=0.431.pth --arch Cnn14 --out runs/cnn14")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="the released .pth file")
    p.add_argument("--arch", choices=tuple(PANNS_ARCHS), default="Cnn14", help="its architecture (default Cnn14)")
    p.add_argument("--out", type=Path, required=True, help="run folder to write (new, or without checkpoints)")
    p.set_defaults(func=run)


def run(args) -> None:
    from ...pretrained import CATALOGUE, PANNS_ARCHS, import_panns

    path = import_panns(args.checkpoint, args.arch, args.out)
    release = CATALOGUE[PANNS_ARCHS[args.arch]]
    print(f"{args.checkpoint} ({args.arch}, published mAP {release.published['mAP']:.3f}) -> {path}\n"
          f"front end: {release.frontend.sample_rate} Hz, {release.frontend.n_mels} mel bands; use it as --run "
          f"{args.out} (tag, detect, evaluate, report, predict, export-onnx, train --init {path})")
