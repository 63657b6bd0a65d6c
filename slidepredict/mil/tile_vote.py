"""The Kather et al. 2020 baseline: every tile inherits its patient's label; the patient score is the mean tile probability."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slidepredict.mil._base import MILHead, MILOutput, TopTileLoss, mlp, uniform_attention
from slidepredict.mil._registry import register_mil


class _PerTileLoss(MILHead):
    """Kather et al.'s training: every tile is labelled with its patient's label."""

    def loss(
        self, out: MILOutput, labels: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None
    ) -> torch.Tensor:
        """Cross-entropy per tile against the patient label, each patient weighted equally."""
        n, c = out.tile_scores.shape[1:]
        per_tile = F.cross_entropy(
            out.tile_scores.reshape(-1, c), labels.repeat_interleave(n), reduction="none"
        ).view(-1, n)
        per_patient = (per_tile * mask).sum(1) / mask.sum(1).clamp_min(1)
        w = torch.ones_like(per_patient) if weight is None else weight[labels]
        return (per_patient * w).sum() / w.sum()


@register_mil("tile-vote")
class TileVote(TopTileLoss, _PerTileLoss):
    """A tile classifier; ``logits`` are log mean tile probabilities so softmax gives the vote back.

    With one output (a continuous value or a survival risk) a softmax would be constant 1, so the
    patient's value is the mean of its tiles' values instead (each tile's own estimate).

    Most tiles of a positive patient look like a negative's, so the per-tile labels are mostly wrong
    for a localised signal; the top-tile term (``instance_weight``) pulls each bag's most telling
    tile towards the label, which finds the witnesses.
    """

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 256, dropout: float = 0.25,
                 instance_weight: float = 0.5) -> None:
        super().__init__(in_dim, n_classes, hidden=hidden, dropout=dropout, instance_weight=instance_weight)
        self.instance_weight = float(instance_weight)
        self.tiles = nn.Sequential(mlp(in_dim, hidden, dropout), nn.Linear(hidden, n_classes))

    def forward(self, feats: torch.Tensor, coords: torch.Tensor | None, mask: torch.Tensor) -> MILOutput:
        tile_logits = self.tiles(feats) * mask.unsqueeze(-1)
        att = uniform_attention(mask)
        if self.n_classes == 1:  # a value or a risk (continuous, survival): the patient's is its tiles' mean
            return MILOutput(logits=torch.einsum("bn,bnc->bc", att, tile_logits), attention=att, tile_scores=tile_logits)
        probs = torch.einsum("bn,bnc->bc", att, torch.softmax(tile_logits, dim=-1))
        return MILOutput(logits=probs.clamp_min(1e-8).log(), attention=att, tile_scores=tile_logits)
