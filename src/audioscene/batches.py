"""What each process trains on in an epoch: the plan of micro-batches, one place per data protocol.

Map-style data (`ClipSet`): every rank builds the same global order from `(seed, epoch)`
(shuffled, or class-balanced), cuts it into global batches of `batch_size` and each global batch
into `world_size × accumulation` micro-batches; rank `r` runs micro-batches `r, r + world_size,
...`. The effective batch and the data order therefore do not depend on the number of processes,
and a run can be resumed with another number of ranks.

Streamed data (`ClipStream`): each rank reads its own shards; every rank runs the same number of
optimizer steps (a rank whose shards run out feeds weight-0 micro-batches, so collectives still
match), each clip weighing 1 / (nominal global batch); with the balanced sampler each loader worker
draws class-balanced from a buffer of the clips it reads (`sampler.balanced_stream`).

Each micro-batch carries a seed for its augmentation, from (run seed, epoch, rank, position), and,
with a teacher file, the teacher's targets of its clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from .config import TrainConfig
from .data import ClipSet, ClipStream
from .data.sampler import BalancedSampler
from .distill import Teacher
from .distributed import Context
from .errors import ConfigError
from .strong import StrongLabels


@dataclass(frozen=True)
class MicroBatch:
    """One forward and backward pass on one process.

    `weight` is each clip's share of its optimizer step's loss (1 / global batch; 0 for a rank's
    padding); `last` marks the micro-batch after which gradients are synchronised and the
    optimizer steps; `keys` name the clips (indices or shard keys) for the epoch's coverage record;
    `seed` seeds its augmentation (mixup, SpecAugment); `teacher` holds the teacher's targets for
    knowledge distillation; `strong` the clips' events `[B, E, 4]` and `strongly_labelled` which clips have
    them (`strong.StrongLabels.batch`); `unlabelled` marks clips without labels (mean teacher only).
    """

    waves: torch.Tensor
    targets: torch.Tensor
    weight: float
    last: bool = True
    keys: tuple = ()
    seed: int = 0
    teacher: torch.Tensor | None = None
    strong: torch.Tensor | None = None
    strongly_labelled: torch.Tensor | None = None
    unlabelled: torch.Tensor | None = None

    @classmethod
    def whole(cls, waves: torch.Tensor, targets: torch.Tensor) -> "MicroBatch":
        """A whole optimizer step in one pass (the loss is the batch mean)."""
        return cls(waves, targets, 1.0 / len(waves))


def micro_batch_size(config: TrainConfig, context: Context) -> int:
    """Clips per forward pass on each rank, checked against the batch, mixup and the device."""
    micro = config.micro_batch_size or max(1, config.batch_size // context.world_size)
    if config.batch_size % (context.world_size * micro):
        raise ConfigError(f"batch_size {config.batch_size} is not a multiple of {context.world_size} ranks × "
                          f"micro_batch_size {micro}")
    if config.mixup_alpha > 0 and micro < 2:
        raise ConfigError("mixup mixes clips within a micro-batch and needs at least 2 per micro-batch; raise "
                          "--micro-batch-size (or the batch size per process), or turn mixup off with --mixup-alpha 0")
    if config.sync_batchnorm and context.device.type != "cuda":
        raise ConfigError("sync_batchnorm needs CUDA devices (PyTorch's SyncBatchNorm runs on GPUs only)")
    return micro


def split_batches(global_order: list[int], batch_size: int, micro_batch_size: int, context: Context,
                  ) -> list[tuple[list[int], float, bool]]:
    """This rank's `(indices, weight per clip, last of its optimizer step)` for an epoch.

    Each global batch of `batch_size` indices (the last may be shorter) is split as evenly as
    possible into `world_size × accumulation` micro-batches; a micro-batch left empty (a short last
    batch) carries one clip with weight 0, so every rank takes part in every step. Weights are
    `1 / len(global batch)`: the summed loss of a step is the mean over its clips, as in one process.
    A last global batch of a single clip joins the batch before it: layers that normalise over the
    batch (the embedding models' clip-level BatchNorm) cannot train on one clip.
    """
    slots = context.world_size * max(1, batch_size // (context.world_size * micro_batch_size))
    starts = list(range(0, len(global_order), batch_size))
    if len(starts) > 1 and len(global_order) - starts[-1] == 1:
        starts.pop()
    plan = []
    for start, end in zip(starts, starts[1:] + [len(global_order)]):
        batch = global_order[start:end]
        chunks = np.array_split(np.asarray(batch), slots)
        mine = chunks[context.rank::context.world_size]
        for a, chunk in enumerate(mine):
            last = a == len(mine) - 1
            if len(chunk):
                plan.append((chunk.tolist(), 1.0 / len(batch), last))
            else:
                plan.append(([batch[0]], 0.0, last))
    return plan


def epoch_order(config: TrainConfig, dataset: ClipSet, epoch: int) -> list[int]:
    """The global clip order of an epoch of map-style data; depends only on `(seed, epoch)`. With
    unlabelled clips (`data.spec.WithUnlabelled`), the labelled clips in their order with
    unlabelled ones spread among them (`with_unlabelled`)."""
    unlabelled = unlabelled_mask(dataset)
    if unlabelled is None:
        return _order(config, dataset.targets, epoch)
    labelled = np.flatnonzero(~unlabelled)
    order = labelled[_order(config, dataset.targets[labelled], epoch)]
    return with_unlabelled(order, np.flatnonzero(unlabelled), config.unlabelled_share,
                           np.random.default_rng([config.seed, epoch, 1]))


def _order(config: TrainConfig, targets: np.ndarray, epoch: int) -> list[int]:
    if config.sampler == "balanced":
        sampler = BalancedSampler(targets, seed=config.seed)
        sampler.set_epoch(epoch)
        return list(sampler)
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    return torch.randperm(len(targets), generator=generator).tolist()


def with_unlabelled(order: Sequence[int], unlabelled: np.ndarray, share: float, rng: np.random.Generator
                    ) -> list[int]:
    """`order` (the labelled clips) with unlabelled clips interleaved so that `share` of every run of
    draws is unlabelled: draw i is unlabelled when ⌊(i + 1)·share⌋ > ⌊i·share⌋, so each batch holds
    its share whatever the data's proportions (the mean teacher's batches: JiaKai's DCASE 2018
    system mixes fixed numbers of each kind). Unlabelled clips come in a shuffled order, reshuffled
    when used up."""
    total = _with_unlabelled_length(len(order), share)
    spare: list[int] = []
    labelled = iter(order)
    out = []
    for i in range(total):
        if int((i + 1) * share) > int(i * share):
            if not spare:
                spare = rng.permutation(unlabelled).tolist()
            out.append(spare.pop())
        else:
            out.append(next(labelled))
    return out


def unlabelled_mask(dataset: ClipSet | ClipStream) -> np.ndarray | None:
    """Which clips of a map-style set have no labels (`data.spec.WithUnlabelled`); None when none do,
    so the epoch order, its length and the loss agree on whether the mean teacher's batches apply."""
    mask = getattr(dataset, "unlabelled", None)
    return mask if mask is not None and mask.any() else None


def clips_per_epoch(dataset: ClipSet | ClipStream, streamed: bool, unlabelled_share: float) -> int:
    """Clips trained on in an epoch over all ranks (with unlabelled clips: `with_unlabelled`'s count)."""
    if streamed:
        return dataset.n_clips_total
    unlabelled = unlabelled_mask(dataset)
    if unlabelled is None:
        return len(dataset)
    return _with_unlabelled_length(int((~unlabelled).sum()), unlabelled_share)


def _with_unlabelled_length(n_labelled: int, share: float) -> int:
    return round(n_labelled / (1 - share))


class EpochPlan:
    """This rank's micro-batches of one epoch: iterate for `MicroBatch`es, `len()` of them; with a
    `teacher` or `strong` labels, each carries its clips' teacher targets or events (looked up by
    clip key)."""

    def __init__(self, config: TrainConfig, dataset: ClipSet | ClipStream, streamed: bool, epoch: int,
                 context: Context, micro_batch_size: int, teacher: Teacher | None = None,
                 strong: StrongLabels | None = None):
        options = dict(num_workers=config.workers, pin_memory=context.device.type == "cuda",
                       persistent_workers=False, prefetch_factor=4 if config.workers else None)
        self.n_classes = len(dataset.label_set)
        self.teacher, self.strong, self.keys = teacher, strong, None if streamed else dataset.keys
        self.unlabelled = unlabelled_mask(dataset)
        # one seed per micro-batch, from (run seed, epoch, rank): a resumed epoch draws the same augmentation
        self.seeds = np.random.SeedSequence([config.seed, epoch, context.rank])
        accumulation = max(1, config.batch_size // (context.world_size * micro_batch_size))
        if streamed:
            dataset.set_epoch(epoch)
            dataset.balance_buffer = config.balance_buffer if config.sampler == "balanced" else 0
            self.clip_samples = dataset.clip_samples  # for a rank's padding micro-batches
            steps = max(math.ceil(n / (micro_batch_size * accumulation)) for n in dataset.shares())
            weight = 1.0 / (micro_batch_size * accumulation * context.world_size)
            self.loader = DataLoader(dataset, batch_size=micro_batch_size, **options)
            self.slots = [(weight, (i + 1) % accumulation == 0, None) for i in range(steps * accumulation)]
        else:
            plan = split_batches(epoch_order(config, dataset, epoch), config.batch_size, micro_batch_size, context)
            self.loader = DataLoader(dataset, batch_sampler=[indices for indices, _, _ in plan], **options)
            self.slots = [(weight, last, indices) for indices, weight, last in plan]

    def __len__(self) -> int:
        return len(self.slots)

    @property
    def n_steps(self) -> int:
        """Optimizer steps in the epoch."""
        return sum(last for _, last, _ in self.slots)

    def __iter__(self) -> Iterator[MicroBatch]:
        batches = iter(self.loader)
        seeds = self.seeds.generate_state(len(self.slots))
        for (weight, last, indices), seed in zip(self.slots, seeds):
            item = next(batches, None)
            if item is None:  # this rank's shards ran out before the others': take part with weight 0
                waves, targets = torch.zeros(1, self.clip_samples), torch.zeros(1, self.n_classes)
                teacher = None if self.teacher is None else targets
                yield MicroBatch(waves, targets, 0.0, last, seed=int(seed), teacher=teacher)
                continue
            waves, targets, *rest = item  # streamed: (..., keys[, stored events, strongly labelled])
            keys = tuple(rest[0]) if rest else tuple(indices)
            names = [self.keys[i] for i in keys] if self.keys is not None else keys
            teacher = None if self.teacher is None else self.teacher.targets(names)
            strong, strongly_labelled = (None, None) if self.strong is None else self.strong.batch(names)
            if len(rest) == 3:
                strong, strongly_labelled = rest[1], rest[2]
            unlabelled = None if self.unlabelled is None else torch.from_numpy(self.unlabelled[list(keys)])
            yield MicroBatch(waves, targets, weight, last, keys, int(seed), teacher, strong, strongly_labelled,
                             unlabelled)
