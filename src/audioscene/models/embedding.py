"""Table 2's embedding baselines: models on AudioSet's released embedding sequences `[B, T, 128]`
(one embedding per 0.96 s; `data.embeddings`), not on log-mel.

Both start with the same *embedded mapping*: three fully connected layers (with biases, as Keras'
`Dense`), each followed by batch norm, ReLU and dropout, applied to every embedding (batch norm
statistics over clips and time steps, as Keras computes them on a sequence); Yu et al.
batch-normalise the input first. They return `clipwise` `[B, K]` and `framewise` `[B, T, K]` (one frame per
0.96 s), like the ResNets, so evaluation, Avg and the SED tools take them unchanged.

`yu_multilevel_att` — Yu, Barsim, Kong & Yang, "Multi-level attention model for weakly supervised
audio classification" (DCASE 2018 workshop; Table 2's [22], 0.360 mAP). Numbers from the authors'
public Keras code (github.com/ChangsongYu/Eusipco2018_Google_AudioSet, `main.py`): 600 hidden
units, dropout 0.4, input batch norm; attention modules on the 2nd and 3rd hidden layers, each
`cla = sigmoid(BN(W_c h_t))` and `att = softmax(BN(W_a h_t))`, the softmax over classes as Keras
applies it to the last axis, then normalised over time: `y_l = Σ_t cla_t · att_t / Σ_t att_t`; the
levels' outputs concatenated into `sigmoid(BN(W [y_3, y_2]))`. Adam, learning rate 1e-3, batches of
500 (balanced). Framewise: the final layer applied to each frame's `[cla_3,t, cla_2,t]`.

`kong_att` — Kong, Yu, Xu, Iqbal, Wang & Plumbley, "Weakly labelled AudioSet tagging with attention
neural networks" (IEEE/ACM TASLP 2019): the *feature-level* attention network, whose 0.369 mAP /
0.969 AUC / 2.640 d′ are Table 2's [23] row (the ICASSP 2018 decision-level attention of Kong et al.
reported 0.327). Numbers from the authors' public code (github.com/qiuqiangkong/
audioset_classification, `keras/main.py`, `feature_level_attention`): 1024 hidden units, dropout
0.5; `cla_t = W_c h_t` (linear), `att_t = sigmoid(W_a h_t)`, both 1024-d, pooled as `Σ_t cla_t ·
att_t / Σ_t att_t`, then batch norm, ReLU, dropout and `sigmoid(W_o ·)`. Adam, learning rate 1e-3,
batches of 500. Framewise: the output layers applied to each frame's `cla_t`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..errors import InputError, check_number
from .registry import register_family

EPS = 1e-7


@dataclass(frozen=True)
class EmbeddingModelConfig:
    """Everything needed to rebuild an embedding model (stored in every checkpoint)."""

    name: str
    family: str = "embedding"
    n_classes: int = 527
    width: int = 600  # hidden units of the embedded mapping
    dropout: float = 0.4
    n_features: int = 128
    n_layers: int = 3
    input_norm: bool = True  # batch norm of the input embeddings (Yu et al.'s code has it, Kong et al.'s not)
    input_hop_s: float = 0.96  # one embedding per 0.96 s

    def __post_init__(self):
        for name in ("width", "n_layers", "n_features"):
            check_number(name, getattr(self, name), integer=True, low=1)
        check_number("dropout", self.dropout, low=0, high=1)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def frontend_settings(frontend) -> dict:
        return {}  # the input is AudioSet's released embeddings: nothing follows the log-mel front end


VARIANTS: dict[str, dict] = {
    "yu_multilevel_att": dict(width=600, dropout=0.4),
    "kong_att": dict(width=1024, dropout=0.5, input_norm=False),
}


class EmbeddedMapping(nn.Module):
    """Optional input batch norm, then `n_layers` × (linear, batch norm, ReLU, dropout) on every time
    step; returns each hidden layer's output `[B, T, width]`."""

    def __init__(self, n_features: int, width: int, n_layers: int, dropout: float, input_norm: bool):
        super().__init__()
        self.input_norm = nn.BatchNorm1d(n_features) if input_norm else nn.Identity()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(n_features if i == 0 else width, width), nn.BatchNorm1d(width), nn.ReLU(),
                          nn.Dropout(dropout)) for i in range(n_layers))

    def forward(self, x: Tensor) -> list[Tensor]:
        batch, time, _ = x.shape
        h = self.input_norm(x.reshape(batch * time, -1))  # (batch · time, features)
        hidden = []
        for layer in self.layers:
            h = layer(h)
            hidden.append(h.reshape(batch, time, -1))
        return hidden


def _normalised_pool(values: Tensor, weights: Tensor) -> Tensor:
    """`Σ_t v_t · w_t / Σ_t w_t` over time (dim 1), weights clamped to [EPS, 1 − EPS] as in the authors' code."""
    weights = weights.clamp(EPS, 1 - EPS)
    return (values * weights).sum(dim=1) / weights.sum(dim=1)


class LevelAttention(nn.Module):
    """One of Yu et al.'s attention modules: frame class probabilities and their pooled clip value."""

    def __init__(self, width: int, n_classes: int):
        super().__init__()
        self.classifier = nn.Sequential(nn.Linear(width, n_classes), nn.BatchNorm1d(n_classes))
        self.attention = nn.Sequential(nn.Linear(width, n_classes), nn.BatchNorm1d(n_classes))

    def forward(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        batch, time, width = hidden.shape
        flat = hidden.reshape(batch * time, width)  # batch norm over clips and time steps
        frames = torch.sigmoid(self.classifier(flat)).reshape(batch, time, -1)  # (batch, time, classes)
        weights = torch.softmax(self.attention(flat), dim=-1).reshape(batch, time, -1)  # over classes (see above)
        return frames, _normalised_pool(frames, weights)


@register_family("embedding", EmbeddingModelConfig, VARIANTS)
class EmbeddingModel(nn.Module):
    """Embedding sequence `[B, T, 128]` → `{"clipwise": [B, K], "framewise": [B, T, K], "embedding": [B, width],
    "frame_embedding": [B, T, width], "frame_hop": s}`."""

    head_prefix = "head."  # the classifier's state-dict keys: replaced when fine-tuning onto new labels
    takes_audio = exportable = False
    min_frames = 1

    def __init__(self, config: EmbeddingModelConfig):
        super().__init__()
        if config.name not in VARIANTS:
            raise InputError(f"unknown embedding model {config.name!r}; available: {', '.join(VARIANTS)}")
        self.config = config
        self.mapping = EmbeddedMapping(config.n_features, config.width, config.n_layers, config.dropout,
                                       config.input_norm)
        self.head = (YuHead if config.name == "yu_multilevel_att" else KongHead)(config)

    @property
    def frame_hop(self) -> float:
        return self.config.input_hop_s

    @property
    def normalises_input(self) -> bool:
        return self.config.input_norm

    def forward(self, embeddings: Tensor) -> dict[str, Tensor | float]:
        if embeddings.dim() != 3 or embeddings.shape[2] != self.config.n_features:
            raise InputError(f"expected embeddings of shape [batch, frames, {self.config.n_features}], "
                             f"got {tuple(embeddings.shape)}")
        hidden = self.mapping(embeddings)  # the last hidden layer per frame: the model's own embedding
        return {**self.head(hidden), "embedding": hidden[-1].mean(dim=1), "frame_embedding": hidden[-1],
                "frame_hop": self.frame_hop}


def _per_frame(layers: nn.Sequential, x: Tensor) -> Tensor:
    """`layers` applied to frames `[N, C]` as at inference (batch norm with its running statistics,
    no dropout) in any mode: frame outputs are read, never trained, and must not move the statistics
    that the clip outputs are normalised with."""
    for layer in layers:
        if isinstance(layer, nn.BatchNorm1d):
            x = nn.functional.batch_norm(x, layer.running_mean, layer.running_var, layer.weight, layer.bias,
                                         training=False, eps=layer.eps)
        elif not isinstance(layer, nn.Dropout):
            x = layer(x)
    return x


class YuHead(nn.Module):
    def __init__(self, config: EmbeddingModelConfig):
        super().__init__()
        self.levels = nn.ModuleList(LevelAttention(config.width, config.n_classes) for _ in range(2))
        self.output = nn.Sequential(nn.Linear(2 * config.n_classes, config.n_classes), nn.BatchNorm1d(config.n_classes))

    def forward(self, hidden: list[Tensor]) -> dict[str, Tensor]:
        (frames_3, clip_3), (frames_2, clip_2) = self.levels[0](hidden[-1]), self.levels[1](hidden[-2])
        clipwise = torch.sigmoid(self.output(torch.cat([clip_3, clip_2], dim=1)))
        batch, time, classes = frames_3.shape
        frames = torch.cat([frames_3, frames_2], dim=2).reshape(batch * time, 2 * classes)
        framewise = torch.sigmoid(_per_frame(self.output, frames)).reshape(batch, time, classes)
        return {"clipwise": clipwise, "framewise": framewise}


class KongHead(nn.Module):
    def __init__(self, config: EmbeddingModelConfig):
        super().__init__()
        self.classifier = nn.Linear(config.width, config.width)
        self.attention = nn.Linear(config.width, config.width)
        self.output = nn.Sequential(nn.BatchNorm1d(config.width), nn.ReLU(), nn.Dropout(config.dropout),
                                    nn.Linear(config.width, config.n_classes))

    def forward(self, hidden: list[Tensor]) -> dict[str, Tensor]:
        values = self.classifier(hidden[-1])  # (batch, time, width)
        pooled = _normalised_pool(values, torch.sigmoid(self.attention(hidden[-1])))
        clipwise = torch.sigmoid(self.output(pooled))
        batch, time, width = values.shape
        framewise = torch.sigmoid(_per_frame(self.output, values.reshape(batch * time, width))).reshape(batch, time, -1)
        return {"clipwise": clipwise, "framewise": framewise}
