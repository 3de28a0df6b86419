"""CED's audio transformers (Dinkel et al., ICASSP 2024: "Consistent ensemble distillation for audio
tagging"): a ViT over 16×16 patches of a 64-band log-mel, with separate time and frequency position
embeddings, distilled from an ensemble. Written after their `models/audiotransformer.py` (public
repository RicherMans/CED, commit 60a0f54); the module and parameter names follow theirs, so their
released weights load as they are (`pretrained.py`).

The input is the front end of kind "ced" (`features.CEDKind`: 64 bands every 10 ms at 16 kHz) as
`[B, T, 64]`. A BatchNorm over the bands (their `init_bn`), non-overlapping 16×16 patches (4 bands ×
T // 16 times; frames past the last whole patch are unused, as in theirs), learnt time and
frequency position embeddings added, twelve pre-norm blocks, a final LayerNorm. Their clip output is
the head (LayerNorm, linear, sigmoid) on the mean of all tokens; our `framewise` output applies the
same head to each time patch's mean over its 4 frequency tokens, one frame per 16 input frames (0.16 s),
so the clip output is the head on the mean of the vectors the frame outputs come from.

Lengths: the time position embedding covers `max_frames` = 1012 input frames (63 patches, 10.08 s).
A shorter input uses the first embeddings (theirs). A longer one is cut into chunks that run as one
batch, the last padded with zeros after the BatchNorm, and its clip output is the mean of the
chunks' (theirs); ours cuts at 63 whole patches (1008 frames, the frames their 1012-frame chunks
give patches to), so the frame outputs of consecutive chunks keep one hop, and keeps a last chunk
that is exactly full (theirs drops it). The tools never meet this: they window recordings at the
run's clip length.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..errors import InputError, check_number
from .registry import register_family


@dataclass(frozen=True)
class CEDConfig:
    """Everything needed to rebuild one of CED's transformers (stored in every checkpoint)."""

    name: str
    family: str = "ced"
    n_classes: int = 527
    embed_dim: int = 192
    depth: int = 12
    heads: int = 3
    mlp_ratio: float = 4.0
    patch: int = 16  # square patches, as many frames as bands
    max_frames: int = 1012  # their target_length: the input frames the time position embedding covers
    n_mels: int = 64
    input_hop_s: float = 0.01
    pad_value: float = -100.0  # the log-mel of silence: what inputs shorter than one patch are padded with

    def __post_init__(self):
        for name in ("embed_dim", "depth", "heads", "patch"):
            check_number(name, getattr(self, name), integer=True, low=1)
        check_number("mlp_ratio", self.mlp_ratio, low=0, low_open=True)
        if self.embed_dim % self.heads:
            raise InputError(f"embed_dim {self.embed_dim} is not a multiple of heads {self.heads}")
        if self.n_mels < self.patch or self.max_frames < self.patch:
            raise InputError(f"n_mels {self.n_mels} and max_frames {self.max_frames}: each at least one patch "
                             f"({self.patch})")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def frontend_settings(frontend) -> dict:
        return dict(n_mels=frontend.n_mels, input_hop_s=frontend.hop_ms / 1000, pad_value=frontend.silence)


VARIANTS: dict[str, dict] = {f"ced_{size}": dict(embed_dim=dim, heads=heads) for size, dim, heads in (
    ("tiny", 192, 3), ("mini", 256, 4), ("small", 384, 6), ("base", 768, 12))}


class SwapAxes(nn.Module):
    """Swap two axes (their `init_bn` moves the bands to the channel axis and back)."""

    def __init__(self, first: int, second: int):
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x: Tensor) -> Tensor:
        return x.transpose(self.first, self.second)


class PatchEmbed(nn.Module):
    """Non-overlapping patches, each projected to one token: `[B, 1, F, T]` → `[B, D, F / p, T / p]`."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, patch, patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Attention(nn.Module):
    """Multi-head self-attention over all tokens (no mask)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / √(dim / heads)) v
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer block (LayerNorm eps 1e-6, as theirs)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@register_family("ced", CEDConfig, VARIANTS)
class CED(nn.Module):
    """Log-mel `[B, T, n_mels]` (front end of kind "ced") → `{"clipwise": [B, K], "framewise":
    [B, T // 16, K], "embedding": [B, D], "frame_embedding": [B, T // 16, D], "frame_hop": s}` (see
    the module docstring)."""

    takes_audio = exportable = True
    normalises_input = True  # init_bn
    head_prefix = "outputlayer.1."  # the linear layer; the LayerNorm before it is kept when fine-tuning

    def __init__(self, config: CEDConfig):
        super().__init__()
        self.config = c = config
        self.init_bn = nn.Sequential(SwapAxes(1, 2), nn.BatchNorm2d(c.n_mels, momentum=0.01), SwapAxes(1, 2))
        self.patch_embed = PatchEmbed(c.patch, c.embed_dim)
        self.time_pos_embed = nn.Parameter(0.02 * torch.randn(1, c.embed_dim, 1, c.max_frames // c.patch))
        self.freq_pos_embed = nn.Parameter(0.02 * torch.randn(1, c.embed_dim, c.n_mels // c.patch, 1))
        self.blocks = nn.Sequential(*(Block(c.embed_dim, c.heads, c.mlp_ratio) for _ in range(c.depth)))
        self.norm = nn.LayerNorm(c.embed_dim, eps=1e-6)
        self.outputlayer = nn.Sequential(nn.LayerNorm(c.embed_dim), nn.Linear(c.embed_dim, c.n_classes))
        for module in self.modules():  # their initialisation: truncated normal linear weights, zero biases
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    @property
    def min_frames(self) -> int:
        return self.config.patch

    @property
    def max_frames(self) -> int:
        """The longest input that runs as one piece (longer ones are cut into chunks)."""
        return self.config.max_frames

    @property
    def frame_hop(self) -> float:
        return round(self.config.patch * self.config.input_hop_s, 6)

    def frame_vectors(self, x: Tensor) -> Tensor:
        """Normalised `[B, 1, F, T]` (T at most `max_frames`) → each time patch's mean token
        `[B, T // patch, D]`, after the blocks and the final norm."""
        x = self.patch_embed(x)  # (batch, dim, bands', times')
        x = x + self.time_pos_embed[:, :, :, :x.shape[3]] + self.freq_pos_embed
        bands = x.shape[2]
        tokens = self.norm(self.blocks(x.flatten(2).transpose(1, 2)))  # (batch, bands' · times', dim), band-major
        return tokens.unflatten(1, (bands, -1)).mean(dim=1)

    def forward(self, logmel: Tensor, augment=()) -> dict[str, Tensor | float]:
        c = self.config
        if logmel.dim() != 3 or logmel.shape[2] != c.n_mels:
            raise InputError(f"expected log-mel of shape [batch, frames, {c.n_mels}], got {tuple(logmel.shape)}")
        batch, n_frames = logmel.shape[:2]
        if n_frames < c.patch:
            logmel = nn.functional.pad(logmel, (0, 0, 0, c.patch - n_frames), value=c.pad_value)
        x = self.init_bn(logmel.transpose(1, 2)[:, None])  # (batch, 1, bands, frames)
        if augment:
            normalised = x[:, 0].transpose(1, 2)
            for transform in augment:
                normalised = transform(normalised)
            x = normalised.transpose(1, 2)[:, None]
        head = lambda vectors: torch.sigmoid(self.outputlayer(vectors))  # noqa: E731
        if x.shape[3] <= c.max_frames:
            frame_embedding = self.frame_vectors(x)
            embedding = frame_embedding.mean(dim=1)
            clipwise = head(embedding)
        else:
            chunk = c.max_frames // c.patch * c.patch
            n_chunks = -(-x.shape[3] // chunk)
            x = nn.functional.pad(x, (0, n_chunks * chunk - x.shape[3]))
            chunks = x.unflatten(3, (n_chunks, chunk)).permute(3, 0, 1, 2, 4).flatten(0, 1)  # (chunks · batch, ...)
            vectors = self.frame_vectors(chunks).unflatten(0, (n_chunks, batch))  # (chunks, batch, times', dim)
            per_chunk = vectors.mean(dim=2)
            clipwise, embedding = head(per_chunk).mean(dim=0), per_chunk.mean(dim=0)
            frame_embedding = vectors.permute(1, 0, 2, 3).flatten(1, 2)
        frame_embedding = frame_embedding[:, :max(n_frames // c.patch, 1)]
        return {"clipwise": clipwise, "framewise": head(frame_embedding), "embedding": embedding,
                "frame_embedding": frame_embedding, "frame_hop": self.frame_hop}
