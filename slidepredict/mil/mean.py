"""Mean pooling of learnt tile embeddings (DeepSets): no attention, every tile counts alike."""

from __future__ import annotations

import torch
from torch import nn

from slidepredict.mil._base import MILHead, MILOutput, TopTileLoss, mlp, uniform_attention
from slidepredict.mil._registry import register_mil


@register_mil("mean")
class MeanPoolMIL(TopTileLoss, MILHead):
    """Mean of embedded tiles, then a linear classifier (so patient logits = mean tile logits).

    The top-tile term (``instance_weight``) trains the tile logits with the max rule, so a rare
    witness tile's logit can grow until even a 5% share moves the patient's mean.
    """

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 256, dropout: float = 0.25,
                 instance_weight: float = 0.5) -> None:
        super().__init__(in_dim, n_classes, hidden=hidden, dropout=dropout, instance_weight=instance_weight)
        self.instance_weight = float(instance_weight)
        self.embed = mlp(in_dim, hidden, dropout)
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(self, feats: torch.Tensor, coords: torch.Tensor | None, mask: torch.Tensor) -> MILOutput:
        h = self.embed(feats)
        att = uniform_attention(mask)
        logits = self.classifier(torch.einsum("bn,bnd->bd", att, h))
        return MILOutput(logits=logits, attention=att, tile_scores=self.classifier(h) * mask.unsqueeze(-1))
