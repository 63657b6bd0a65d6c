"""MIL heads behind one registry: ``create_mil(name, in_dim, n_classes, **hparams)``.

Every head maps ``feats (B, N, D)``, ``coords (B, N, 2) | None`` and ``mask (B, N)`` to a
:class:`MILOutput` with patient ``logits``, per-tile ``attention`` and per-tile ``tile_scores``.
Importing this package registers the built-in heads.
"""

from slidepredict.mil import attention, mean, tile_vote, transformer  # noqa: F401  (registration)
from slidepredict.mil._registry import MILHead, MILOutput, create_mil, list_mil, masked_softmax, register_mil

__all__ = ["MILHead", "MILOutput", "create_mil", "list_mil", "masked_softmax", "register_mil"]
