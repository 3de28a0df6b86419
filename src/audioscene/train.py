"""Training (docs/protocol.md §3, paper §4.3–4.4), written to be read top to bottom like nanoGPT's loop.

`train_step` is one forward and backward pass of a `MicroBatch` (log-mel features computed on the
batch on the model's device, BCE on the clip-level output, Adam with the paper's settings; the
optimizer steps after the last micro-batch of a step). `train_epoch` runs an `EpochPlan` of them,
`evaluate_epoch` scores the eval set, and the loop saves a typed `Checkpoint` `epoch_NNN.pt`
(atomically), `metrics.csv` and TensorBoard scalars after every epoch. The data order of epoch `e`
depends only on `(seed, e)`, so a run resumed from its last checkpoint reaches the same weights as
one that was never interrupted.

Example::

    from audioscene.train import TrainConfig, train
    train(TrainConfig(train_data="data/train", eval_data="data/eval", out_dir="runs/b_att",
                      model="resnet_b_att", model_args={"width": 16}, epochs=5))
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset
from tqdm.auto import tqdm

from . import models
from ._io import make_folder
from .batches import EpochPlan, MicroBatch, clips_per_epoch, micro_batch_size
from .checkpoints import PRETRAINED, Checkpoint, CheckpointError, Run, checkpoint_path, initialise_from, list_epochs
from .config import TrainConfig
from .data import ClipSet, ClipStream, DataSpec, OpenOptions
from .data.spec import WithUnlabelled
from .devices import autocast, resolve_device
from .distill import Teacher, data_identity
from .distributed import Context, barrier, coverage_of, gather_rows, setup, sum_over_ranks, teardown
from .errors import ConfigError
from .labels import LabelSet
from .losses import Targets, clip_losses
from .metrics import SCORES, summarize
from .predictor import Predictor
from .recipe import Recipe, StepInputs
from .run_log import record_epoch
from .strong import StrongLabels

__all__ = ["TrainConfig", "configure", "train", "resume", "train_step", "train_epoch", "evaluate_epoch", "build_learner",
           "Learner", "EpochStats"]

log = logging.getLogger(__name__)



# --- one step ------------------------------------------------------------------------------------

@dataclass
class Learner:
    """The model and everything an optimizer step touches."""

    model: nn.Module  # what runs forward: the model, or its DDP / compiled wrapper
    raw_model: models.AudioModel  # what checkpoints store
    frontend: nn.Module  # log-mel (or nothing for models on embeddings)
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp: object  # the autocast context (a no-op one in float32)
    config: TrainConfig  # the recipe's settings, distillation's and the losses'
    recipe: Recipe  # the recipe's ingredients at their stages, stepped with the optimizer
    context: Context = field(default_factory=Context)

    @property
    def weights_model(self) -> models.AudioModel:
        """The run's weights: the moving average when the recipe keeps one, else the raw model."""
        return self.recipe.ema.model if self.recipe.ema is not None else self.raw_model


def build_learner(config: TrainConfig, label_set: LabelSet, context: Context = Context(),
                  state: Checkpoint | None = None, total_steps: int = 1, init: Checkpoint | None = None) -> Learner:
    """Model (seeded by `config.seed`; from `state` when resuming, else from `config.init` if set:
    `init` when it was loaded already), front end, Adam, loss scaler, the recipe over `total_steps`
    optimizer steps on `context.device`, wrapped as the config asks (sync BN, DDP, compile)."""
    device = context.device
    torch.manual_seed(config.seed)
    model = models.from_config(config.model_config(len(label_set)))
    if config.init and not state:
        initialise_from(model, init or load_init(config.init), config.init, label_set)
    if state:
        model.load_state_dict(state.model)
    if config.sync_batchnorm and context.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    raw_model = model
    if context.distributed:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        model = torch.compile(model)
    optimizer = torch.optim.Adam(raw_model.parameters(), lr=config.lr, betas=config.betas,
                                 weight_decay=config.weight_decay)
    amp, amp_dtype = autocast(device, config.amp, config.cpu_bf16)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16 and device.type == "cuda")
    if state:
        optimizer.load_state_dict(state.optimizer)
        scaler.load_state_dict(state.scaler)
        torch.set_rng_state(state.rng["torch"])
    recipe = Recipe(config, raw_model, optimizer, total_steps)
    if state and state.recipe:
        recipe.load_state_dict(state.recipe)
    frontend = models.frontend_for(raw_model, config.frontend).to(device)
    return Learner(model, raw_model, frontend, optimizer, scaler, amp, config, recipe, context)


def train_step(learner: Learner, batch: MicroBatch) -> float:
    """Forward and backward of one micro-batch (through the recipe's stages: `recipe.Recipe.prepare`),
    then the optimizer step if it is the last of its step; returns its weighted loss (the step's
    loss is the sum over its micro-batches and ranks)."""
    context, device, config = learner.context, learner.context.device, learner.config
    on_device = lambda tensor: None if tensor is None else tensor.to(device, non_blocking=True)  # noqa: E731
    inputs = StepInputs(on_device(batch.waves), on_device(batch.targets),
                        None if config.kd_lambda == 0 else on_device(batch.teacher), on_device(batch.strong),
                        on_device(batch.strongly_labelled),
                        groups=None if batch.unlabelled is None else batch.unlabelled.numpy())  # mixed among themselves
    learner.recipe.prepare(inputs, np.random.default_rng(batch.seed), learner.raw_model)
    with torch.no_grad():
        features = learner.frontend(inputs.waves)
    # gradients are all-reduced only on the last micro-batch of an optimizer step
    with nullcontext() if batch.last or not context.distributed else learner.model.no_sync():
        with learner.amp:
            out = learner.model(features, **({"augment": inputs.augment} if inputs.augment else {}))
            mean_teacher = None if config.consistency_weight == 0 else (
                learner.recipe.ema.model, learner.recipe.consistency_factor(), features)
            targets = Targets(inputs.targets, on_device(batch.unlabelled), inputs.teacher, inputs.events,
                              inputs.strongly_labelled)
            per_clip = clip_losses(out, targets, config, learner.raw_model.frame_hop, mean_teacher)
        # DDP averages gradients over ranks; scaling by world_size turns that into the sum
        learner.scaler.scale((per_clip * batch.weight).sum() * context.world_size).backward()
    if batch.last:
        learner.recipe.after_step(learner.raw_model, stepped=optimizer_step(learner.optimizer, learner.scaler))
    return float((per_clip.detach() * batch.weight).sum())


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> bool:
    """Step (through the loss scaler) and clear the gradients; False when the scaler skipped the
    step because a gradient was Inf or NaN (it then lowers its scale)."""
    scale = scaler.get_scale() if scaler.is_enabled() else None
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return scale is None or scaler.get_scale() >= scale


# --- one epoch -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EpochStats:
    loss: float  # mean optimizer-step loss on this rank (its share of each step's mean)
    seen: list  # keys of the clips trained on (weight > 0), for the coverage record
    seconds: float


def train_epoch(learner: Learner, batches: Iterable[MicroBatch], desc: str = "train", progress: bool = True,
                on_step: Callable[[float, int], None] | None = None) -> EpochStats:
    """Train on `batches` (e.g. an `EpochPlan`); `on_step(loss, clips so far over all ranks)` after each
    optimizer step."""
    started = time.perf_counter()
    world_size = learner.context.world_size
    learner.model.train()
    losses, seen, step_loss, clips_done = [], [], 0.0, 0
    bar = tqdm(batches, desc=desc, unit="batch", disable=not progress)
    for batch in bar:
        step_loss += train_step(learner, batch)
        if batch.weight > 0:
            seen += batch.keys
            clips_done += len(batch.waves)
        if batch.last:
            losses.append(step_loss)
            step_loss = 0.0
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}",
                            clips_per_s=f"{clips_done * world_size / (time.perf_counter() - started):.1f}")
            if on_step:
                on_step(losses[-1], clips_done * world_size)
    return EpochStats(float(np.mean(losses)) if losses else float("nan"), seen, time.perf_counter() - started)


def evaluate_epoch(learner: Learner, eval_set: ClipSet, batch_size: int = 64, workers: int = 0,
                   desc: str = "evaluate", progress: bool = True, weights: str = "auto") -> np.ndarray | None:
    """Clip outputs `[N, K]` on the eval set, in float32, of the run's weights (`weights="auto"`:
    the moving average when the recipe keeps one) or the raw ones (`"raw"`); each rank predicts
    every world_size-th clip and rank 0 gathers them (None on the other ranks)."""
    context = learner.context
    model = learner.raw_model if weights == "raw" else learner.weights_model
    indices = np.arange(context.rank, len(eval_set), context.world_size)
    subset = Subset(eval_set, indices.tolist()) if context.distributed else eval_set
    outputs = Predictor([model], learner.frontend, context.device).predict(
        subset, batch_size, workers, desc=desc, progress=progress)["clipwise"]
    return gather_rows(context, indices, outputs, len(eval_set))


# --- a run ---------------------------------------------------------------------------------------

def configure(values: dict, toml: str | os.PathLike | None = None) -> tuple[TrainConfig, Checkpoint | None]:
    """What `audioscene train` starts: the configuration from its flags (`values`) over the TOML
    file, if any, and the checkpoint it fine-tunes from (`init`, loaded once: its model, front end
    and input normalisation fill what the flags leave out, and its weights start the run)."""
    init_path = TrainConfig.merged(values, toml).get("init")
    init = load_init(init_path) if init_path else None
    return TrainConfig.for_new_run(values, toml, init), init


def load_init(init: str) -> Checkpoint:
    """The checkpoint `--init` names: a checkpoint file, or `pretrained:NAME` (a model of the zoo)."""
    if init.startswith(PRETRAINED):
        return Run.open(init).last()[0][1]
    return Checkpoint.load(init)


def train(config: TrainConfig, progress: bool = True, init: Checkpoint | None = None) -> Path:
    """Train `config.model` on `config.train_data` into a new run folder `config.out_dir`; return it.
    `init`: the checkpoint `config.init` names, when it was loaded already (`configure`)."""
    run_dir = Path(config.out_dir)
    if run_dir.is_dir() and list_epochs(run_dir):
        raise CheckpointError(f"{run_dir}: already holds checkpoints; resume it with --resume or choose another --out")
    return _run(config, None, progress, init)


RESUME_OVERRIDES = ("epochs", "device", "workers", "eval_batch_size", "micro_batch_size")


def resume(run: str | os.PathLike | Run, progress: bool = True, **overrides) -> Path:
    """Continue a run from its last checkpoint with its stored configuration.

    Only `epochs` (to extend a run), `device`, `workers`, `eval_batch_size` and `micro_batch_size`
    may be overridden; the number of processes (torchrun) may differ from the original run's.
    """
    bad = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if bad:
        raise ConfigError(f"cannot change {', '.join(bad)} when resuming; only {', '.join(RESUME_OVERRIDES)}")
    run = Run.open(run)
    (path, state), = run.last()
    state.require_resumable(path)
    config = replace(run.config, out_dir=str(run.folder), **overrides)
    log.info("resuming %s after epoch %d of %d", run, state.epoch, config.epochs)
    return _run(config, state, progress)


def _run(config: TrainConfig, state: Checkpoint | None, progress: bool, init: Checkpoint | None = None) -> Path:
    context = setup(resolve_device(config.device), config.timeout_s)
    try:
        run_dir = _train_loop(config, state, progress and context.is_main, context, init)
        # leave together: a rank that destroys the process group while rank 0 still writes its
        # TensorBoard file and checkpoint was seen to abort under gloo ("terminate called ...")
        barrier(context)
        return run_dir
    finally:
        teardown(context)


def _datasets(config: TrainConfig, label_set: LabelSet | None, context: Context
              ) -> tuple[DataSpec, ClipSet | ClipStream, ClipSet]:
    """The training data (its spec, a set or a stream of this rank's share) and the eval set."""
    train_spec, eval_spec = config.train_spec, config.eval_spec
    for spec in (train_spec, eval_spec):
        spec.require_input(models.family_of(config.model).takes_audio, config.model)
    options = OpenOptions(label_set, config.clip_seconds, config.frontend.sample_rate, config.seed,
                          config.skip_corrupt, context.rank, context.world_size)
    train_set = train_spec.open(options)
    if config.unlabelled_spec:
        if train_spec.streamed:
            raise ConfigError("unlabelled data joins map-style training data (a folder, folder: or dcase2018: spec), "
                              "not shards")
        train_set = WithUnlabelled(train_set, config.unlabelled_spec.open_unlabelled(
            replace(options, label_set=train_set.label_set)))
    eval_set = eval_spec.open_clips(
        replace(options, label_set=train_set.label_set), "evaluation (--eval-data)")
    return train_spec, train_set, eval_set


def _train_loop(config: TrainConfig, state: Checkpoint | None, progress: bool, context: Context,
                init: Checkpoint | None) -> Path:
    run_dir = Path(config.out_dir)
    micro = micro_batch_size(config, context)
    train_spec, train_set, eval_set = _datasets(config, state.label_set if state else None, context)
    label_set = train_set.label_set
    teacher = Teacher(config.teacher, label_set, config.kd_temperature) if config.teacher else None
    if teacher is not None:
        if not train_spec.streamed:
            teacher.require(train_set.keys)  # shards' keys are checked as they stream
        teacher.check_data(data_identity(train_spec))
    strong = None
    if config.strong_labels:  # clip keys are checked here for map-style data, as they stream for shards
        strong = StrongLabels.read(config.strong_labels, label_set, None if train_spec.streamed else train_set.keys)
    elif train_spec.streamed and train_set.stores_events and config.strong_weight > 0:
        train_set.with_events = True  # shards packed with strong labels: the events stream with their clips
        log.info("training on the strong labels stored in %s (--strong-weight 0 trains without them)",
                 config.train_data)
    plan = partial(EpochPlan, config, train_set, train_spec.streamed, context=context, micro_batch_size=micro,
                   teacher=teacher, strong=strong)
    learner = build_learner(config, label_set, context, state, plan(epoch=1).n_steps * config.epochs, init)
    history = list(state.history) if state else []
    start_epoch, run_id = (state.epoch + 1, state.run_id or uuid.uuid4().hex) if state else (1, uuid.uuid4().hex)
    n_epoch_clips = clips_per_epoch(train_set, train_spec.streamed, config.unlabelled_share)

    writer = None
    if context.is_main:
        make_folder(run_dir)
        from torch.utils.tensorboard import SummaryWriter

        # drop the points an interrupted epoch logged after the last checkpoint (steps count clips)
        writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=(start_epoch - 1) * n_epoch_clips + 1)
        log.info("training %s (%s, %s parameters) on %d clips, evaluating on %d, %d classes, %s × %s, "
                 "micro-batches of %d", config.model, models.run_settings(learner.raw_model.config) or "as published",
                 f"{sum(p.numel() for p in learner.raw_model.parameters()):,}", n_epoch_clips, len(eval_set),
                 len(label_set), context.world_size, context.device, micro)
    for epoch in range(start_epoch, config.epochs + 1):
        started = time.perf_counter()
        offset = (epoch - 1) * n_epoch_clips
        stats = train_epoch(learner, plan(epoch=epoch), f"epoch {epoch}/{config.epochs}", progress,
                            on_step=lambda loss, clips: writer and writer.add_scalar("train/loss", loss, offset + clips))
        # each rank's step losses are its share of the step's mean; the shares add up over ranks
        epoch_loss = sum_over_ranks(stats.loss, context)
        coverage = coverage_of(stats.seen, n_epoch_clips, context)
        scores = _epoch_scores(learner, eval_set, epoch, progress)
        if context.is_main:
            history.append({"epoch": epoch, "train_loss": epoch_loss, **scores, "train_clips_per_s":
                            coverage["clips"] / stats.seconds, "seconds": time.perf_counter() - started})
            _checkpoint(learner, epoch, label_set, history, coverage, run_id).save(checkpoint_path(run_dir, epoch))
            record_epoch(run_dir, history, writer, config.epochs)
        barrier(context)  # the checkpoint exists before any rank starts the next epoch
    if writer:
        writer.close()
    return run_dir


def _epoch_scores(learner: Learner, eval_set: ClipSet, epoch: int, progress: bool) -> dict[str, float]:
    """The run's weights' eval scores (rank 0; empty elsewhere), and, when they are a weight
    average, the raw weights' beside them as `raw_<score>`."""
    config, scores = learner.config, {}
    for weights, prefix in (("auto", ""), ("raw", "raw_")) if learner.recipe.ema else (("auto", ""),):
        desc = f"evaluate epoch {epoch}" + (" (raw weights)" if prefix else "")
        outputs = evaluate_epoch(learner, eval_set, config.eval_batch_size, config.workers, desc, progress, weights)
        if outputs is not None:
            summary = summarize(eval_set.targets, outputs)
            scores.update({prefix + key: summary[key] for key in SCORES})
    return scores


def _checkpoint(learner: Learner, epoch: int, label_set: LabelSet, history: list[dict], coverage: dict,
                run_id: str) -> Checkpoint:
    """What the learner leaves after `epoch`: weights, configs and everything a resume needs."""
    raw, config = learner.raw_model, learner.config
    return Checkpoint(epoch=epoch, model=raw.state_dict(), model_config=raw.config.to_dict(),
                      frontend_config=asdict(config.frontend), labels=list(label_set.names),
                      train_config=config.to_dict(), history=history, metrics=history[-1],
                      optimizer=learner.optimizer.state_dict(), scaler=learner.scaler.state_dict(),
                      rng={"torch": torch.get_rng_state()}, world_size=learner.context.world_size,
                      coverage=coverage, run_id=run_id, recipe=learner.recipe.state_dict())
