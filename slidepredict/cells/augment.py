"""Random augmentations of training units for fine-tuning: one registered function each.

Each takes a float batch (B, 3, H, W) in 0-255, the fine-tuning settings (strengths) and a torch
generator, and returns a batch of the same shape. A cell has no "up": flips and 90-degree turns
give the same cell, brightness and contrast mimic exposure differing between plates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from slidepredict.core.registry import Registry

Augment = Callable[[torch.Tensor, Any, torch.Generator], torch.Tensor]
AUGMENTS: Registry[Augment] = Registry("augmentation")


def _per_unit(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One uniform number in [0, 1) per unit, shaped to broadcast over (B, 3, H, W)."""
    return torch.rand(x.shape[0], generator=gen).view(-1, 1, 1, 1)


@AUGMENTS.register("flips")
def flips(x: torch.Tensor, s: Any, gen: torch.Generator) -> torch.Tensor:
    """Left-right and up-down flips, each with probability 1/2."""
    x = torch.where(_per_unit(x, gen) < 0.5, x.flip(3), x)
    return torch.where(_per_unit(x, gen) < 0.5, x.flip(2), x)


@AUGMENTS.register("rot90")
def rot90(x: torch.Tensor, s: Any, gen: torch.Generator) -> torch.Tensor:
    """A turn by 0, 90, 180 or 270 degrees, equally likely (units are square)."""
    turns = torch.randint(0, 4, (x.shape[0],), generator=gen)
    out = x.clone()
    for k in (1, 2, 3):
        picked = turns == k
        if picked.any():
            out[picked] = torch.rot90(x[picked], k, dims=(2, 3))
    return out


@AUGMENTS.register("brightness")
def brightness(x: torch.Tensor, s: Any, gen: torch.Generator) -> torch.Tensor:
    """Intensities times a factor drawn from [1 - brightness, 1 + brightness]."""
    return (x * (1 + (2 * _per_unit(x, gen) - 1) * s.brightness)).clamp(0, 255)


@AUGMENTS.register("contrast")
def contrast(x: torch.Tensor, s: Any, gen: torch.Generator) -> torch.Tensor:
    """Deviations from the unit's mean times a factor drawn from [1 - contrast, 1 + contrast]."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * (1 + (2 * _per_unit(x, gen) - 1) * s.contrast) + mean).clamp(0, 255)


def list_augmentations() -> list[str]:
    """Registered augmentation names, in registration order."""
    return AUGMENTS.names()


def augment(x: torch.Tensor, names: list[str], s: Any, gen: torch.Generator) -> torch.Tensor:
    """Apply the named augmentations in order."""
    for name in names:
        x = AUGMENTS[name](x, s, gen)
    return x
