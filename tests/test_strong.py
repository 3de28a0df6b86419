"""Strong labels in training: frame targets from a DCASE TSV, the frame-level loss, the file checks."""

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, run_cli, tiny_config

from audioscene import train as training
from audioscene.batches import MicroBatch
from audioscene.checkpoints import Checkpoint
from audioscene.data.folder import DataSetError
from audioscene.labels import LabelSet
from audioscene.strong import StrongLabels, frame_targets, mix_events

LABELS = LabelSet(("Cat", "Dog", "Speech"))


def _tsv(path, rows):
    path.write_text("filename\tonset\toffset\tevent_label\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


def test_frame_targets_are_the_share_of_each_frame_its_events_cover(tmp_path):
    """Frames of 0.5 s over a 2.2 s clip (5 frames, the last holding 0.2 s of audio)."""
    strong = StrongLabels.read(_tsv(tmp_path / "s.tsv", [
        ("a.wav", 0.25, 1.0, "Dog"),     # half of frame 0, all of frame 1
        ("a.wav", 0.9, 1.2, "Dog"),      # overlaps the one before: merged into 0.25-1.2
        ("a.wav", 1.6, 1.7, "Cat"),      # a short event: 0.2 of frame 3
        ("a.wav", 2.1, 9.0, "Speech"),   # runs past the clip's end: half of the last frame's 0.2 s of audio
        ("b.wav", 0.0, 0.5, "Cat"),
    ]), LABELS, keys=["a", "b", "c"])
    events, labelled = strong.batch(["a", "c", "b"])
    assert labelled.tolist() == [True, False, True] and events.shape == (3, 3, 4)
    got = frame_targets(events, n_frames=5, hop=0.5, n_classes=3, duration=2.2)
    expected = np.zeros((3, 5, 3), np.float32)
    expected[0, :, 1] = [0.5, 1.0, 0.4, 0, 0]  # Dog 0.25-1.2
    expected[0, 3, 0] = 0.2                    # Cat 1.6-1.7
    expected[0, 4, 2] = 0.5                    # Speech 2.1-(2.2)
    expected[2, 0, 0] = 1.0
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    # mixup: the mixed clip's targets are the mix of its clips' targets
    lam, order = 0.3, torch.tensor([2, 0, 1])
    mixed, both = mix_events(events, labelled, lam, order)
    np.testing.assert_allclose(frame_targets(mixed, 5, 0.5, 3, 2.2).numpy(),
                               lam * expected + (1 - lam) * expected[order.numpy()], atol=1e-6)
    assert both.tolist() == [True, False, False]


@pytest.mark.parametrize("row, problem", [
    (("a.wav", 0.0, 1.0, "Horse"), "s.tsv:3: unknown label 'Horse'"),
    (("zebra.wav", 0.0, 1.0, "Dog"), "s.tsv:3: zebra.wav is not a clip of the training data"),
    (("a.wav", 2.0, 1.0, "Dog"), "s.tsv:3: onset 2.0 is after offset 1.0"),
])
def test_a_bad_strong_label_file_names_file_and_line(tmp_path, row, problem):
    with pytest.raises((DataSetError, ValueError), match=problem):
        StrongLabels.read(_tsv(tmp_path / "s.tsv", [("a.wav", 0.0, 1.0, "Cat"), row]), LABELS, keys=["a"])


def test_the_strong_loss_with_weight_0_is_the_clip_loss_and_otherwise_adds_the_frame_bce(tiny_data, tmp_path):
    from audioscene.losses import bce_loss
    from audioscene.train import TrainConfig, build_learner

    waves, targets = torch.randn(4, 16000 * 3) * 0.1, (torch.rand(4, 3) < 0.5).float()
    events = torch.tensor([[[0.5, 2.0, 1, 1.0]], [[0, 0, 0, 0]], [[1.0, 1.5, 2, 1.0]], [[0, 0, 0, 0]]])
    labelled = torch.tensor([True, False, True, False])
    losses = {}
    for name, weight, strong in (("plain", 1.0, None), ("zero", 0.0, events), ("one", 1.0, events)):
        torch.manual_seed(0)
        learner = build_learner(TrainConfig(model="resnet_b_att", model_args={"width": 4}, device="cpu", amp=False,
                                            strong_weight=weight, clip_seconds=3.0), LABELS)
        learner.model.eval()  # BatchNorm with running statistics: the same outputs for the check below
        batch = MicroBatch(waves, targets, 0.25, strong=strong, strongly_labelled=None if strong is None else labelled)
        losses[name] = training.train_step(learner, batch)
    assert losses["zero"] == losses["plain"]  # the same forward in this process, the frame term left out: exact
    torch.manual_seed(0)
    learner = build_learner(TrainConfig(model="resnet_b_att", model_args={"width": 4}, device="cpu", amp=False,
                                        clip_seconds=3.0), LABELS)
    learner.model.eval()
    with torch.no_grad():
        out = learner.model(learner.frontend(waves))
    frames = frame_targets(events, out["framewise"].shape[1], 0.32, 3, 3.0)
    frame_bce = bce_loss(out["framewise"], frames, reduction="none").mean(dim=(1, 2)) * labelled
    assert losses["one"] == pytest.approx(losses["plain"] + 0.25 * float(frame_bce.sum()), rel=1e-5)


def test_a_run_trains_with_strong_labels_on_a_finer_grid(tiny_data, tmp_path):
    strong = tiny_data / "train" / "strong.tsv"
    result = run_cli("train", "--data", str(tiny_data / "train"), "--eval-data", str(tiny_data / "eval"),
                     "--model-arg", "width=8", "--model-arg", "time_stride=8", "--epochs", "1", "--batch-size", "16",
                     "--strong-labels", str(strong), "--strong-weight", "0.5", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-2000:]
    state = Checkpoint.load(tmp_path / "run" / "epoch_001.pt")
    assert state.train_config["strong_weight"] == 0.5 and state.train_config["strong_labels"] == str(strong)
    model, _, _ = state.build()
    assert model.frame_hop == pytest.approx(0.08)
    bad = _tsv(tmp_path / "bad.tsv", [("synth_000000.flac", 0.0, 1.0, "Horse")])
    assert_one_line_error(run_cli("train", "--data", str(tiny_data / "train"), "--eval-data", str(tiny_data / "eval"),
                                  "--strong-labels", str(bad), "--out", str(tmp_path / "bad")),
                          "bad.tsv:2: unknown label 'Horse'")
    with pytest.raises(ValueError, match="strong_weight must be a finite number >= 0"):
        tiny_config(tiny_data, tmp_path / "x", strong_weight=-1.0)


def test_packed_events_stream_with_their_clips_and_train_like_the_tsv(tiny_data, tmp_path):
    from audioscene.batches import EpochPlan
    from audioscene.config import TrainConfig
    from audioscene.data.folder import ClipDataset
    from audioscene.data.store import ShardDataset, ShardError
    from audioscene.distributed import Context

    clips = ClipDataset.from_folder(tiny_data / "train", clip_seconds=1.0)
    rows = [r.split("\t") for r in (tiny_data / "train" / "strong.tsv").read_text().splitlines()[1:]]
    named = sorted({Path(r[0]).stem for r in rows})[:40]  # some clips strongly labelled, the rest not
    tsv = _tsv(tmp_path / "some.tsv", [r for r in rows if Path(r[0]).stem in named])
    strong = StrongLabels.read(tsv, clips.label_set, clips.keys)
    packed = run_cli("pack", "--data", str(tiny_data / "train"), "--strong-labels", str(tsv), "--shard-mb", "0.1",
                     "--out", str(tmp_path / "shards"))
    assert packed.returncode == 0 and "packed 64 clips (40 with their events)" in packed.stdout, packed.stderr
    stream = ShardDataset(tmp_path / "shards", clip_seconds=1.0)
    assert stream.stores_events and stream.index["max_events"] == max(len(e) for e in strong.events.values())
    stream.with_events = True
    plan = EpochPlan(TrainConfig(batch_size=8), stream, True, 1, Context(), 8)
    seen = 0
    for batch in plan:
        expected, labelled = strong.batch(batch.keys)
        assert batch.strongly_labelled.tolist() == labelled.tolist()
        width = expected.shape[1]  # the TSV lookup pads to the batch's widest clip, the stream to max_events
        # exact: the same onsets/offsets (a float's repr reads back as itself) through the same `strong.padded`
        assert torch.equal(batch.strong[:, :width], expected) and not batch.strong[:, width:, 3].any()
        seen += len(batch.keys)
    assert seen == 64

    result = run_cli("train", "--data", f"shards:{tmp_path / 'shards'}", "--eval-data", str(tiny_data / "eval"),
                     "--model-arg", "width=4", "--epochs", "1", "--batch-size", "16", "--clip-seconds", "1",
                     "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "training on the strong labels stored in shards:" in result.stderr

    # a stored event is data: one that is not [onset, offset, label] names its shard and member
    import io
    import json
    import tarfile
    shard = tmp_path / "shards" / stream.index["shards"][0]["name"]
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    victim = next(m.name.split(".")[0] for m, _ in members if m.name.split(".")[0] in named)
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, data in members:
            if member.name == f"{victim}.json":
                data = json.dumps({**json.loads(data), "events": [[2.0, 1.0, "Dog"]]}).encode()
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    broken = ShardDataset(tmp_path / "shards", clip_seconds=1.0, shuffle=False)
    broken.with_events = True
    with pytest.raises(ShardError, match=rf"member {victim}.flac/.json cannot be used .*is not \[onset, offset"):
        list(broken)
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    (tmp_path / "shards" / "index.json").write_text(json.dumps({**index, "max_events": 10**9}))
    with pytest.raises(ShardError, match="'max_events' must be a whole number from 0 to 10000"):
        ShardDataset(tmp_path / "shards")
