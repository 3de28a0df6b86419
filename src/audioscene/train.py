"""Training, checkpoints, resume and checkpoint-averaged evaluation (SPEC §4, paper §4.3–4.4).

One plain loop: log-mel features are computed on the batch on the model's device, BCE on the
clip-level output, Adam with the paper's settings, an evaluation and an atomic checkpoint
`epoch_NNN.pt` after every epoch, `metrics.csv` and TensorBoard scalars beside it. The data order
of epoch `e` depends only on `(seed, e)`, so a run resumed from its last checkpoint reaches the
same weights as one that was never interrupted.

Example::

    from audioscene.train import TrainConfig, train
    train(TrainConfig(train_data="data/train", eval_data="data/eval", out_dir="runs/b_att",
                      model="resnet_b_att", width=16, epochs=5))
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
import tomllib
import types
import typing
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from . import models
from ._io import atomic_open
from .checkpoints import Checkpoint, CheckpointError, checkpoint_path, list_epochs
from .data import open_dataset
from .data.folder import ClipDataset
from .data.sampler import BalancedSampler
from .data.store import ShardDataset
from .devices import autocast, check_device, resolve_device
from .distributed import Context, barrier, gather_rows, micro_batches, setup, teardown
from .errors import ConfigError, InputError, check_number
from .features import FrontendConfig, LogMel
from .labels import LabelSet
from .metrics import SCORES, summarize
from .predictor import Predictor

log = logging.getLogger(__name__)

METRIC_COLUMNS = ("epoch", "train_loss", *SCORES, "train_clips_per_s", "seconds")




def _field(default, help: str, *flags: str, choices: tuple[str, ...] | None = None):
    """A config field with the command line's view of it: help text, flag names (default
    `--field-name`) and choices. `audioscene train` generates its flags from these."""
    metadata = {"help": help, "flags": flags, "choices": choices}
    if isinstance(default, FrontendConfig):
        return field(default_factory=FrontendConfig, metadata=metadata)
    return field(default=default, metadata=metadata)


SAMPLERS = ("shuffle", "balanced")


# Allowed ranges of the numeric TrainConfig fields (types come from the annotations).
CONFIG_RANGES: dict[str, dict] = {
    "width": dict(integer=True, low=1), "stem_stride": dict(integer=True, low=1), "epochs": dict(integer=True, low=1),
    "batch_size": dict(integer=True, low=1), "eval_batch_size": dict(integer=True, low=1),
    "micro_batch_size": dict(integer=True, low=1), "lr": dict(low=0, low_open=True), "weight_decay": dict(low=0),
    "seed": dict(integer=True, low=0), "clip_seconds": dict(low=0, low_open=True), "workers": dict(integer=True, low=0),
    "timeout_s": dict(low=0, low_open=True),
}
_MISMATCH = object()


def _conform(value, annotation):
    """`value` as the annotated type (int → float where a float is expected, a dict → the annotated
    dataclass), or `_MISMATCH`."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for option in options:
        if is_dataclass(option) and isinstance(value, (dict, option)):
            return value if isinstance(value, option) else _nested(option, value)
        if option is type(None) and value is None:
            return None
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
        if typing.get_origin(option) is tuple and isinstance(value, (list, tuple)):
            parts = typing.get_args(option)
            if len(value) == len(parts):
                items = tuple(_conform(v, t) for v, t in zip(value, parts))
                if _MISMATCH not in items:
                    return items
    return _MISMATCH


def _nested(cls, values: dict):
    """A nested config (e.g. `frontend`) from a TOML table or stored dict, each value checked."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(cls)
    checked = {}
    for name, value in values.items():
        checked[name] = _conform(value, hints[name])
        if checked[name] is _MISMATCH:
            raise ConfigError(f"{name} = {value!r}: expected {_type_name(hints[name])}")
    try:
        return cls(**checked)
    except InputError as exc:
        raise ConfigError(str(exc)) from None


def _type_name(annotation) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "none"}
    if isinstance(annotation, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is tuple:
        return f"a list of {len(typing.get_args(annotation))} numbers"
    if is_dataclass(annotation):
        return f"a table of {annotation.__name__} keys"
    return names.get(annotation, str(annotation))


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; defaults are the paper's (batch size is ours)."""

    train_data: str = _field("", "training data: DIR (weak.csv + audio/), folder:DIR, dcase2018:ROOT:SPLIT or shards:DIR",
                             "--train-data", "--data")
    eval_data: str = _field("", "evaluation data (the same forms but shards), scored after every epoch")
    labels_csv: str = _field("", "for folder: training data, its CSV filename,labels (labels ;-separated names or "
                                 "mids; default DIR/labels.csv)", "--labels")
    eval_labels_csv: str = _field("", "for folder: evaluation data, its CSV filename,labels (default DIR/labels.csv)",
                                  "--eval-labels")
    sampler: str = _field("shuffle", "shuffle, or balanced: classes drawn in turn, for imbalanced label sets",
                          choices=SAMPLERS)
    init: str = _field("", "start from this checkpoint: its trunk, and its head if the labels are the same "
                           "(fine-tuning)")
    skip_corrupt: bool = _field(False, "shards: skip (and log) clips that cannot be decoded instead of stopping")
    out_dir: str = _field("runs/run", "run folder for checkpoints and metrics", "--out")
    model: str = _field("resnet_b_att", "Table-1 model", choices=tuple(models.available()))
    width: int = _field(64, "base channels (64 in the paper)")
    stem_stride: int | None = _field(None, "stride of the stem conv (default: the variant's own, 1 for resnet_a, "
                                           "2 otherwise)")
    epochs: int = _field(50, "number of epochs")
    batch_size: int = _field(32, "clips per optimizer step (the global batch under torchrun)")
    lr: float = _field(1e-4, "Adam learning rate")
    weight_decay: float = _field(5e-7, "Adam weight decay")
    betas: tuple[float, float] = _field((0.95, 0.999), "Adam betas, as B1,B2")
    seed: int = _field(0, "random seed: the same seed and data give the same weights")
    clip_seconds: float = _field(10.0, "clips are cropped or padded to this length")
    frontend: FrontendConfig = _field(FrontendConfig(), "the log-mel front end (TOML table [frontend]): data is "
                                                       "decoded at its rate, the model takes its bands and the "
                                                       "output frame hop follows its hop")
    workers: int = _field(0, "data loader worker processes")
    device: str = _field("auto", "auto, cpu, cuda, cuda:N or mps")
    amp: bool = _field(True, "mixed precision on CUDA (bf16 where supported, else fp16 with loss scaling)")
    cpu_bf16: bool = _field(False, "bf16 autocast on CPU (slower than float32 on CPUs without bf16 units)")
    channels_last: bool = _field(True, "channels_last memory format (faster on CPU for every Table-1 model)")
    compile: bool = _field(False, "torch.compile the model (no gain measured on CPU, see bench_train.py)")
    eval_batch_size: int = _field(64, "clips per batch when evaluating")
    # torchrun: batch_size stays the global batch per optimizer step; each rank runs micro-batches of
    # micro_batch_size (default batch_size / ranks) and accumulates the rest
    micro_batch_size: int | None = _field(None, "clips per forward pass on each process; the rest of the batch is "
                                                "accumulated (default: batch size / processes)")
    sync_batchnorm: bool = _field(False, "BatchNorm statistics over all processes (torchrun; CUDA only)")
    timeout_s: float = _field(600.0, "seconds a process waits for the others before failing")
    best_metric: str = _field("mAP", "the eval score that picks the best epoch", choices=tuple(SCORES))

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for item in fields(self):
            value = getattr(self, item.name)
            try:
                converted = _conform(value, hints[item.name])
            except ConfigError as exc:  # a nested config names its own key
                raise ConfigError(f"{item.name}: {exc}") from None
            if converted is _MISMATCH:
                raise ConfigError(f"{item.name} = {value!r}: expected {_type_name(hints[item.name])}")
            object.__setattr__(self, item.name, converted)  # e.g. an int lr becomes a float
            if item.name in CONFIG_RANGES and converted is not None:
                try:
                    check_number(item.name, converted, **CONFIG_RANGES[item.name])
                except InputError as exc:
                    raise ConfigError(str(exc)) from None
            choices = item.metadata.get("choices")
            if choices and converted not in choices:
                raise ConfigError(f"unknown {item.name} {converted!r}; choose one of {', '.join(choices)}")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ConfigError(f"betas = {self.betas}: expected two numbers in [0, 1)")
        check_device(self.device)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike, **overrides) -> "TrainConfig":
        """Read a TOML file of `key = value` lines (the field names; a `[frontend]` table for the
        front end); `overrides` win, key by key also inside `frontend`."""
        try:
            with open(path, "rb") as f:
                values = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        merged = {**values, **overrides}
        if isinstance(values.get("frontend"), dict) and isinstance(overrides.get("frontend"), dict):
            merged["frontend"] = {**values["frontend"], **overrides["frontend"]}
        return cls.from_dict(merged, source=str(path))

    def model_config(self, n_classes: int) -> models.ModelConfig:
        """The model's configuration; its input bands, frame hop and padding follow `frontend`."""
        extra = {} if self.stem_stride is None else {"stem_stride": self.stem_stride}
        return models.config_for(self.model, n_classes=n_classes, width=self.width, n_mels=self.frontend.n_mels,
                                 input_hop_s=self.frontend.hop_ms / 1000, pad_value=self.frontend.silence, **extra)


def bce_loss(clipwise: torch.Tensor, target: torch.Tensor, eps: float = 1e-7, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy on probabilities, in float32 and clamped (attention pools probabilities)."""
    return torch.nn.functional.binary_cross_entropy(clipwise.float().clamp(eps, 1 - eps), target.float(),
                                                    reduction=reduction)


# --- prediction -----------------------------------------------------------------------------------

# --- the loop ------------------------------------------------------------------------------------

def _write_metrics_csv(run_dir: Path, history: list[dict]) -> None:
    with atomic_open(run_dir / "metrics.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in METRIC_COLUMNS} for row in history)


def _epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


RESUME_OVERRIDES = ("epochs", "device", "workers", "eval_batch_size", "micro_batch_size")


def train(config: TrainConfig, progress: bool = True) -> Path:
    """Train `config.model` on `config.train_data` into a new run folder `config.out_dir`; return it."""
    run_dir = Path(config.out_dir)
    if run_dir.is_dir() and list_epochs(run_dir):
        raise CheckpointError(f"{run_dir}: already holds checkpoints; resume it with --resume or choose another --out")
    return _run(config, None, progress)


def resume(run_dir: str | os.PathLike, progress: bool = True, **overrides) -> Path:
    """Continue a run from its last checkpoint with its stored configuration.

    Only `epochs` (to extend a run), `device`, `workers`, `eval_batch_size` and `micro_batch_size`
    may be overridden; the number of processes (torchrun) may differ from the original run's.
    """
    run_dir = Path(run_dir)
    checkpoints = list_epochs(run_dir)
    if not checkpoints:
        raise CheckpointError(f"{run_dir}: nothing to resume, no epoch_NNN.pt checkpoint")
    bad = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if bad:
        raise ConfigError(f"cannot change {', '.join(bad)} when resuming; only {', '.join(RESUME_OVERRIDES)}")
    state = Checkpoint.load(checkpoints[-1])
    state.require_resumable(checkpoints[-1])
    if len(checkpoints) > 1:
        _check_same_run(checkpoints[0], Checkpoint.load(checkpoints[0]), checkpoints[-1], state)
    stored = dict(state.train_config)
    stored.setdefault("eval_labels_csv", stored.get("labels_csv", ""))  # older runs used one CSV for both
    config = replace(TrainConfig.from_dict(stored), out_dir=str(run_dir), **overrides)
    log.info("resuming %s after epoch %d of %d", run_dir, state.epoch, config.epochs)
    return _run(config, state, progress)


def _check_same_run(first_path: Path, first: Checkpoint, last_path: Path, last: Checkpoint) -> None:
    """Refuse to resume from a checkpoint that another run left in this folder: the run id every
    checkpoint records (or, for checkpoints without one, the labels and architecture) must match."""
    if first.run_id and last.run_id:
        same = first.run_id == last.run_id
    else:
        same = (first.labels, first.model_config) == (last.labels, last.model_config)
    if not same:
        raise CheckpointError(f"{last_path}: belongs to another run than {first_path.name} (another run id, or other "
                              "labels or model); move the foreign checkpoints out of the folder before resuming")


def _datasets(config: TrainConfig, label_set: LabelSet | None):
    train_set = open_dataset(config.train_data, label_set, config.clip_seconds, config.labels_csv, config.seed,
                             config.skip_corrupt, config.frontend.sample_rate)
    if label_set is not None and isinstance(train_set, ShardDataset) and tuple(train_set.index["labels"]) != label_set.names:
        raise ConfigError(f"{train_set.shard_dir / 'index.json'}: its label set differs from the checkpoint's "
                          f"({len(train_set.index['labels'])} vs {len(label_set)} labels); resume needs the run's data")
    return train_set, _eval_dataset(config.eval_data, train_set.label_set, config.clip_seconds,
                                    config.frontend.sample_rate, config.eval_labels_csv)


def _eval_dataset(spec: str, label_set: LabelSet, clip_seconds: float, sample_rate: int,
                  labels_csv: str = "") -> ClipDataset:
    """The map-style data set that evaluation scores (its clips in a fixed order, with targets)."""
    dataset = open_dataset(spec, label_set, clip_seconds, labels_csv, sample_rate=sample_rate)
    if not isinstance(dataset, ClipDataset):
        raise ConfigError(f"eval data {spec!r}: evaluation needs a map-style data set (a folder, folder: or "
                          "dcase2018: spec), not shards")
    return dataset


def _epoch_plan(config: TrainConfig, train_set, epoch: int, context: Context, micro: int):
    """This rank's micro-batches of the epoch as `(DataLoader, [(weight per clip, last of step)])`.

    Each entry is `(weight per clip, last micro-batch of its step, indices or None for shards)`.
    Map-style data: one global order from (seed, epoch) — shuffled, or class-balanced — cut into
    global batches and micro-batches (`distributed.micro_batches`). Shards: each rank streams its
    own shards; every rank runs the same number of steps (a rank that runs out feeds weight-0
    micro-batches), each clip weighing 1 / (nominal global batch).
    """
    options = dict(num_workers=config.workers, pin_memory=context.device.type == "cuda",
                   persistent_workers=False, prefetch_factor=4 if config.workers else None)
    if isinstance(train_set, ShardDataset):
        if config.sampler == "balanced":
            raise ConfigError("the balanced sampler needs map-style data (the shards stream in order)")
        train_set.set_epoch(epoch)
        per_rank = [sum(s["n_clips"] for s in train_set.shard_order()[r::context.world_size])
                    for r in range(context.world_size)]
        accumulation = max(1, config.batch_size // (context.world_size * micro))
        steps = max(math.ceil(n / (micro * accumulation)) for n in per_rank)
        weight = 1.0 / (micro * accumulation * context.world_size)
        train_set.return_keys = True  # for the epoch's coverage record
        return DataLoader(train_set, batch_size=micro, **options), [(weight, (i + 1) % accumulation == 0, None)
                                                                     for i in range(steps * accumulation)]
    if config.sampler == "balanced":
        sampler = BalancedSampler(train_set.targets, seed=config.seed)
        sampler.set_epoch(epoch)
        order = list(sampler)
    else:
        order = _epoch_order(config.seed, epoch, len(train_set))
    plan = micro_batches(order, config.batch_size, micro, context)
    return (DataLoader(train_set, batch_sampler=[indices for indices, _, _ in plan], **options),
            [(weight, last, indices) for indices, weight, last in plan])


def _initialise(model: models.AudioModel, path: str, label_set: LabelSet) -> None:
    """Start from a trained checkpoint of the same architecture: all its weights, except the
    classifier's (the model's `head_prefix`) when the labels differ."""
    state = Checkpoint.load(path)
    source = models.from_config(state.model_config).config.to_dict()
    target = model.config.to_dict()
    differing = [key for key in target if key != "n_classes" and source.get(key) != target[key]]
    if differing:
        theirs = ", ".join(f"{key} {source.get(key)}" for key in differing)
        ours = ", ".join(f"{key} {target[key]}" for key in differing)
        raise ConfigError(f"{path}: a {source['name']} with {theirs}; this run trains a {target['name']} with {ours} "
                          "(use the same --model and --width, or leave them out to take the checkpoint's)")
    same_labels = tuple(state.labels) == label_set.names
    weights = {k: v for k, v in state.model.items() if same_labels or not k.startswith(model.head_prefix)}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or not all(k.startswith(model.head_prefix) for k in missing):
        raise CheckpointError(f"{path}: its weights do not fit this model (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]})")
    if same_labels:
        log.info("initialised from %s (all weights)", path)
    else:
        log.info("initialised from %s; new classifier for %d classes", path, len(label_set))


def _run(config: TrainConfig, state: Checkpoint | None, progress: bool) -> Path:
    context = setup(resolve_device(config.device), config.timeout_s)
    try:
        run_dir = _train_loop(config, state, progress and context.is_main, context)
        # leave together: a rank that destroys the process group while rank 0 still writes its
        # TensorBoard file and checkpoint was seen to abort under gloo ("terminate called ...")
        barrier(context)
        return run_dir
    finally:
        teardown(context)


def _train_loop(config: TrainConfig, state: Checkpoint | None, progress: bool, context: Context) -> Path:
    run_dir, device = Path(config.out_dir), context.device
    micro = config.micro_batch_size or max(1, config.batch_size // context.world_size)
    if config.batch_size % (context.world_size * micro):
        raise ConfigError(f"batch_size {config.batch_size} is not a multiple of {context.world_size} ranks × "
                          f"micro_batch_size {micro}")
    if config.sync_batchnorm and device.type != "cuda":
        raise ConfigError("sync_batchnorm needs CUDA devices (PyTorch's SyncBatchNorm runs on GPUs only)")
    train_set, eval_set = _datasets(config, state.label_set if state else None)
    label_set = train_set.label_set

    torch.manual_seed(config.seed)
    model = models.from_config(config.model_config(len(label_set)))
    if config.init and not state:
        _initialise(model, config.init, label_set)
    if state:
        model.load_state_dict(state.model)
    if config.sync_batchnorm and context.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    raw_model = model  # what checkpoints store; `model` may become a DDP / compiled wrapper
    if context.distributed:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        model = torch.compile(model)
    frontend = LogMel(config.frontend).to(device)
    optimizer = torch.optim.Adam(raw_model.parameters(), lr=config.lr, betas=config.betas,
                                 weight_decay=config.weight_decay)
    amp_context, amp_dtype = autocast(device, config.amp, config.cpu_bf16)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16 and device.type == "cuda")
    history: list[dict] = []
    start_epoch, run_id = 1, uuid.uuid4().hex
    if state:
        optimizer.load_state_dict(state.optimizer)
        scaler.load_state_dict(state.scaler)
        torch.set_rng_state(state.rng["torch"])
        history, start_epoch = list(state.history), state.epoch + 1
        run_id = state.run_id or run_id
    # clips per epoch over all ranks (a shard set's len() is this rank's share)
    n_epoch_clips = train_set.n_clips if isinstance(train_set, ShardDataset) else len(train_set)

    writer = None
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        # drop the points an interrupted epoch logged after the last checkpoint (steps count clips)
        writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=(start_epoch - 1) * n_epoch_clips + 1)
        log.info("training %s (width %d, %s parameters) on %d clips, evaluating on %d, %d classes, %s × %s, "
                 "micro-batches of %d", config.model, config.width,
                 f"{sum(p.numel() for p in raw_model.parameters()):,}", len(train_set), len(eval_set), len(label_set),
                 context.world_size, device, micro)
    for epoch in range(start_epoch, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        loader, plan = _epoch_plan(config, train_set, epoch, context, micro)
        batches = iter(loader)
        losses, clips_done, step_loss, seen = [], 0, 0.0, []
        bar = tqdm(plan, desc=f"epoch {epoch}/{config.epochs}", unit="batch", disable=not progress)
        for weight, last, ids in bar:
            waves, targets, *keys = next(batches, (None, None))
            if waves is None:  # this rank's shards ran out before the others': take part with weight 0
                waves, targets, weight = torch.zeros(1, train_set.clip_samples), torch.zeros(1, len(label_set)), 0.0
            elif weight > 0:
                seen += list(keys[0]) if keys else ids
            waves, targets = waves.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            with torch.no_grad():
                features = frontend(waves)
            # gradients are all-reduced only on the last micro-batch of an optimizer step
            with nullcontext() if last or not context.distributed else model.no_sync():
                with amp_context:
                    out = model(features)
                per_clip = bce_loss(out["clipwise"], targets, reduction="none").mean(dim=1)
                # DDP averages gradients over ranks; scaling by world_size turns that into the sum
                scaler.scale((per_clip * weight).sum() * context.world_size).backward()
            step_loss += float((per_clip.detach() * weight).sum())
            clips_done += int(len(waves) * (weight > 0))
            if last:
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                losses.append(step_loss)
                step_loss = 0.0
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}",
                                clips_per_s=f"{clips_done * context.world_size / (time.perf_counter() - started):.1f}")
                if writer:
                    writer.add_scalar("train/loss", losses[-1], (epoch - 1) * n_epoch_clips + clips_done * context.world_size)
        train_seconds = time.perf_counter() - started
        # each rank's step losses are its share of the step's mean; the shares add up over ranks
        epoch_loss = _sum_over_ranks(float(np.mean(losses)) if losses else float("nan"), context)
        coverage = _coverage(seen, n_epoch_clips, context)
        outputs = _predict_split(raw_model, frontend, eval_set, context, config, epoch, progress)
        if context.is_main:
            scores = summarize(eval_set.targets, outputs)
            row = {"epoch": epoch, "train_loss": epoch_loss, **{key: scores[key] for key in SCORES},
                   "train_clips_per_s": coverage["clips"] / train_seconds,
                   "seconds": time.perf_counter() - started}
            history.append(row)
            Checkpoint(epoch=epoch, model=raw_model.state_dict(), model_config=raw_model.config.to_dict(),
                       frontend_config=asdict(frontend.config), labels=list(label_set.names),
                       train_config=asdict(config), history=history, metrics=row, optimizer=optimizer.state_dict(),
                       scaler=scaler.state_dict(), rng={"torch": torch.get_rng_state()},
                       world_size=context.world_size, coverage=coverage, run_id=run_id,
                       ).save(checkpoint_path(run_dir, epoch))
            _write_metrics_csv(run_dir, history)
            for key in ("train_loss", *SCORES):
                writer.add_scalar(f"epoch/{key}", row[key], epoch)
            writer.flush()
            log.info("epoch %d/%d: loss %.4f, eval %s (%.0f s, %.1f clips/s)", epoch, config.epochs,
                     row["train_loss"], ", ".join(f"{name} {row[key]:.3f}" for key, name in SCORES.items()),
                     row["seconds"], row["train_clips_per_s"])
        barrier(context)  # the checkpoint exists before any rank starts the next epoch
    if writer:
        writer.close()
    return run_dir


def _coverage(seen: list, expected: int, context: Context) -> dict | None:
    """Clips trained on in the epoch over all ranks: how many, how many distinct, and how many of
    the `expected` were missed (corrupt shard clips skipped in any worker); rank 0 only."""
    if context.distributed:
        parts = [None] * context.world_size if context.is_main else None
        torch.distributed.gather_object(seen, parts, dst=0)
        if not context.is_main:
            return None
        seen = [item for part in parts for item in part]
    missed = max(expected - len(seen), 0)
    if missed:
        log.warning("%d of %d clips were skipped this epoch (corrupt clips, see the warnings above)", missed, expected)
    return {"clips": len(seen), "distinct": len(set(seen)), "missed": missed}


def _sum_over_ranks(value: float, context: Context) -> float:
    if not context.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    torch.distributed.all_reduce(tensor)
    return float(tensor.item())


def _predict_split(model, frontend, eval_set: ClipDataset, context: Context, config: TrainConfig, epoch: int,
                   progress: bool) -> np.ndarray | None:
    """Clip outputs on the eval set; each rank predicts every world_size-th clip, rank 0 gathers."""
    indices = np.arange(context.rank, len(eval_set), context.world_size)
    subset = Subset(eval_set, indices.tolist()) if context.distributed else eval_set
    outputs = Predictor([model], frontend, context.device).predict(
        subset, config.eval_batch_size, config.workers, desc=f"evaluate epoch {epoch}", progress=progress)["clipwise"]
    return gather_rows(context, indices, outputs, len(eval_set))


# --- evaluation of a finished run ------------------------------------------------------------

def evaluate_run(run_dir: str | os.PathLike, data: str | os.PathLike, device: str = "auto",
                 batch_size: int = 64, workers: int = 0, progress: bool = True, labels_csv: str = "",
                 select_data: str | os.PathLike | None = None, select_labels_csv: str = "",
                 amp: bool = False) -> dict:
    """Score every epoch checkpoint of a run on a data set, plus "Avg": the mean of all
    checkpoints' clip outputs, scored (output averaging, not weight averaging; SPEC §4).

    The peak epoch is the one with the best `best_metric` (the run's, mAP by default) on
    `select_data`, or, without it, on `data`
    itself (what the paper did; optimistic, since the split that picks the epoch is also scored).
    `labels_csv` / `select_labels_csv` label `folder:` specs (default `DIR/labels.csv`). Scores are
    computed in float32 unless `amp`.

    Returns `{"labels", "epochs": {epoch: summary}, "peak_epoch", "peak": summary, "avg": summary,
    "n_clips", "selected_on", "selected_by"}`.
    """
    checkpoints = list_epochs(run_dir)
    if not checkpoints:
        raise CheckpointError(f"{run_dir}: no epoch_NNN.pt checkpoints to evaluate")
    torch_device = resolve_device(device)
    first = Checkpoint.load(checkpoints[0])  # the data is opened (and checked) before the work starts
    label_set = first.label_set
    stored = TrainConfig.from_dict(first.train_config)
    clip_seconds, metric = stored.clip_seconds, stored.best_metric
    sample_rate = FrontendConfig(**first.frontend_config).sample_rate
    dataset = _eval_dataset(str(data), label_set, clip_seconds, sample_rate, labels_csv)
    select_set = None if select_data is None else \
        _eval_dataset(str(select_data), label_set, clip_seconds, sample_rate, select_labels_csv)
    per_epoch, select_map, outputs = {}, {}, []
    for path in tqdm(checkpoints, desc="checkpoints", unit="ckpt", disable=not progress):
        state = first if path == checkpoints[0] else Checkpoint.load(path)
        model, frontend, labels = state.build(path)
        if labels != label_set:
            raise CheckpointError(f"{path}: its label set differs from {checkpoints[0].name}'s")
        predictor = Predictor([model], frontend, torch_device, amp=amp)
        clipwise = predictor.predict(dataset, batch_size, workers, desc=path.name, progress=progress)["clipwise"]
        outputs.append(clipwise)
        per_epoch[state.epoch] = summarize(dataset.targets, clipwise)
        if select_set is not None:
            selected = predictor.predict(select_set, batch_size, workers, desc=f"{path.name} (selection split)",
                                         progress=progress)["clipwise"]
            select_map[state.epoch] = summarize(select_set.targets, selected)[metric]
    peak_epoch = max(per_epoch, key=lambda e: select_map[e] if select_set is not None else per_epoch[e][metric])
    return {"labels": label_set, "epochs": per_epoch, "peak_epoch": peak_epoch, "peak": per_epoch[peak_epoch],
            "avg": summarize(dataset.targets, np.mean(outputs, axis=0)), "n_clips": len(dataset),
            "selected_on": str(select_data if select_data is not None else data), "selected_by": metric}
