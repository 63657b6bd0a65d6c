"""Gated attention MIL (Ilse, Tomczak & Welling, ICML 2018), the CLAM/STAMP default."""

from __future__ import annotations

import torch
from torch import nn

from slidepredict.mil._base import MILHead, MILOutput, TopTileLoss, gated_attention, gated_attention_layers, mlp
from slidepredict.mil._registry import register_mil


@register_mil("attention")
class GatedAttentionMIL(TopTileLoss, MILHead):
    """Attention-weighted mean of tile embeddings, then a linear classifier.

    Because the classifier is linear and attention sums to one, patient logits equal the
    attention-weighted sum of per-tile logits, so ``tile_scores`` decompose the prediction exactly.
    """

    def __init__(
        self, in_dim: int, n_classes: int, hidden: int = 256, attention_dim: int = 128, dropout: float = 0.25,
        instance_weight: float = 0.5,
    ) -> None:
        super().__init__(in_dim, n_classes, hidden=hidden, attention_dim=attention_dim, dropout=dropout,
                         instance_weight=instance_weight)
        self.instance_weight = float(instance_weight)
        self.embed = mlp(in_dim, hidden, dropout)
        gated_attention_layers(self, hidden, attention_dim)
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(self, feats: torch.Tensor, coords: torch.Tensor | None, mask: torch.Tensor) -> MILOutput:
        h = self.embed(feats)
        att = gated_attention(h, mask, self)
        logits = self.classifier(torch.einsum("bn,bnd->bd", att, h))
        tile_scores = self.classifier(h) * mask.unsqueeze(-1)
        return MILOutput(logits=logits, attention=att, tile_scores=tile_scores)
