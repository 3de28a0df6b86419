"""`audioscene train`: train a Table-1 model or an embedding baseline (a checkpoint every epoch, resumable)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...distributed import launch_rank
from ..arguments import (
    add_config_flags,
)


def arguments(sub) -> None:
    from ...config import TrainConfig

    p = sub.add_parser("train", help="train a Table-1 model or an embedding baseline (checkpoint every epoch, "
                                     "resumable)",
                       description="Train a model on a data folder (weak.csv + audio/), evaluating after every epoch.",
                       epilog="examples:\n  audioscene train --train-data data/train --eval-data data/eval --model resnet_b_att "
                              "--model-arg width=16 --epochs 5 --out runs/b_att\n  audioscene train --config run.toml --seed 3\n"
                              "  audioscene train --resume runs/b_att --epochs 10\n"
                              "  torchrun --nproc-per-node 4 -m audioscene train --data shards:shards/train "
                              "--eval-data data/eval --batch-size 128 --out runs/ddp\n"
                              "  audioscene train --data folder:my_clips --labels my_clips/labels.csv --eval-data "
                              "folder:my_eval --init runs/b_att/epoch_050.pt --epochs 5 --out runs/mine\n"
                              "  audioscene train --data embeddings:audioset_v1_embeddings/bal_train --eval-data "
                              "embeddings:audioset_v1_embeddings/eval --model yu_multilevel_att --lr 1e-3 "
                              "--batch-size 500 --sampler balanced --out runs/yu",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="TOML file with TrainConfig keys; flags override it")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint")
    add_config_flags(p, TrainConfig)
    p.set_defaults(func=run)


def run(args) -> None:
    from ...config import TrainConfig
    from ...train import configure, resume, train
    from ..arguments import config_values

    overrides = config_values(args, TrainConfig)
    if args.resume:
        run_dir = resume(args.resume, **overrides)
    else:
        config, init = configure(overrides, args.config)
        run_dir = train(config, init=init)
    if launch_rank() == 0:
        print(f"run finished: checkpoints and metrics.csv in {run_dir}")
