"""The training step and the epoch plan: data specs parsed once, each protocol planned in one place,
and micro-batch weights that make accumulation and ranks equivalent to one whole batch."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from audioscene.batches import EpochPlan, MicroBatch, clips_per_epoch
from audioscene.data import DataSpec, OpenOptions
from audioscene.data.folder import ClipDataset, DataSetError
from audioscene.data.store import ShardDataset, pack
from audioscene.distributed import Context
from audioscene.errors import ConfigError
from audioscene.labels import LabelSet
from audioscene.train import TrainConfig, build_learner, train_epoch, train_step


@pytest.mark.parametrize("text, kind, path, split", [
    ("data/train", "dir", "data/train", ""),
    ("folder:clips", "folder", "clips", ""),
    ("dcase2018:/data/dcase:test", "dcase2018", "/data/dcase", "test"),
    ("shards:/s/train", "shards", "/s/train", ""),
    ("C:/odd:name", "dir", "C:/odd:name", ""),  # an unknown prefix is part of a plain path
])
def test_data_spec_parses_once_and_prints_back(text, kind, path, split):
    spec = DataSpec.parse(text)
    assert (spec.kind, spec.path, spec.split) == (kind, path, split)
    assert str(spec) == text and DataSpec.parse(str(spec)) == spec
    assert spec.streamed == (kind == "shards")


def test_data_spec_refuses_what_it_cannot_mean():
    with pytest.raises(DataSetError, match="applies to folder: specs only"):
        DataSpec.parse("data/train", "labels.csv")
    with pytest.raises(DataSetError, match="dcase2018:ROOT:SPLIT"):
        DataSpec.parse("dcase2018:test")
    with pytest.raises(DataSetError, match="empty path"):
        DataSpec.parse("folder:")
    with pytest.raises(ConfigError, match="shards:s: evaluation needs a map-style"):
        DataSpec.parse("shards:s").open_clips()


def test_each_folder_spec_carries_its_own_labels_file(tiny_data):
    spec = DataSpec.parse(f"folder:{tiny_data / 'train' / 'audio'}", tiny_data / "train" / "weak.csv")
    clips = spec.open(OpenOptions(clip_seconds=2.0))
    reference = ClipDataset.from_folder(tiny_data / "train", clip_seconds=2.0)
    assert clips.label_set == reference.label_set and np.array_equal(clips.targets, reference.targets)
    assert clips.clip_samples == 32000


def _plan_keys(config, dataset, streamed, world):
    """Keys (with weight > 0) each rank trains on, and each rank's number of micro-batches."""
    keys, lengths = [], []
    for rank in range(world):
        context = Context(rank, world)
        if streamed:
            dataset.rank, dataset.world_size = rank, world
        plan = EpochPlan(config, dataset, streamed, epoch=2, context=context, micro_batch_size=4)
        batches = list(plan)
        assert len(batches) == len(plan)
        keys.append([k for b in batches if b.weight > 0 for k in b.keys])
        lengths.append(len(batches))
    return keys, lengths


def test_epoch_plans_cover_every_clip_once_on_any_number_of_ranks(tiny_data, tmp_path):
    clips = ClipDataset.from_folder(tiny_data / "train", clip_seconds=1.0)
    pack(clips.clips, tmp_path / "shards", clips.label_set, shard_bytes=100_000, progress=False)
    stream = ShardDataset(tmp_path / "shards", clip_seconds=1.0)
    config = TrainConfig(batch_size=8, seed=4)
    for dataset, streamed in ((clips, False), (stream, True)):
        for world in (1, 2):
            keys, lengths = _plan_keys(config, dataset, streamed, world)
            assert len(set(lengths)) == 1  # every rank runs every step
            flat = [k for part in keys for k in part]
            assert len(flat) == len(set(flat)) == clips_per_epoch(dataset, streamed, config.unlabelled_share) == 64
    EpochPlan(TrainConfig(sampler="balanced", balance_buffer=20), stream, True, 1, Context(), 4)
    assert stream.balance_buffer == 20  # streams balance within a buffer (test_recipe checks the frequencies)


def test_micro_batches_accumulate_until_the_last_one_steps():
    """Micro-batches of one step add their weighted gradients (two of 4 clips weighing 1/8 each: the
    mean over the 8) and the optimizer steps, and clears them, only after the `last` one."""
    torch.manual_seed(0)
    waves, targets = torch.randn(8, 16000) * 0.1, (torch.rand(8, 3) < 0.3).float()
    halves = [MicroBatch(waves[:4], targets[:4], 1 / 8, last=False, keys=(0, 1, 2, 3)),
              MicroBatch(waves[4:], targets[4:], 1 / 8, last=False, keys=(4, 5, 6, 7))]
    config = TrainConfig(model="resnet_b_att", model_args={"width": 4}, amp=False, device="cpu", seed=1)
    first, second, both = (build_learner(config, LabelSet(("a", "b", "c"))) for _ in range(3))
    losses = train_step(first, halves[0]), train_step(second, halves[1])
    assert sum(train_step(both, half) for half in halves) == pytest.approx(sum(losses), rel=1e-6)
    for a, b, ab in zip(*(learner.raw_model.parameters() for learner in (first, second, both))):
        assert torch.equal(a, ab)  # no optimizer step before the last micro-batch (both the seeded init: exact)
        torch.testing.assert_close(ab.grad, a.grad + b.grad, rtol=1e-5, atol=1e-8)
    before = [p.detach().clone() for p in both.raw_model.parameters()]
    stats = train_epoch(both, [replace(halves[1], last=True)], progress=False)
    assert stats.seen == [4, 5, 6, 7] and np.isfinite(stats.loss)  # the keys trained on, for coverage
    assert not all(torch.equal(a, b) for a, b in zip(before, both.raw_model.parameters()))
    assert all(p.grad is None for p in both.raw_model.parameters())  # cleared for the next step
