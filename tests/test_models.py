import math

import pytest
import torch

from audioscene import models
from audioscene.errors import InputError
from audioscene.features import FrontendConfig
from audioscene.models.blocks import ResNetTrunk
from audioscene.models.heads import AttentionHead, channel_pool


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("block, layers, expected", [
    ("basic", (3, 4, 6, 3), 21_278_400),  # ResNet34 without fc, 1-channel stem
    ("bottleneck", (3, 4, 6, 3), 23_501_760),  # ResNet50
    ("bottleneck", (3, 4, 23, 3), 42_493_888),  # ResNet101
])
def test_trunk_parameter_counts_equal_imagenet_resnets(block, layers, expected):
    assert n_params(ResNetTrunk(block, layers, width=64)) == expected


@pytest.mark.parametrize("name, trunk_params, n_fc", [
    ("resnet_a", 23_501_760, 1), ("resnet_b", 23_501_760, 1), ("resnet_b_att", 23_501_760, 2),
    ("resnet_c_att", 21_278_400, 2), ("resnet_d_att", 42_493_888, 2),
])
def test_heads_add_one_fc_or_two_for_attention(name, trunk_params, n_fc):
    model = models.create(name, n_classes=527)
    features = model.trunk.out_channels
    assert n_params(model.trunk) == trunk_params
    assert n_params(model.head) == n_fc * 527 * (features + 1)


SMALL = dict(n_classes=7, width=8)


@pytest.fixture(scope="module", params=models.available("resnet"))
def small_model(request):
    torch.manual_seed(0)
    return models.create(request.param, **SMALL).eval()


def test_every_registry_entry_outputs_probabilities(small_model):
    with torch.no_grad():
        out = small_model(torch.randn(2, 998, 64))
    name = small_model.config.name
    t_out, hop = (11, 0.96) if name == "resnet_a" else (32, 0.32)
    assert out["clipwise"].shape == (2, 7)
    assert out["framewise"].shape == (2, t_out, 7)
    assert out["frame_hop"] == pytest.approx(hop) == small_model.frame_hop
    for key in ("clipwise", "framewise"):
        assert ((out[key] >= 0) & (out[key] <= 1)).all()


@pytest.mark.parametrize("n_frames", [10, 6000])
def test_short_and_long_inputs_work(small_model, n_frames):
    with torch.no_grad():
        out = small_model(torch.randn(1, n_frames, 64))
    assert out["clipwise"].shape == (1, 7)
    if small_model.config.name == "resnet_a":
        assert out["framewise"].shape[1] == -(-n_frames // 96)
    else:
        assert out["framewise"].shape[1] == max(-(-n_frames // 32), 1)


def test_gradients_reach_the_stem(small_model):
    small_model.train()
    out = small_model(torch.randn(2, 300, 64))
    out["clipwise"].sum().backward()
    stem_grad = small_model.trunk.stem[0].weight.grad
    assert stem_grad is not None and stem_grad.abs().sum() > 0
    small_model.zero_grad()
    small_model.eval()


@pytest.mark.parametrize("shape", [(998, 64), (2, 998, 40), (2, 1, 998, 64)])
def test_wrong_shape_is_a_clear_error(small_model, shape):
    with pytest.raises(ValueError, match=r"\[batch, frames, 64\]"):
        small_model(torch.zeros(shape))


def test_attention_weights_sum_to_one_and_pool_framewise():
    model = models.create("resnet_b_att", **SMALL).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 998, 64))
    attention = out["attention"]
    assert attention.shape == (3, 32, 7)
    torch.testing.assert_close(attention.sum(dim=1), torch.ones(3, 7))
    torch.testing.assert_close(out["clipwise"], (attention * out["framewise"]).sum(dim=1))


def test_global_pool_framewise_is_the_fc_per_frame():
    """For linear heads, the FC of the time-mean equals the time-mean of the per-frame logits."""
    model = models.create("resnet_b", **SMALL).eval()
    logmel = torch.randn(2, 998, 64)
    with torch.no_grad():
        out = model(logmel)
        frame_logits = model.head.fc(channel_pool(model.trunk(logmel[:, None])))  # (batch, time', classes)
    torch.testing.assert_close(out["framewise"], torch.sigmoid(frame_logits))
    torch.testing.assert_close(out["clipwise"], torch.sigmoid(frame_logits.mean(dim=1)), atol=1e-6, rtol=0)


def test_resnet_a_uses_eleven_examples_for_a_10s_clip():
    model = models.create("resnet_a", **SMALL).eval()
    calls = []
    model.trunk.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape))
    clip = torch.randn(2, 998, 64)
    with torch.no_grad():
        out = model(clip)
    assert calls == [(22, 1, 96, 64)]  # 2 clips x 11 examples, one batch
    torch.testing.assert_close(out["clipwise"], out["framewise"].mean(dim=1))
    # the 11th example is the last 38 frames followed by the log-mel of digital silence (not 0,
    # which is a loud value in the log domain)
    silence = FrontendConfig().silence
    assert silence == pytest.approx(math.log(0.01))
    padded = torch.cat([clip[:1, 960:], torch.full((1, 96 - 38, 64), silence)], dim=1)
    zero_padded = torch.cat([clip[:1, 960:], torch.zeros(1, 96 - 38, 64)], dim=1)
    with torch.no_grad():
        last, zero_last = model(padded)["clipwise"], model(zero_padded)["clipwise"]
    torch.testing.assert_close(last[0], out["framewise"][0, 10], atol=1e-6, rtol=0)
    assert (zero_last[0] - out["framewise"][0, 10]).abs().max() > 1e-3


def test_attention_clip_probability_never_exceeds_one():
    """All-certain frames: the float sum of softmax weights x 1.0 rounds past 1 for many classes
    (measured: ~1,000 of 4,216 by up to 4.8e-7); the clip output must stay a probability."""
    head = AttentionHead(16, 527)
    with torch.no_grad():
        head.classifier.weight.zero_()
        head.classifier.bias.fill_(30.0)  # sigmoid(30) == 1.0 in float32
        features = torch.randn(8, 16, 32, 2) * 3
        frames = channel_pool(features)
        unclamped = (torch.softmax(head.attention(frames), dim=1) * torch.sigmoid(head.classifier(frames))).sum(1)
        out = head(features)
    assert (unclamped > 1).any()  # the case exists
    assert out["clipwise"].max() <= 1 and out["clipwise"].min() >= 0


@pytest.mark.parametrize("n_classes, width", [(0, 8), (7, 0), (7, 8.5), (-1, 8)])
def test_create_checks_its_numbers(n_classes, width):
    with pytest.raises(ValueError, match="n_classes|width"):  # InputError or, for a family setting, ConfigError
        models.create("resnet_b", n_classes=n_classes, width=width)


def test_create_rejects_unknown_names_and_overrides():
    with pytest.raises(ValueError, match="available: resnet_a"):
        models.create("resnet_z")
    with pytest.raises(ValueError, match="colour: not a setting of the resnet family.*its settings: width"):
        models.create("resnet_b", colour="blue")


def test_config_round_trip_rebuilds_the_same_model():
    model = models.create("resnet_c_att", n_classes=5, width=8, stem_stride=1)
    rebuilt = models.from_config(model.config.to_dict())
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.config == model.config and rebuilt.frame_hop == pytest.approx(0.16)


def test_an_unknown_family_in_a_stored_config_is_named():
    with pytest.raises(InputError, match="unknown model family 'nope'"):
        models.from_config({"family": "nope"})


# one small variant of every family of the package, with the width of its embedding
EMBEDDING_CASES = [("resnet_b", dict(width=8), 64, 256), ("resnet_b_att", dict(width=8), 64, 256),  # 8 · 8 · 4
                   ("resnet_a", dict(width=8), 64, 256), ("cnn14_16k", {}, 64, 2048),
                   ("cnn14_decision_level_max", {}, 64, 2048), ("efficientat_mn04", {}, 128, 960 * 4 // 10),
                   ("efficientat_dymn04", {}, 128, 960 * 4 // 10), ("kong_att", dict(width=32), 128, 32),
                   ("yu_multilevel_att", dict(width=32), 128, 32)]


@pytest.mark.parametrize("name, settings, n_inputs, width", EMBEDDING_CASES)
def test_every_family_gives_the_embeddings_its_outputs_are_read_from(name, settings, n_inputs, width):
    torch.manual_seed(0)
    model = models.create(name, n_classes=5, **settings).eval()
    frames = 10 if not model.takes_audio else 998
    with torch.no_grad():
        out = model(torch.randn(2, frames, n_inputs))
    assert out["embedding"].shape == (2, width)
    assert out["frame_embedding"].shape == (2, out["framewise"].shape[1], width)  # one per output frame, same hop
    if name.startswith("efficientat"):  # the head reads them: the outputs follow from the embeddings
        head = model.classifier[2:]
        torch.testing.assert_close(out["clipwise"], torch.sigmoid(head(out["embedding"])))
        torch.testing.assert_close(out["framewise"], torch.sigmoid(head(out["frame_embedding"])))
    elif name == "cnn14_16k":
        torch.testing.assert_close(out["framewise"], torch.sigmoid(model.fc_audioset(out["frame_embedding"])))
    elif name == "resnet_b":  # global pooling: the clip embedding is the frames' mean, read by the classifier
        torch.testing.assert_close(out["embedding"], out["frame_embedding"].mean(dim=1))
        torch.testing.assert_close(out["clipwise"], torch.sigmoid(model.head.fc(out["embedding"])))
