"""The modern recipe's pieces: mixup, SpecAugment, the learning-rate schedule, the moving average of
the weights, knowledge distillation from a teacher file and class-balanced streaming."""

from collections import Counter

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, run_cli, tiny_config

from audioscene import train as training
from audioscene.batches import MicroBatch
from audioscene.checkpoints import Checkpoint
from audioscene.config import TrainConfig
from audioscene.data.folder import ClipDataset
from audioscene.data.sampler import balanced_stream
from audioscene.distill import Teacher, write_teacher
from audioscene.errors import ConfigError, InputError
from audioscene.evaluate import evaluate_run
from audioscene.labels import LabelSet
from audioscene.recipe import RECIPES, WeightAverage, lr_factor, mixup, spec_augment
from audioscene.train import bce_loss, build_learner, train_step


def test_mixup_mixes_targets_as_it_mixes_inputs():
    rng = np.random.default_rng(3)
    inputs, targets = torch.randn(6, 50), (torch.rand(6, 4) < 0.5).float()
    mixed, (mixed_targets, none), lam = mixup(inputs, [targets, None], 0.3, np.random.default_rng(3))
    rng.beta(0.3, 0.3)  # λ, then the permutation: the draws mixup makes
    order = torch.from_numpy(rng.permutation(6))
    assert 0 < lam < 1 and none is None
    torch.testing.assert_close(mixed, lam * inputs + (1 - lam) * inputs[order])
    torch.testing.assert_close(mixed_targets, lam * targets + (1 - lam) * targets[order])
    assert float(mixed_targets.sum()) == pytest.approx(float(targets.sum()), rel=1e-5)  # the batch's label mass is kept
    again, _, same = mixup(inputs, [targets], 0.3, np.random.default_rng(3))
    assert same == lam and torch.equal(again, mixed)  # reproducible from the seed


def _runs(mask: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a 1-d mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))


def test_spec_augment_masks_only_within_the_configured_widths():
    features = torch.randn(8, 300, 64) + 10  # no value equals the fill by chance
    out = spec_augment(features, np.random.default_rng(0), time_masks=2, time_width=30, freq_masks=2, freq_width=6,
                       fill=-4.6)
    masked = (out == -4.6).numpy()
    assert masked.any()
    for clip in masked:
        time_rows, band_cols = clip.all(axis=1), clip.all(axis=0)
        assert np.array_equal(clip, time_rows[:, None] | band_cols[None, :])  # stripes only
        for runs, widest, count in ((_runs(time_rows), 30, 2), (_runs(band_cols), 6, 2)):
            assert sum(runs) <= widest * count and all(r <= widest * count for r in runs)
    unmasked = ~masked
    assert torch.equal(out[torch.from_numpy(unmasked)], features[torch.from_numpy(unmasked)])


def test_spec_augment_and_mixup_never_touch_evaluation(tiny_data):
    clips = ClipDataset.from_folder(tiny_data / "eval", clip_seconds=2.0)
    labels = clips.label_set
    plain = build_learner(TrainConfig(model="resnet_b_att", width=4, device="cpu", amp=False), labels)
    modern = build_learner(TrainConfig(model="resnet_b_att", width=4, device="cpu", amp=False, recipe="modern",
                                       input_norm=False), labels)  # the same model: only the augmentation differs
    assert modern.config.spec_time_masks == 2 and modern.config.mixup_alpha > 0
    np.testing.assert_array_equal(training.evaluate_epoch(plain, clips, progress=False),
                                  training.evaluate_epoch(modern, clips, progress=False))


def test_learning_rate_schedule_values():
    assert [lr_factor(s, 100) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    assert [lr_factor(s, 100, "cosine", warmup_steps=10) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert lr_factor(10, 100, "cosine", 10, floor=0.01) == pytest.approx(1.0)
    assert lr_factor(99, 100, "cosine", 10, floor=0.01) == pytest.approx(0.01)
    assert lr_factor(10 + 89 / 2, 100, "cosine", 10) == pytest.approx(0.5)
    assert lr_factor(99, 100, "linear", 0, floor=0.2) == pytest.approx(0.2)
    assert lr_factor(50, 101, "linear") == pytest.approx(0.5)


def test_weight_average_equals_a_hand_computed_average():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.9)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for t in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(4, 3))  # moves the BatchNorm statistics
        average.update(model)
        decay = min(0.9, (1 + t) / (10 + t))
        for k, v in model.state_dict().items():
            expected[k] = v.clone() if not v.is_floating_point() else decay * expected[k] + (1 - decay) * v
    for k, v in expected.items():
        torch.testing.assert_close(average.weights[k], v)


def test_distillation_with_lambda_zero_is_plain_bce_and_the_teacher_file_round_trips(tmp_path):
    labels = LabelSet(("a", "b", "c"))
    probs = np.array([[0.9, 0.1, 0.5], [0.2, 0.7, 0.01]], np.float32)
    path = write_teacher(tmp_path / "teacher.npz", ["clip_a", "clip_b"], probs, labels)
    teacher = Teacher(path, labels)
    torch.testing.assert_close(teacher.targets(["clip_b", "clip_a"]), torch.from_numpy(probs[[1, 0]]), atol=2e-6,
                               rtol=0)
    sharper = Teacher(path, labels, temperature=0.5).targets(["clip_a"])
    assert sharper[0, 0] > 0.9 and sharper[0, 1] < 0.1 and sharper[0, 2] == pytest.approx(0.5)
    with pytest.raises(InputError, match=r"2 of 3 training clips have no teacher prediction \(e.g. 'x'\)"):
        teacher.require(["clip_a", "x", "y"])
    with pytest.raises(InputError, match="labels differ"):
        Teacher(path, LabelSet(("a", "b")))
    with pytest.raises(InputError, match="occurs twice"):
        write_teacher(tmp_path / "dup.npz", ["k", "k"], probs, labels)
    torch.manual_seed(0)
    waves, targets, soft = torch.randn(4, 16000) * 0.1, (torch.rand(4, 3) < 0.5).float(), torch.rand(4, 3)
    batch = MicroBatch(waves, targets, 0.25, teacher=soft)

    def loss(kd_lambda, teacher=str(path)):
        learner = build_learner(TrainConfig(model="resnet_b_att", width=4, device="cpu", amp=False, teacher=teacher,
                                            kd_lambda=kd_lambda), labels)
        learner.model.train()
        with torch.no_grad():
            clipwise = learner.model(learner.frontend(waves))["clipwise"]
        return train_step(learner, batch), clipwise

    plain, clipwise = loss(0.0, teacher="")
    assert loss(0.0)[0] == pytest.approx(plain, rel=1e-6)  # λ = 0: the teacher is ignored
    expected = (0.7 * bce_loss(clipwise, targets, reduction="none") + 0.3 * bce_loss(clipwise, soft, reduction="none"))
    assert loss(0.3)[0] == pytest.approx(float(expected.mean()), rel=1e-5)
    with pytest.raises(ConfigError, match="needs a teacher file"):
        TrainConfig(kd_lambda=0.5)


def test_balanced_stream_draws_classes_about_equally():
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=3000, p=[0.85, 0.12, 0.03])  # imbalanced, one class per clip
    items = [(torch.zeros(1), torch.nn.functional.one_hot(torch.tensor(k), 3).float(), f"k{i}")
             for i, k in enumerate(labels)]
    drawn = list(balanced_stream(iter(items), 300, np.random.default_rng(1)))
    assert len(drawn) == len(items)  # one draw per clip read
    counts = Counter(int(item[1].argmax()) for item in drawn)
    assert all(abs(counts[k] / len(drawn) - 1 / 3) < 0.05 for k in range(3)), counts  # stated tolerance: ±5 points
    assert Counter(labels.tolist())[2] < counts[2]  # rare clips repeat


def test_modern_run_trains_resumes_and_reports_its_weight_average(tiny_data, tmp_path):
    config = tiny_config(tiny_data, tmp_path / "modern", recipe="modern", epochs=2)
    assert {key: getattr(config, key) for key in RECIPES["modern"]} == RECIPES["modern"]
    run = training.train(config, progress=False)
    state = Checkpoint.load(run / "epoch_002.pt")
    assert state.ema["updates"] == 2 * 4 and state.recipe["steps_done"] == 8  # 64 clips / batch 16, 2 epochs
    assert state.recipe["total_steps"] == 8
    assert state.train_config["mixup_alpha"] == 0.3
    result = evaluate_run(run, tiny_data / "eval", device="cpu", progress=False)
    assert result["ema_epoch"] in (1, 2) and 0 < result["ema"]["mAP"] <= 1
    printed = run_cli("evaluate", "--run", str(run), "--data", str(tiny_data / "eval"))
    assert printed.returncode == 0 and "modern (EMA weights, epoch" in printed.stdout
    assert_one_line_error(run_cli("train", "--data", "x", "--eval-data", "y", "--kd-lambda", "0.3"),
                          "needs a teacher file")


def test_a_run_teaches_another_through_predict(tiny_run, tiny_data, tmp_path):
    teacher = tmp_path / "teacher.npz"
    result = run_cli("predict", "--run", str(tiny_run), "--run", str(tiny_run), "--checkpoint", "last",
                     "--data", str(tiny_data / "train"), "-o", str(teacher))
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(teacher) as data:
        keys, probs = data["keys"].tolist(), data["probs"]
    assert keys == ClipDataset.from_folder(tiny_data / "train").keys and probs.shape == (64, 10)
    run = training.train(tiny_config(tiny_data, tmp_path / "student", epochs=1, teacher=str(teacher), kd_lambda=0.5),
                         progress=False)
    assert Checkpoint.load(run / "epoch_001.pt").history[0]["train_loss"] > 0
    only_eval = tmp_path / "eval_teacher.npz"
    assert run_cli("predict", "--run", str(tiny_run), "--data", str(tiny_data / "eval"), "-o",
                   str(only_eval)).returncode == 0
    assert_one_line_error(run_cli("train", "--data", str(tiny_data / "train"), "--eval-data", str(tiny_data / "eval"),
                                  "--teacher", str(only_eval), "--kd-lambda", "0.5", "--width", "4",
                                  "--out", str(tmp_path / "x")),
                          "40 of 64 training clips have no teacher prediction (e.g. 'synth_000024')")  # eval has 24
