"""The GPU paths, where a CUDA device exists (`pytest -m cuda`; benchmarks/gpu_check.sh runs them):
the front end, the models under bf16 autocast, training with AMP, inference and evaluation."""

import numpy as np
import pytest
import torch
from helpers import sine, tiny_config

from audioscene import models
from audioscene import train as training
from audioscene.checkpoints import Checkpoint
from audioscene.evaluate import evaluate_run
from audioscene.features import LogMel
from audioscene.infer import Tagger

pytestmark = pytest.mark.cuda


def test_frontend_on_the_gpu_equals_the_cpu():
    waves = torch.from_numpy(np.stack([sine(440 * (k + 1), 10.0, 16000) for k in range(4)]))
    on_cpu = LogMel()(waves)
    on_gpu = LogMel().cuda()(waves.cuda()).cpu()
    torch.testing.assert_close(on_gpu, on_cpu, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", models.available("resnet"))
def test_models_under_bf16_autocast_stay_close_to_fp32(name):
    torch.manual_seed(0)
    model = models.create(name, n_classes=10, width=16).cuda().eval()
    logmel = torch.randn(4, 998, 64, device="cuda")
    with torch.no_grad():
        fp32 = model(logmel)["clipwise"]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = model(logmel)["clipwise"].float()
    assert (bf16 - fp32).abs().max() < 0.05 and bf16.min() >= 0 and bf16.max() <= 1


def test_training_with_amp_then_tagging_and_evaluation(tiny_data, tmp_path):
    run = training.train(tiny_config(tiny_data, tmp_path / "run", device="cuda", epochs=1), progress=False)
    state = Checkpoint.load(run / "epoch_001.pt")
    assert state.history[0]["train_loss"] > 0 and np.isfinite(state.history[0]["mAP"])
    clip = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[0]
    on_gpu = Tagger.from_run(run, "last", device="cuda").analyze(clip)
    on_cpu = Tagger.from_run(run, "last", device="cpu").analyze(clip)
    np.testing.assert_allclose(on_gpu.framewise, on_cpu.framewise, atol=1e-4)
    fp32 = evaluate_run(run, tiny_data / "eval", device="cuda", progress=False)
    bf16 = evaluate_run(run, tiny_data / "eval", device="cuda", progress=False, amp=True)
    assert abs(fp32.avg["mAP"] - bf16.avg["mAP"]) < 0.05
