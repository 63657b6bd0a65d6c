"""Tile features: the encoder registry, weight resolution and streamed extraction to h5.

Public API::

    list_encoders(), get_encoder(name), register_encoder   # the registry
    load_encoder(name, weights=None, device="cpu")          # a ready nn.Module + provenance
    extract(slides, out_dir, settings, ...)                 # one h5 per slide (docs/formats.md)

Submodules import torch lazily enough that ``list_encoders`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slidepredict.features._registry import EncoderConfig, get_encoder, list_encoders, register_encoder
from slidepredict.features._weights import MissingWeightsError, resolve_weights, weight_status

if TYPE_CHECKING:  # heavy (torch): imported on first use below
    from slidepredict.features._builder import Encoder, load_encoder
    from slidepredict.features.extraction import extract, extract_slide
    from slidepredict.features.settings import ExtractSettings

_LAZY = {
    "Encoder": "slidepredict.features._builder",
    "load_encoder": "slidepredict.features._builder",
    "ExtractSettings": "slidepredict.features.settings",
    "extract": "slidepredict.features.extraction",
    "extract_slide": "slidepredict.features.extraction",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = [
    "Encoder", "EncoderConfig", "ExtractSettings", "MissingWeightsError", "extract", "extract_slide",
    "get_encoder", "list_encoders", "load_encoder", "register_encoder", "resolve_weights", "weight_status",
]
