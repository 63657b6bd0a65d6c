"""MIL heads behind one registry: ``create_mil(name, in_dim, n_classes, **hparams)``.

Every head maps ``feats (B, N, D)``, ``coords (B, N, 2) | None`` and ``mask (B, N)`` to a
:class:`MILOutput` with patient ``logits``, per-tile ``attention`` and per-tile ``tile_scores``.
Importing this package imports no torch: ``list_mil`` reads names only, and a head's module
is imported by the first ``create_mil`` that needs it; ``MILHead``, ``MILOutput`` and
``masked_softmax`` are imported on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slidepredict.mil._registry import create_mil, list_mil, register_mil

if TYPE_CHECKING:  # heavy (torch): imported on first use below
    from slidepredict.mil._base import MILHead, MILOutput, masked_softmax

_LAZY = {"MILHead", "MILOutput", "masked_softmax"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from slidepredict.mil import _base

        return getattr(_base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MILHead", "MILOutput", "create_mil", "list_mil", "masked_softmax", "register_mil"]
