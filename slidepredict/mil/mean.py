"""Mean-pooling baseline: what any attention head has to beat."""

from __future__ import annotations

import torch
from torch import nn

from slidepredict.mil._base import MILHead, MILOutput, mlp, uniform_attention
from slidepredict.mil._registry import register_mil


@register_mil("mean")
class MeanPoolMIL(MILHead):
    """Mean of embedded tiles, then a linear classifier (so patient logits = mean tile logits)."""

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 256, dropout: float = 0.25) -> None:
        super().__init__(in_dim, n_classes, hidden=hidden, dropout=dropout)
        self.embed = mlp(in_dim, hidden, dropout)
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(self, feats: torch.Tensor, coords: torch.Tensor | None, mask: torch.Tensor) -> MILOutput:
        h = self.embed(feats)
        att = uniform_attention(mask)
        logits = self.classifier(torch.einsum("bn,bnd->bd", att, h))
        return MILOutput(logits=logits, attention=att, tile_scores=self.classifier(h) * mask.unsqueeze(-1))
