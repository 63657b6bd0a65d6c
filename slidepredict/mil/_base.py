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
    are per-tile class logits, each tile's own verdict, computed from that tile alone (0 on
    padding). For attention, mean and tile-vote heads this is exactly the patient logit of a bag
    made of that one tile; the transformer scores the tile's embedding before any context.
    """

    logits: torch.Tensor  # (B, C)
    attention: torch.Tensor  # (B, N)
    tile_scores: torch.Tensor  # (B, N, C)


class MILHead(nn.Module):
    """Base class: stores the resolved hyperparameters so a checkpoint can rebuild the head exactly.

    Every head standardises its input features with the per-feature mean and standard deviation
    of its training tiles (buffers ``feat_mean``/``feat_std``, saved in the checkpoint), so
    deployment and heatmaps apply exactly what training saw. Encoders' raw scales differ by orders
    of magnitude between features; without this a few large features drown the rest.
    """

    # Options a checkpoint must have stored: one saved before an option changed what the weights
    # mean (e.g. positions in microns) would load with today's default and silently mispredict.
    REQUIRED_HPARAMS: tuple[str, ...] = ()

    def __init__(self, in_dim: int, n_classes: int, **hparams: Any) -> None:
        super().__init__()
        self.in_dim = int(in_dim)
        self.n_classes = int(n_classes)
        self.hparams: dict[str, Any] = dict(hparams)
        self.register_buffer("feat_mean", torch.zeros(self.in_dim))
        self.register_buffer("feat_std", torch.ones(self.in_dim))
        self.register_forward_pre_hook(_standardise)

    def set_standardisation(self, mean: Any, std: Any) -> None:
        """Features are fed as ``(x - mean) / std``; a constant feature (std 0) is centred only."""
        self.feat_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        std = torch.as_tensor(std, dtype=torch.float32)
        self.feat_std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))

    def forward(  # noqa: D102 - documented on MILOutput
        self, feats: torch.Tensor, coords: torch.Tensor | None, mask: torch.Tensor
    ) -> MILOutput:
        raise TypeError(f"{type(self).__name__} must implement forward")

    def loss(
        self, out: MILOutput, labels: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None
    ) -> torch.Tensor:
        """Class-weighted cross-entropy on patient logits; heads trained per tile override this."""
        return F.cross_entropy(out.logits, labels, weight=weight)


class TopTileLoss:
    """Mixin for heads whose ``tile_scores`` are each tile's own verdict: adds the top-tile term to the loss.

    Early in training attention is near uniform, so a signal in a few tiles reaches the patient
    logit diluted by the bag size. The top-tile term (weight ``instance_weight``) sends the
    gradient straight to each bag's most telling tile, multiple-instance learning's max rule,
    which is how rare witness tiles are found; it also trains ``tile_scores`` to mean what the
    heatmaps draw.
    """

    instance_weight: float

    def loss(
        self, out: MILOutput, labels: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None
    ) -> torch.Tensor:
        bag = super().loss(out, labels, mask, weight)  # type: ignore[misc]  # the head's own patient loss
        if self.instance_weight <= 0:
            return bag
        return bag + self.instance_weight * F.cross_entropy(top_tile_logits(out.tile_scores, mask), labels, weight=weight)


def top_tile_logits(tile_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per class, the highest tile logit of each bag (B, C): the bag as its single most telling tile."""
    return tile_scores.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)


def _standardise(head: MILHead, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook: standardise ``feats`` (padding stays zero, it is masked anyway)."""
    feats, *rest = args
    return ((feats - head.feat_mean) / head.feat_std, *rest)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the tile axis that gives padding exactly zero weight."""
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1).nan_to_num(0.0)


def uniform_attention(mask: torch.Tensor) -> torch.Tensor:
    """Equal weight for every valid tile (heads without learned attention)."""
    m = mask.float()
    return m / m.sum(-1, keepdim=True).clamp_min(1.0)


def gated_attention(h: torch.Tensor, mask: torch.Tensor, head: nn.Module) -> torch.Tensor:
    """Gated attention (Ilse et al. 2018) over tiles, ``w . (tanh(V h) * sigmoid(U h))`` softmaxed over the valid ones.

    ``head`` holds the layers as ``att_v``, ``att_u``, ``att_w`` (names kept stable for checkpoints).
    """
    scores = head.att_w(torch.tanh(head.att_v(h)) * torch.sigmoid(head.att_u(h))).squeeze(-1)
    return masked_softmax(scores, mask)


def gated_attention_layers(head: nn.Module, dim: int, attention_dim: int) -> None:
    """Create the three layers :func:`gated_attention` reads on ``head``."""
    head.att_v = nn.Linear(dim, attention_dim)
    head.att_u = nn.Linear(dim, attention_dim)
    head.att_w = nn.Linear(attention_dim, 1)


def mlp(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """The per-tile embedding every head starts with: reduces D (often 1,024+) to a small width."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
