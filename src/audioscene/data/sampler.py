"""Class-balanced sampling for AudioSet-style imbalance (as PANNs' `BalancedTrainSampler`), for
map-style data (`BalancedSampler`) and for streams (`balanced_stream`).

AudioSet's most frequent label (Music) has ~1000× the clips of the rarest. Drawing uniformly over
clips, rare classes are seen a handful of times per epoch; drawing classes in turn gives every
class the same number of draws: a shuffled queue of the classes is popped one class per draw (and
refilled when empty), and the class gives the next clip of its own shuffled list of clips
(reshuffled when exhausted). Multi-label clips count for every class they carry.

Clips without any label (background recordings: the negatives a detector learns "nothing here"
from) are not in any class's list; they keep their share of the data instead: that share of the
draws, at random positions, takes the next clip of their own shuffled list. Balancing them as one
more class would give them 1 / (K + 1) of the draws whatever their number; dropping them (PANNs'
sampler, made for AudioSet, which has none) never shows the model a clip without sounds.
"""

from __future__ import annotations

from collections import deque
from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

from ..errors import InputError


class BalancedSampler(Sampler[int]):
    """Indices into a data set with `targets` `[N, K]`; `n_samples` per epoch (default N).

    The order depends only on `(seed, epoch)`; call `set_epoch` before each epoch. Classes without
    any clip are left out of the rotation; clips without labels take their share of the draws.
    """

    def __init__(self, targets: np.ndarray, n_samples: int | None = None, seed: int = 0):
        targets = np.asarray(targets)
        if targets.ndim != 2 or len(targets) == 0:
            raise InputError(f"expected multi-hot targets of shape [clips, classes], got {targets.shape}")
        self.clips_of_class = [np.flatnonzero(targets[:, k] > 0) for k in range(targets.shape[1])]
        self.classes = np.array([k for k, clips in enumerate(self.clips_of_class) if len(clips)])
        if len(self.classes) == 0:
            raise InputError("no clip has a positive label; nothing to balance")
        self.unlabelled = np.flatnonzero(~(targets > 0).any(axis=1))
        self.n_samples = len(targets) if n_samples is None else n_samples
        self.n_unlabelled_draws = round(self.n_samples * len(self.unlabelled) / len(targets))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_samples

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        queues = {k: list(rng.permutation(self.clips_of_class[k])) for k in self.classes}
        unlabelled_draw = np.zeros(self.n_samples, bool)
        unlabelled: list[int] = []
        if self.n_unlabelled_draws:
            unlabelled_draw[rng.permutation(self.n_samples)[:self.n_unlabelled_draws]] = True
        class_queue: list[int] = []
        for draw in range(self.n_samples):
            if unlabelled_draw[draw]:
                if not unlabelled:
                    unlabelled = list(rng.permutation(self.unlabelled))
                yield int(unlabelled.pop())
                continue
            if not class_queue:
                class_queue = list(rng.permutation(self.classes))
            k = class_queue.pop()
            if not queues[k]:
                queues[k] = list(rng.permutation(self.clips_of_class[k]))
            yield int(queues[k].pop())


def balanced_stream(items: Iterator[tuple], buffer_size: int, rng: np.random.Generator) -> Iterator[tuple]:
    """Class-balanced draws from a stream of `(input, target [K], ...)` items.

    A stream cannot draw any clip at any time, so this keeps the last `buffer_size` items read and,
    for every item read, yields one drawn from that buffer: a class chosen uniformly among the
    classes present in the buffer, then one of that class's buffered items (with replacement). As
    many items come out as go in, but classes come out about equally often, as far as the buffer
    holds them: rare-class clips repeat and frequent ones are skipped, as with `BalancedSampler`.
    Items without any label keep their share: a draw takes one of them with the probability of
    their share of the buffer.
    """
    buffer: dict[int, tuple] = {}  # read number → item; the newest `buffer_size` items
    by_class: dict[int, deque] = {}  # class → read numbers of its buffered items, oldest first
    unlabelled: deque = deque()  # read numbers of the buffered items without labels, oldest first
    n_read = n_drawn = 0

    def draw():
        oldest = n_read - len(buffer)
        for k in list(by_class):
            while by_class[k] and by_class[k][0] < oldest:
                by_class[k].popleft()
            if not by_class[k]:
                del by_class[k]
        while unlabelled and unlabelled[0] < oldest:
            unlabelled.popleft()
        if unlabelled and (not by_class or rng.random() < len(unlabelled) / len(buffer)):
            numbers = unlabelled
        elif by_class:
            numbers = by_class[sorted(by_class)[rng.integers(len(by_class))]]
        else:
            return None
        return buffer[numbers[rng.integers(len(numbers))]]

    for item in items:
        buffer[n_read] = item
        positives = np.flatnonzero(np.asarray(item[1])).tolist()
        if not positives:
            unlabelled.append(n_read)
        for k in positives:
            by_class.setdefault(k, deque()).append(n_read)
        n_read += 1
        if len(buffer) > buffer_size:
            del buffer[n_read - 1 - buffer_size]
        if len(buffer) == buffer_size and (drawn := draw()) is not None:
            n_drawn += 1
            yield drawn
    while n_drawn < n_read and (drawn := draw()) is not None:
        n_drawn += 1
        yield drawn
