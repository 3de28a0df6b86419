"""An imported PANNs Cnn14 through our `Tagger` vs the authors' `panns_inference.AudioTagging`, on the
same 10 s clips at 32 kHz in one run: clips/s of each, their ratio, and the largest difference of
their clip outputs.

The Cnn14 has seeded random weights (the released file is 327 MB and this workplace has no network),
saved as PANNs saved theirs and imported with `pretrained.import_panns`, exactly as a user's
download would be. `panns_inference` reads its label CSV from `$HOME/panns_data` at import (and
fetches it when missing): the script points HOME at a temporary folder holding ours.

    python benchmarks/bench_panns.py [--clips 32] [--batch 8] [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch


def their_package(home: Path):
    (home / "panns_data").mkdir(parents=True, exist_ok=True)
    with resources.as_file(resources.files("audioscene.resources") / "class_labels_indices.csv") as labels:
        shutil.copy(labels, home / "panns_data" / "class_labels_indices.csv")
    os.environ["HOME"] = str(home)
    import panns_inference

    return panns_inference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 clips of 10 s, batch 2 (a check that it runs)")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.batch = 2, 2
    torch.set_num_threads(args.threads)
    from audioscene.infer import Tagger
    from audioscene.pretrained import import_panns

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        panns = their_package(folder / "home")
        torch.manual_seed(0)
        theirs = panns.models.Cnn14(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50,
                                    fmax=14000, classes_num=527).eval()
        torch.save({"iteration": 0, "model": theirs.state_dict()}, folder / "Cnn14.pth")  # 323 MB, as released
        import_panns(folder / "Cnn14.pth", "Cnn14", folder / "run")
        tagging = panns.AudioTagging(model=theirs, checkpoint_path=str(folder / "Cnn14.pth"), device="cpu")
        ours = Tagger.from_run(folder / "run", device="cpu", batch_size=args.batch)
        rng = np.random.default_rng(0)
        clips = (0.1 * rng.standard_normal((args.clips, 10 * 32000))).astype(np.float32)
        tagging.inference(clips[:1])  # warm-up, both
        ours.analyze(clips[0])
        start = time.perf_counter()
        expected = np.concatenate([tagging.inference(clips[i:i + args.batch])[0]
                                   for i in range(0, args.clips, args.batch)])
        their_s = time.perf_counter() - start
        start = time.perf_counter()
        got = np.stack([result.clipwise for _, result in ours.analyze_many(list(clips))])
        our_s = time.perf_counter() - start
    print(f"Cnn14 (random weights, imported), {args.clips} clips of 10 s at 32 kHz, batches of {args.batch}, "
          f"{args.threads} threads")
    print(f"  panns_inference.AudioTagging  {args.clips / their_s:6.2f} clips/s")
    print(f"  audioscene Tagger             {args.clips / our_s:6.2f} clips/s")
    print(f"  ratio (ours / theirs) {their_s / our_s:.2f}x; max |clipwise difference| "
          f"{np.abs(got - expected).max():.1e}")


if __name__ == "__main__":
    main()
