"""The modern recipe's pieces: mixup, SpecAugment, the learning-rate schedule, the moving average of
the weights, knowledge distillation from a teacher file and class-balanced streaming."""

import re
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
from audioscene.recipe import RECIPES, Recipe, StepInputs, WeightAverage, lr_factor, mixup, spec_augment
from audioscene.losses import bce_loss
from audioscene.train import build_learner, train_step


def test_mixup_mixes_targets_as_it_mixes_inputs():
    rng = np.random.default_rng(3)
    inputs, targets = torch.randn(6, 50), (torch.rand(6, 4) < 0.5).float()
    mixed, (mixed_targets, none), lam, partner = mixup(inputs, [targets, None], 0.3, np.random.default_rng(3))
    rng.beta(0.3, 0.3)  # λ, then the permutation: the draws mixup makes
    order = torch.from_numpy(rng.permutation(6))
    assert torch.equal(partner, order)
    assert 0 < lam < 1 and none is None
    torch.testing.assert_close(mixed, lam * inputs + (1 - lam) * inputs[order])
    torch.testing.assert_close(mixed_targets, lam * targets + (1 - lam) * targets[order])
    assert float(mixed_targets.sum()) == pytest.approx(float(targets.sum()), rel=1e-5)  # the batch's label mass is kept
    again, _, same, _ = mixup(inputs, [targets], 0.3, np.random.default_rng(3))
    assert same == lam and torch.equal(again, mixed)  # reproducible from the seed (same kernel, same process)


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
    plain = build_learner(TrainConfig(model="resnet_b_att", model_args={"width": 4}, device="cpu", amp=False), labels)
    modern = build_learner(TrainConfig(model="resnet_b_att", model_args={"width": 4}, device="cpu", amp=False, recipe="modern",
                                       input_norm=False), labels)  # the same model: only the augmentation differs
    assert modern.config.spec_time_masks == 2 and modern.config.mixup_alpha > 0
    plain_outputs = training.evaluate_epoch(plain, clips, progress=False)
    # The raw weights: the same values with the same requires_grad flags through the same kernels in
    # this process, so bit-identical by construction.
    np.testing.assert_array_equal(plain_outputs, training.evaluate_epoch(modern, clips, progress=False, weights="raw"))
    # The moving average (what "auto" evaluates) is a copy whose parameters do not require grad; on
    # some CPUs (AMD EPYC, AVX2) that selects another convolution kernel, whose sums round
    # differently: up to 2.4e-7 apart (relative 2e-5) on outputs in [0, 1]. An augmentation that
    # reached evaluation would move them by orders of magnitude more.
    np.testing.assert_allclose(plain_outputs, training.evaluate_epoch(modern, clips, progress=False),
                               rtol=1e-4, atol=1e-6)


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
        learner = build_learner(TrainConfig(model="resnet_b_att", model_args={"width": 4}, device="cpu", amp=False, teacher=teacher,
                                            kd_lambda=kd_lambda), labels)
        learner.model.train()
        with torch.no_grad():
            clipwise = learner.model(learner.frontend(waves))["clipwise"]
        return train_step(learner, batch), clipwise

    plain, clipwise = loss(0.0, teacher="")
    with pytest.raises(ConfigError, match="a teacher file without kd_lambda teaches nothing"):
        loss(0.0)  # λ = 0 would ignore the teacher silently
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
    assert result.ema.epoch in (1, 2) and 0 < result.ema.summary["mAP"] <= 1
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
                                  "--teacher", str(only_eval), "--kd-lambda", "0.5", "--model-arg", "width=4",
                                  "--out", str(tmp_path / "x")),
                          "40 of 64 training clips have no teacher prediction (e.g. 'synth_000024')")  # eval has 24


# --- input normalisation and where SpecAugment's stripes land ----------------------------------------

def test_spec_augment_without_normalisation_fills_each_clips_band_means():
    features = torch.randn(4, 200, 16) * 2 - 1
    out = spec_augment(features, np.random.default_rng(1), time_masks=2, time_width=40, freq_masks=2, freq_width=4)
    masked = out != features
    assert masked.any()
    means = features.mean(dim=1, keepdim=True).expand_as(features)
    torch.testing.assert_close(out[masked], means[masked])  # inside the data's range, never the silence value
    assert float(out.min()) >= float(features.min())


def test_with_input_normalisation_the_trunk_sees_stripes_at_zero_the_band_mean():
    from audioscene import models

    model = models.create("resnet_b_att", n_classes=3, width=4, input_norm=True).train()
    assert model.normalises_input and not models.create("resnet_b_att", n_classes=3, width=4).normalises_input
    seen = {}
    model.trunk.register_forward_pre_hook(lambda module, args: seen.update(x=args[0][:, 0]))
    logmel = torch.randn(3, 400, 64) * 1.4 - 0.7  # the proxy's log-mel scale: mean -0.7, std 1.4
    recipe = Recipe(TrainConfig(recipe="modern", device="cpu"), model, torch.optim.Adam(model.parameters()), 10)
    inputs = recipe.prepare(StepInputs(torch.zeros(3, 16000), torch.zeros(3, 3)), np.random.default_rng(0), model)
    assert len(inputs.augment) == 1  # SpecAugment, the one feature-stage ingredient of the modern recipe
    model(logmel, augment=inputs.augment)
    x = seen["x"]
    assert bool((x == 0).all(dim=2).any()) and bool((x == 0).all(dim=1).any())  # whole frames and bands at 0
    normalised = torch.nn.functional.batch_norm(logmel.transpose(1, 2), None, None, training=True).transpose(1, 2)
    kept = x != 0
    torch.testing.assert_close(x[kept], normalised[kept], atol=1e-4, rtol=1e-4)  # the rest: the normalised input


def test_input_normalisation_is_stored_carried_into_fine_tuning_and_onnx_metadata(tiny_data, tmp_path, monkeypatch):
    from audioscene import export

    run = training.train(tiny_config(tiny_data, tmp_path / "norm", epochs=1, input_norm=True), progress=False)
    state = Checkpoint.load(run / "epoch_001.pt")
    assert state.model_config["input_norm"] and "input_norm.running_mean" in state.model
    model, _, _ = state.build(run / "epoch_001.pt")
    assert not torch.equal(model.input_norm.running_mean, torch.zeros(64))  # statistics learnt from the data
    fine, _ = training.configure(dict(train_data="a", eval_data="b", init=str(run / "epoch_001.pt")))
    assert fine.input_norm and fine.model_config(3).input_norm  # the checkpoint's, not the paper recipe's off
    captured = {}
    monkeypatch.setattr(export, "check_parity", lambda data, *args, **kwargs: captured.setdefault("onnx", data) and
                        export.Parity(0.0, 0.0, 1e-4, 0.0))
    export.export_onnx(run, tmp_path / "m.onnx")
    import onnx

    metadata = {p.key: p.value for p in onnx.load_from_string(captured["onnx"]).metadata_props}
    assert '"input_norm": true' in metadata[export.METADATA_KEY]


# --- balanced sampling keeps the clips without labels -------------------------------------------------

def test_balanced_sampling_draws_unlabelled_clips_at_their_share():
    from audioscene.data.sampler import BalancedSampler

    rng = np.random.default_rng(0)
    targets = np.zeros((500, 4))
    targets[np.arange(400), rng.choice(4, 400, p=[0.7, 0.2, 0.07, 0.03])] = 1  # 100 clips (20 %) have no label
    sampler = BalancedSampler(targets, seed=3)
    drawn = [i for epoch in range(4) for i in (sampler.set_epoch(epoch), list(sampler))[1]]
    unlabelled = np.mean([targets[i].sum() == 0 for i in drawn])
    assert unlabelled == pytest.approx(0.2, abs=0.005)  # their share: 100 of every 500 draws
    assert len({i for i in drawn if targets[i].sum() == 0}) == 100  # each of them, none dropped
    per_class = Counter(int(targets[i].argmax()) for i in drawn if targets[i].sum())
    assert max(per_class.values()) / min(per_class.values()) < 1.05  # the labelled draws stay balanced

    items = [(torch.zeros(1), torch.from_numpy(t).float(), f"k{i}") for i, t in enumerate(targets)]
    streamed = list(balanced_stream(iter(items * 4), 250, np.random.default_rng(1)))
    assert len(streamed) == len(items) * 4
    share = np.mean([float(item[1].sum()) == 0 for item in streamed])
    assert share == pytest.approx(0.2, abs=0.03)  # stated tolerance: ±3 points (a buffer's share varies)


def test_balanced_epochs_record_the_distinct_clips_seen(tmp_path):
    from audioscene.data.synthetic import generate

    data = generate(tmp_path / "d", n_clips=20, seed=4, progress=False)
    rows = (data / "weak.csv").read_text().splitlines()
    rows[1:5] = [row.split(",")[0] + "," for row in rows[1:5]]  # four background clips without labels
    (data / "weak.csv").write_text("\n".join(rows) + "\n")
    config = TrainConfig(train_data=str(data), eval_data=str(data), out_dir=str(tmp_path / "run"), model_args={"width": 4},
                         batch_size=10, epochs=1, sampler="balanced", device="cpu", seed=2)
    coverage = Checkpoint.load(training.train(config, progress=False) / "epoch_001.pt").coverage
    assert coverage["clips"] == 20 and 0 < coverage["distinct"] <= 20


# --- the schedule on resume, and steps the loss scaler skips --------------------------------------------

def test_an_extended_cosine_run_continues_at_its_floor_without_a_jump(tiny_data, tmp_path, caplog):
    config = tiny_config(tiny_data, tmp_path / "cos", lr_schedule="cosine", lr_floor=0.1, epochs=2)
    run = training.train(config, progress=False)
    state = Checkpoint.load(run / "epoch_002.pt")
    assert state.recipe == {"steps_done": 8, "total_steps": 8}  # no ingredient of the run keeps a state
    with caplog.at_level("WARNING"):
        learner = build_learner(config, state.label_set, state=state, total_steps=12)  # resume --epochs 3
    assert "continue at its floor" in caplog.text
    rates = []
    for _ in range(4):
        rates.append(learner.optimizer.param_groups[0]["lr"])
        learner.recipe.after_step(learner.raw_model)
    assert rates == pytest.approx([1e-3 * 0.1] * 4)  # the floor, as the last step of the 2-epoch run
    training.resume(run, epochs=3, progress=False)
    extended = Checkpoint.load(run / "epoch_003.pt")
    assert extended.optimizer["param_groups"][0]["lr"] == pytest.approx(1e-4)
    assert extended.recipe["total_steps"] == 8 and extended.recipe["steps_done"] == 12


def test_a_step_the_loss_scaler_skips_advances_neither_schedule_nor_average(tiny_data):
    labels = ClipDataset.from_folder(tiny_data / "eval").label_set
    learner = build_learner(TrainConfig(model_args={"width": 4}, device="cpu", amp=False, lr_schedule="linear", ema_decay=0.9),
                            labels, total_steps=10)
    learner.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    waves, targets = torch.randn(2, 16000) * 0.1, torch.zeros(2, 10)
    overflow = next(learner.raw_model.parameters()).register_hook(lambda grad: grad * float("inf"))
    train_step(learner, MicroBatch(waves, targets, 0.5))  # an Inf gradient, as fp16 overflows: the scaler skips
    overflow.remove()
    assert learner.recipe.steps_done == 0 and learner.recipe.ema.updates == 0 and learner.scaler.get_scale() < 2.0 ** 10
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    train_step(learner, MicroBatch(waves, targets, 0.5))
    assert learner.recipe.steps_done == 1 and learner.recipe.ema.updates == 1
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * lr_factor(1, 10, "linear"))


def test_mixup_is_refused_with_micro_batches_of_one(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="needs at least 2 per micro-batch"):
        training.train(tiny_config(tiny_data, tmp_path / "m", mixup_alpha=0.2, micro_batch_size=1), progress=False)


# --- the weight average is the run's weights ---------------------------------------------------------------

def test_the_weight_average_is_what_a_run_scores_picks_and_ships(tiny_data, tmp_path, monkeypatch):
    import csv

    from audioscene import export
    from audioscene.distill import predict_to_file
    from audioscene.infer import Tagger
    from audioscene.metrics import summarize
    from audioscene.predictor import Predictor

    run = training.train(tiny_config(tiny_data, tmp_path / "ema", ema_decay=0.8, epochs=2), progress=False)
    path = run / "epoch_002.pt"
    state = Checkpoint.load(path)
    eval_set = ClipDataset.from_folder(tiny_data / "eval")
    ema_model, frontend, _ = state.build(path, "ema")
    raw_model, _, _ = state.build(path, "raw")
    scores = {which: summarize(eval_set.targets, Predictor([m], frontend, "cpu").predict(eval_set, progress=False)[
        "clipwise"]) for which, m in (("ema", ema_model), ("raw", raw_model))}
    assert scores["ema"]["mAP"] != scores["raw"]["mAP"]
    with open(run / "metrics.csv", newline="") as f:
        last = list(csv.DictReader(f))[-1]
    assert float(last["mAP"]) == pytest.approx(scores["ema"]["mAP"], abs=1e-6)  # the epoch's score is the average's
    assert float(last["raw_mAP"]) == pytest.approx(scores["raw"]["mAP"], abs=1e-6)  # the raw weights beside it
    assert state.history[-1]["mAP"] == pytest.approx(scores["ema"]["mAP"], abs=1e-6)  # so "best" is chosen on it

    def same(model, reference):  # the same stored tensors loaded twice: exact
        return all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))

    assert same(Tagger.from_run(run, "last").models[0], ema_model)
    assert same(Tagger.from_run(run, "last", weights="raw").models[0], raw_model)
    teacher = predict_to_file([run], str(tiny_data / "eval"), tmp_path / "t.npz", checkpoint="last", progress=False)
    with np.load(teacher) as data:
        np.testing.assert_allclose(data["probs"], Predictor([ema_model], frontend, "cpu").predict(
            eval_set, progress=False)["clipwise"], atol=1e-6)
    exported = {}
    monkeypatch.setattr(export, "export_model", lambda model, *args, **kw: exported.setdefault("model", model))
    export.export_onnx(run, tmp_path / "m.onnx", "last")
    assert same(exported["model"], ema_model)


def test_the_recipe_flags_of_the_issue_train_and_are_stored(tiny_data, tmp_path):
    result = run_cli("train", "--data", str(tiny_data / "train"), "--eval-data", str(tiny_data / "eval"), "--recipe",
                     "modern", "--mixup-alpha", "0.2", "--ema-decay", "0.99", "--warmup-fraction", "0.1",
                     "--lr-floor", "0.05", "--model-arg", "width=4", "--epochs", "1", "--batch-size", "16",
                     "--out", str(tmp_path / "flags"))
    assert result.returncode == 0, result.stderr[-2000:]
    stored = Checkpoint.load(tmp_path / "flags" / "epoch_001.pt").train_config
    assert (stored["mixup_alpha"], stored["ema_decay"], stored["warmup_fraction"], stored["lr_floor"]) == (
        0.2, 0.99, 0.1, 0.05)
    assert stored["input_norm"] is True and stored["sampler"] == "balanced"


def test_predict_refuses_to_write_over_a_file_of_its_data(tiny_run, tiny_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data / "eval", data)
    before = (data / "weak.csv").read_bytes()
    assert_one_line_error(run_cli("predict", "--run", str(tiny_run), "--data", str(data), "-o", str(data / "weak.csv")),
                          "weak.csv: is also an input")
    assert (data / "weak.csv").read_bytes() == before
    assert run_cli("predict", "--run", str(tiny_run), "--data", str(data), "-o",
                   str(data / "teacher.npz")).returncode == 0  # a new file beside the data is fine


def _teacher_file(path, **arrays):
    """An .npz with the teacher file's arrays, some replaced by `arrays`."""
    values = dict(format=np.array("audioscene-teacher/1"), keys=np.array(["a", "b"]),
                  probs=np.array([[0.1, 0.9], [0.5, 0.5]], np.float32), labels=np.array(["x", "y"]))
    np.savez(path, **{**values, **arrays})
    return path


@pytest.mark.parametrize("arrays, fragment", [
    (dict(probs=np.array([[0.1, 0.9, 0.3], [0.5, 0.5, 0.1]], np.float32)), "must be numbers of shape (2 keys, 2 labels)"),
    (dict(probs=np.array([0.1, 0.9], np.float32)), "must be numbers of shape"),
    (dict(probs=np.array([["0.1", "0.9"], ["0.5", "0.5"]])), "must be numbers of shape"),
    (dict(probs=np.array([[0.1, 0.9]], np.float32)), "must be numbers of shape"),
    (dict(keys=np.array([["a"], ["b"]])), "'keys' must be a list of strings"),
    (dict(probs=np.array([[np.nan, 0.9], [0.5, 0.5]], np.float32)), "1 probabilities outside [0, 1] (e.g. nan for clip 'a'"),
    (dict(probs=np.array([[np.inf, -3], [7.5, 0.5]], np.float32)), "3 probabilities outside [0, 1]"),
    (dict(keys=np.array(["a", "a"])), "clip key 'a' occurs 2 times"),
    (dict(format=np.array("other/1")), "not a teacher file (format other/1)"),
])
def test_a_teacher_file_is_checked_whole_before_training(tmp_path, arrays, fragment):
    from audioscene.distill import read_teacher

    with pytest.raises(InputError, match=re.escape(fragment)):
        read_teacher(_teacher_file(tmp_path / "t.npz", **arrays))


def test_teacher_files_that_would_exhaust_memory_or_are_not_npz_give_one_error(tmp_path):
    import zipfile

    from audioscene.distill import read_teacher

    good = _teacher_file(tmp_path / "good.npz")
    assert read_teacher(good)[0] == ["a", "b"]
    huge = tmp_path / "huge.npz"  # a 3 KB file whose header claims 10^12 floats
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(huge, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "probs.npy":
                data = data.replace(b"(2, 2)", b"(1000000, 1000000)")
            target.writestr(info, data)
    with pytest.raises(InputError, match=r"'probs' claims shape \(1000000, 1000000\)"):
        read_teacher(huge)
    bomb = tmp_path / "bomb.npz"  # zeros that deflate 1000:1
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in (("format", np.array("audioscene-teacher/1")), ("keys", np.array(["a"] * 200_000)),
                            ("labels", np.array(["x", "y"])), ("probs", np.zeros((200_000, 2), np.float32))):
            with archive.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, array)
    with pytest.raises(InputError, match="would expand from"):
        read_teacher(bomb)
    for name, content in (("empty.npz", b""), ("truncated.npz", good.read_bytes()[:200])):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match="not a readable teacher file"):
            read_teacher(tmp_path / name)
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(InputError, match="not a readable teacher file"):
        read_teacher(tmp_path / "plain.npy")


def test_a_teacher_written_from_other_data_is_named_in_a_warning(tiny_run, tiny_data, tmp_path, caplog):
    teacher = tmp_path / "eval_teacher.npz"
    assert run_cli("predict", "--run", str(tiny_run), "--data", str(tiny_data / "eval"), "-o",
                   str(teacher)).returncode == 0
    labels = ClipDataset.from_folder(tiny_data / "eval").label_set
    from audioscene.data import DataSpec
    from audioscene.distill import data_identity

    with caplog.at_level("WARNING"):
        Teacher(teacher, labels).check_data(data_identity(DataSpec.parse(tiny_data / "train")))
    assert f"was written from {(tiny_data / 'eval').resolve()}" in caplog.text
    caplog.clear()
    Teacher(teacher, labels).check_data(data_identity(DataSpec.parse(tiny_data / "eval")))
    assert not caplog.text


# --- the mean teacher's batches: a fixed share of unlabelled clips ---------------------------------

def test_every_batch_holds_the_unlabelled_share_and_every_labelled_clip_once():
    from audioscene.batches import clips_per_epoch, epoch_order

    class Labelled:  # 40 labelled clips then 200 without labels, as `data.spec.WithUnlabelled` lays them out
        targets = np.r_[np.eye(4)[np.arange(40) % 4], np.zeros((200, 4))]
        unlabelled = np.r_[np.zeros(40, bool), np.ones(200, bool)]

    for sampler in ("shuffle", "balanced"):
        config = TrainConfig(sampler=sampler, unlabelled_share=0.25, seed=2)
        order = epoch_order(config, Labelled, epoch=3)
        assert len(order) == round(40 / 0.75) == 53 == clips_per_epoch(Labelled, False, 0.25)
        kinds = Labelled.unlabelled[order]
        assert all(kinds[i:i + 16].sum() == 4 for i in range(0, 48, 16))  # 4 of every 16: the share, batch by batch
        if sampler == "shuffle":
            assert sorted(np.asarray(order)[~kinds]) == list(range(40))  # an epoch passes once over the labelled
        assert len(set(np.asarray(order)[kinds])) == kinds.sum()  # unlabelled clips without repeats until used up
        assert order == epoch_order(config, Labelled, epoch=3) != epoch_order(config, Labelled, epoch=4)


def test_labelled_clips_mix_among_themselves_and_their_loss_is_their_mean():
    from audioscene.losses import Targets, clip_losses

    groups = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    _, _, _, partner = mixup(torch.randn(8, 5), [], 0.4, np.random.default_rng(1), groups)
    assert (groups[partner.numpy()] == groups).all() and sorted(partner.tolist()) == list(range(8))
    torch.manual_seed(0)
    out = {"clipwise": torch.rand(8, 3), "framewise": torch.rand(8, 4, 3)}
    targets, unlabelled = (torch.rand(8, 3) < 0.5).float(), torch.from_numpy(groups == 1)
    per_clip = clip_losses(out, Targets(targets, unlabelled), TrainConfig(unlabelled_share=0.5), hop=0.32)
    labelled_bce = bce_loss(out["clipwise"][~unlabelled], targets[~unlabelled], reduction="none").mean(dim=1)
    assert float(per_clip.mean()) == pytest.approx(float(labelled_bce.mean()), rel=1e-6)  # the batch's weight is 1/8
    assert not per_clip[unlabelled].any()
