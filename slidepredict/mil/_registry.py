"""The MIL head registry: one decorator, one factory, one interface, so tests and the CLI list heads for free.

Torch-free: the built-in heads are entered by name as ``"module:Class"`` and imported on the
first :func:`create_mil` (or lookup), so listing or checking names (config validation,
``--help``) costs nothing. A plugin registers its class directly with :func:`register_mil`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from slidepredict.core.errors import ConfigError
from slidepredict.core.registry import Registry

if TYPE_CHECKING:
    from slidepredict.mil._base import MILHead

# name -> "module:Class" of the built-in heads; each module registers its class on import.
BUILTIN_HEADS = {
    "attention": "slidepredict.mil.attention:GatedAttentionMIL",
    "transformer": "slidepredict.mil.transformer:TransformerMIL",
    "mean": "slidepredict.mil.mean:MeanPoolMIL",
    "tile-vote": "slidepredict.mil.tile_vote:TileVote",
}

H = TypeVar("H", bound="type[MILHead]")
_REGISTRY: Registry[type[MILHead]] = Registry("MIL head")
for _name, _target in BUILTIN_HEADS.items():
    _REGISTRY.register_lazy(_name, _target)


def register_mil(name: str) -> Callable[[H], H]:
    """Class decorator that makes a head available to ``create_mil`` and ``--model``."""

    def deco(cls: H) -> H:
        cls.name = name  # type: ignore[attr-defined]
        return _REGISTRY.register(name)(cls)

    return deco


def list_mil() -> list[str]:
    """Registered head names, sorted; imports no head (so no torch)."""
    return sorted(_REGISTRY)


def create_mil(name: str, in_dim: int, n_classes: int, **hparams: Any) -> MILHead:
    """Build a registered head; unknown names and options are one-line ``ConfigError``s."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown MIL model '{name}'; available: {', '.join(list_mil())}")
    cls = _REGISTRY[name]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "in_dim", "n_classes")]
    unknown = sorted(set(hparams) - set(allowed))
    if unknown:
        raise ConfigError(
            f"MIL model '{name}' has no option {', '.join(map(repr, unknown))}; options: {', '.join(allowed)}"
        )
    return cls(in_dim, n_classes, **hparams)


def missing_hparams(name: str, stored: dict[str, Any]) -> list[str]:
    """Options a stored head of ``name`` must record but ``stored`` lacks (an older, incompatible checkpoint)."""
    cls = _REGISTRY[name] if name in _REGISTRY else None
    return [] if cls is None else [k for k in cls.REQUIRED_HPARAMS if k not in stored]
