"""The encoder registry: each encoder is a tiny function, registered by name, returning an :class:`EncoderConfig`.

Modelled on timm's ``@register_model``: registering is the only step needed to add an
encoder, and ``list_encoders()`` drives the tests, so a new entry is tested at once.
Registering calls nothing, so listing encoders imports no model code (no torch).
The config is the single source of truth for the weights' origin, the architecture to
build, the preprocessing (input size, mean/std) and the provenance (licence, citation).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from slidepredict.core.errors import ConfigError
from slidepredict.core.registry import Registry

log = logging.getLogger("slidepredict")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# How a backbone's output becomes one vector per tile.
POOLINGS = ("model", "cls+mean")


@dataclass(frozen=True)
class EncoderConfig:
    """Everything needed to build, load and describe one encoder.

    ``arch`` names a timm architecture built locally (never fetched), so weights from any
    source (hub cache, ``local-dir:``, a file, or ``random``) go through one loading path.
    ``hf_hub_id``/``revision`` say where the weights live on the Hugging Face hub;
    ``arch_kwargs`` reproduce the hub config so the state dict fits. ``kind`` selects the
    builder (``timm`` or a hand-crafted module such as ``stain-texture``).
    """

    name: str
    dim: int
    kind: str = "timm"
    arch: str | None = None
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)
    hf_hub_id: str | None = None
    revision: str = "main"
    weight_files: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
    input_px: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pooling: str = "model"
    truncate_after: str | None = None
    license: str = ""
    citation: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch_kwargs", MappingProxyType(dict(self.arch_kwargs)))
        if self.pooling not in POOLINGS:
            raise ValueError(f"encoder {self.name}: pooling must be one of {POOLINGS}, got {self.pooling!r}")

    @property
    def needs_weights(self) -> bool:
        """Hand-crafted encoders have nothing to load."""
        return self.hf_hub_id is not None

    @property
    def hub_ref(self) -> str:
        """``hf-hub:org/name@revision``, the form timm and users recognise."""
        return f"hf-hub:{self.hf_hub_id}@{self.revision}" if self.hf_hub_id else "none (no weights)"


EncoderFn = TypeVar("EncoderFn", bound=Callable[[], EncoderConfig])
_ENCODERS: Registry[Callable[[], EncoderConfig]] = Registry("encoder", unique=True)


def register_encoder(name: str) -> Callable[[EncoderFn], EncoderFn]:
    """Decorator: ``@register_encoder("uni")`` records the function returning that encoder's config.

    The name is given here so that registering runs nothing; the config is built when asked
    for (:func:`get_encoder`). A name registered twice is a bug and raises ``ValueError``.
    """
    if not isinstance(name, str):
        raise TypeError("register_encoder takes the encoder's name: @register_encoder('my-encoder')")
    return _ENCODERS.register(name)


def list_encoders() -> list[str]:
    """Registered encoder names, sorted; builds no config and imports no encoder code."""
    _load_builtin()
    return sorted(_ENCODERS)


def get_encoder(name: str) -> EncoderConfig:
    """The config of a registered encoder; an unknown name lists the known ones."""
    _load_builtin()
    if name not in _ENCODERS:
        raise ConfigError(
            f"unknown encoder {name!r}; choose one of: {', '.join(sorted(_ENCODERS))} "
            "(`slidepredict encoders` lists them)"
        )
    cfg = _ENCODERS[name]()
    if cfg.name != name:  # the registered name and the config's must agree (feature files record it)
        raise ValueError(f"encoder registered as {name!r} returns a config named {cfg.name!r}")
    return cfg


def _load_builtin() -> None:
    # Importing the module runs its @register_encoder decorators exactly once; they call nothing.
    from slidepredict.features import encoders  # noqa: F401
