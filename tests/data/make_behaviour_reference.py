"""Record what a short run gives, so that a change meant to keep behaviour can be checked against it
(`tests/test_behaviour.py`): a tiny synthetic set, two epochs of `resnet_b_att` at width 4 (the
modern recipe, so mixup, SpecAugment and the weight average take part), then its clip and frame
outputs on three eval files, the events at 0.5, and the run's Table-2 scores (peak and Avg).

Run with the package of the commit to record (here 451221e, the last before issue 31's changes):

    git worktree add /tmp/before 451221e
    PYTHONPATH=/tmp/before/src python tests/data/make_behaviour_reference.py tests/data/behaviour_reference.json

It uses only the public API both versions have (`train.train`, `infer.Tagger`,
`infer.events_from_analysis`, `evaluate.evaluate_run`).
"""

import json
import sys
import tempfile
from pathlib import Path

import torch


def record(work: Path) -> dict:
    from audioscene import train as training
    from audioscene.config import TrainConfig
    from audioscene.data.synthetic import generate
    from audioscene.evaluate import evaluate_run
    from audioscene.infer import Tagger, events_from_analysis

    generate(work / "train", n_clips=48, seed=11, progress=False, workers=1)
    generate(work / "eval", n_clips=16, seed=12, progress=False, workers=1)
    run = training.train(TrainConfig(train_data=str(work / "train"), eval_data=str(work / "eval"), out_dir=str(work / "run"),
                                     model="resnet_b_att", model_args={"width": 4}, recipe="modern", epochs=2,
                                     batch_size=16, lr=1e-3, seed=3, device="cpu", amp=False), progress=False)
    tagger = Tagger.from_run(run, "last", device="cpu")
    files = sorted((work / "eval" / "audio").glob("*.flac"))[:3]
    analyses = {path.name: tagger.analyze(path) for path in files}
    scores = evaluate_run(run, work / "eval", device="cpu", progress=False)
    return {
        "clipwise": {name: a.clipwise.tolist() for name, a in analyses.items()},
        "framewise_sum": {name: float(a.framewise.sum()) for name, a in analyses.items()},
        "active_frames": int(sum((a.framewise > 0.5).sum() for a in analyses.values())),
        "events": sorted([list(e) for name, a in analyses.items() for e in events_from_analysis(a, name, 0.5)]),
        "peak_epoch": scores.peak_epoch,
        "peak": {key: float(scores.peak[key]) for key in ("mAP", "mAUC", "d_prime")},
        "avg": {key: float(scores.avg[key]) for key in ("mAP", "mAUC", "d_prime")},
    }


if __name__ == "__main__":
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        Path(sys.argv[1]).write_text(json.dumps(record(Path(folder)), indent=1) + "\n")
