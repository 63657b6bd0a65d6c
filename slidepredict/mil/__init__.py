"""MIL heads behind one registry: ``create_mil(name, in_dim, n_classes, **hparams)``.

Every head maps ``feats (B, N, D)``, ``coords (B, N, 2) | None`` and ``mask (B, N)`` to a
:class:`MILOutput` with patient ``logits``, per-tile ``attention`` and per-tile ``tile_scores``.
Importing this package imports no torch: ``list_mil`` reads names only, and a head's module
is imported by the first ``create_mil`` that needs it; ``MILHead``, ``MILOutput`` and
``masked_softmax`` are imported on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slidepredict.core.lazy import lazy_exports
from slidepredict.mil._registry import create_mil, list_mil, register_mil

if TYPE_CHECKING:  # heavy (torch): imported on first use below
    from slidepredict.mil._base import MILHead, MILOutput, masked_softmax

__getattr__ = lazy_exports(__name__, dict.fromkeys(("MILHead", "MILOutput", "masked_softmax"), "slidepredict.mil._base"))

__all__ = ["MILHead", "MILOutput", "create_mil", "list_mil", "masked_softmax", "register_mil"]
