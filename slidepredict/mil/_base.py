"""What every MIL head shares: the :class:`MILHead` interface, its :class:`MILOutput` and small torch helpers.

The registry (names, ``create_mil``) is in :mod:`slidepredict.mil._registry`, which needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class MILOutput:
    """What every head returns; heatmaps need the per-tile parts, training only ``logits``.

    ``attention`` sums to 1 over the valid tiles of a bag (0 on padding); ``tile_scores``
    are per-tile class logits, i.e. the head's verdict on a bag made of that tile alone
    (0 on padding).
    """

    logits: torch.Tensor  # (B, C)
    attention: torch.Tensor  # (B, N)
    tile_scores: torch.Tensor  # (B, N, C)


class MILHead(nn.Module):
    """Base class: stores the resolved hyperparameters so a checkpoint can rebuild the head exactly."""

    def __init__(self, in_dim: int, n_classes: int, **hparams: Any) -> None:
        super().__init__()
        self.in_dim = int(in_dim)
        self.n_classes = int(n_classes)
        self.hparams: dict[str, Any] = dict(hparams)

    def forward(  # noqa: D102 - documented on MILOutput
        self, feats: torch.Tensor, coords: torch.Tensor | None, mask: torch.Tensor
    ) -> MILOutput:
        raise TypeError(f"{type(self).__name__} must implement forward")

    def loss(
        self, out: MILOutput, labels: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None
    ) -> torch.Tensor:
        """Class-weighted cross-entropy on patient logits; heads trained per tile override this."""
        return F.cross_entropy(out.logits, labels, weight=weight)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the tile axis that gives padding exactly zero weight."""
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1).nan_to_num(0.0)


def uniform_attention(mask: torch.Tensor) -> torch.Tensor:
    """Equal weight for every valid tile (heads without learned attention)."""
    m = mask.float()
    return m / m.sum(-1, keepdim=True).clamp_min(1.0)


def mlp(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """The per-tile embedding every head starts with: reduces D (often 1,024+) to a small width."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
