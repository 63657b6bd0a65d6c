"""Self-attention over tiles with 2-D Fourier codes of tile positions in microns, then context-aware attention pooling.

Self-attention runs through ``scaled_dot_product_attention``, so memory grows with N, not N^2, on
complete bags at evaluation (CPU-sized: two blocks of width 128 by default).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from slidepredict.core.errors import ConfigError
from slidepredict.mil._base import MILHead, MILOutput, TopTileLoss, gated_attention, gated_attention_layers
from slidepredict.mil._registry import register_mil


class FourierPositions(nn.Module):
    """Sine/cosine codes of tile positions in microns at fixed wavelengths, projected to the model width.

    Wavelengths run from ``min_period_um`` (about a tile) doubling ``n_freqs`` times (256 um to
    33 mm by default), so a code means the same physical offset on every slide and scanner,
    whatever the bag's extent; a multi-slide patient's slides arrive shifted far apart.
    """

    def __init__(self, dim: int, n_freqs: int = 8, min_period_um: float = 256.0) -> None:
        super().__init__()
        periods = float(min_period_um) * 2.0 ** torch.arange(n_freqs, dtype=torch.float64)
        self.register_buffer("freqs", (2 * math.pi / periods).float(), persistent=False)
        self.proj = nn.Linear(4 * n_freqs, dim)

    def forward(self, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pos = positions.double() * mask.unsqueeze(-1)  # float64: 1 m slide offsets keep sub-micron phase
        angles = (pos.unsqueeze(-1) * self.freqs.double()).remainder(2 * math.pi).float()  # (B, N, 2, F)
        return self.proj(torch.cat([angles.sin(), angles.cos()], -1).flatten(2))


class _Block(nn.Module):
    """Pre-norm transformer block over tile tokens (padding masked out of every key)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if bool(keep.all()) else keep[:, None, None, :]
        p = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        x = x + self.proj(o.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


@register_mil("transformer")
class TransformerMIL(TopTileLoss, MILHead):
    """Context decides where to look, each tile's own embedding what it says.

    ``depth`` self-attention blocks mix tile tokens (with 2-D positions in microns when coords
    exist); gated attention on these contextual tokens weighs the tiles, and the patient logit is
    the attention-weighted sum of each tile's own verdict (a linear classifier on the tile's
    embedding before any context). So, as in the attention head, ``tile_scores`` decompose the
    patient logit exactly and mean what the heatmap draws, and the top-tile term of the loss
    trains the very classifier the patient logit uses. (A class-token read-out, as in TransMIL,
    learnt the planted 5%-witness cohorts unreliably: that term never reached it.)

    ``REQUIRED_HPARAMS``: checkpoints without ``min_period_um`` (positions relative to each bag)
    or ``attention_dim`` (the class-token read-out) are refused on loading.
    """

    REQUIRED_HPARAMS = ("min_period_um", "attention_dim")

    def __init__(
        self, in_dim: int, n_classes: int, dim: int = 128, depth: int = 2, heads: int = 4,
        dropout: float = 0.1, n_freqs: int = 8, instance_weight: float = 0.5, min_period_um: float = 256.0,
        attention_dim: int = 64,
    ) -> None:
        super().__init__(in_dim, n_classes, dim=dim, depth=depth, heads=heads, dropout=dropout, n_freqs=n_freqs,
                         instance_weight=instance_weight, min_period_um=min_period_um, attention_dim=attention_dim)
        self.instance_weight = float(instance_weight)
        if depth < 1 or dim % heads:
            raise ConfigError(f"transformer MIL needs depth >= 1 and dim divisible by heads (got depth={depth}, dim={dim}, heads={heads})")
        self.embed = nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.Dropout(dropout))
        self.pos = FourierPositions(dim, n_freqs, min_period_um)
        self.blocks = nn.ModuleList(_Block(dim, heads, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        gated_attention_layers(self, dim, attention_dim)
        self.classifier = nn.Linear(dim, n_classes)

    def forward(self, feats: torch.Tensor, coords: torch.Tensor | None, mask: torch.Tensor) -> MILOutput:
        h = self.embed(feats)
        tile_scores = self.classifier(h) * mask.unsqueeze(-1)
        x = h if coords is None else h + self.pos(coords, mask)
        for block in self.blocks:
            x = block(x, mask)
        att = gated_attention(self.norm(x), mask, self)
        return MILOutput(logits=torch.einsum("bn,bnc->bc", att, tile_scores), attention=att, tile_scores=tile_scores)
