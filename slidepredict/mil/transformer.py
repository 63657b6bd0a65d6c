"""A small ViT over tiles with 2-D Fourier position codes of tile positions in microns (TransMIL-like, CPU-sized).

Self-attention runs through ``scaled_dot_product_attention`` so memory grows with N, not N^2, on
complete bags at evaluation; the class token's attention over tiles in the last block is computed
separately (one query row) and returned as the per-tile attention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from slidepredict.core.errors import ConfigError
from slidepredict.mil._base import MILHead, MILOutput, TopTileLoss, masked_softmax
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
    """Pre-norm transformer block; optionally reports the class token's attention over the sequence."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, keep: torch.Tensor, cls_attention: bool) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if bool(keep.all()) else keep[:, None, None, :]
        p = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        x = x + self.proj(o.transpose(1, 2).reshape(b, t, d))
        x = x + self.mlp(self.norm2(x))
        if not cls_attention:
            return x, keep.new_zeros(0)
        scores = (q[:, :, :1] @ k.transpose(-1, -2)).squeeze(2) / math.sqrt(d // self.heads)  # (B, H, T)
        return x, masked_softmax(scores, keep.unsqueeze(1)).mean(1)


@register_mil("transformer")
class TransformerMIL(TopTileLoss, MILHead):

    """Class token + ``depth`` blocks over tile tokens; tiles get 2-D positions (microns) when coords exist.

    A checkpoint without ``min_period_um`` was trained on positions relative to each bag's extent
    and is refused on loading (``REQUIRED_HPARAMS``): its position codes would mean something else.

    ``tile_scores`` come from a classifier on each tile's own embedding, before any context mixes
    tiles: a contextual token says as much about its neighbours as about itself, so a per-tile
    class score read off it would not be that tile's verdict. The top-tile term of the loss
    (``instance_weight``) trains that classifier.
    """

    REQUIRED_HPARAMS = ("min_period_um",)

    def __init__(
        self, in_dim: int, n_classes: int, dim: int = 128, depth: int = 2, heads: int = 4,
        dropout: float = 0.1, n_freqs: int = 8, instance_weight: float = 0.5, min_period_um: float = 256.0,
    ) -> None:
        super().__init__(in_dim, n_classes, dim=dim, depth=depth, heads=heads, dropout=dropout, n_freqs=n_freqs,
                         instance_weight=instance_weight, min_period_um=min_period_um)
        self.instance_weight = float(instance_weight)
        if depth < 1 or dim % heads:
            raise ConfigError(f"transformer MIL needs depth >= 1 and dim divisible by heads (got depth={depth}, dim={dim}, heads={heads})")
        self.embed = nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.Dropout(dropout))
        self.pos = FourierPositions(dim, n_freqs, min_period_um)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(_Block(dim, heads, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, n_classes)
        self.tile_classifier = nn.Linear(dim, n_classes)

    def forward(self, feats: torch.Tensor, coords: torch.Tensor | None, mask: torch.Tensor) -> MILOutput:
        x = self.embed(feats)
        tile_scores = self.tile_classifier(x) * mask.unsqueeze(-1)
        if coords is not None:
            x = x + self.pos(coords, mask)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1)
        keep = torch.cat([mask.new_ones(mask.shape[0], 1), mask], 1)
        for block in self.blocks[:-1]:
            x, _ = block(x, keep, cls_attention=False)
        x, att = self.blocks[-1](x, keep, cls_attention=True)
        out = self.classifier(self.norm(x))
        tile_att = att[:, 1:]
        tile_att = tile_att / tile_att.sum(-1, keepdim=True).clamp_min(1e-12)
        return MILOutput(logits=out[:, 0], attention=tile_att, tile_scores=tile_scores)
