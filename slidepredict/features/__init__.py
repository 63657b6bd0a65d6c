"""Tile features: the encoder registry, weight resolution and streamed extraction to h5.

Public API::

    list_encoders(), get_encoder(name), register_encoder   # the registry
    load_encoder(name, weights=None, device="cpu")          # a ready nn.Module + provenance
    extract(slides, out_dir, settings, ...)                 # one h5 per slide (docs/formats.md)

Submodules import torch lazily enough that ``list_encoders`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slidepredict.core.lazy import lazy_exports
from slidepredict.features._registry import EncoderConfig, get_encoder, list_encoders, register_encoder
from slidepredict.features._weights import MissingWeightsError, resolve_weights, weight_status

if TYPE_CHECKING:  # heavy (torch): imported on first use below
    from slidepredict.features._builder import Encoder, load_encoder
    from slidepredict.features.extraction import extract, extract_slide
    from slidepredict.features.settings import ExtractSettings

__getattr__ = lazy_exports(__name__, {
    **dict.fromkeys(("Encoder", "load_encoder"), "slidepredict.features._builder"),
    **dict.fromkeys(("extract", "extract_slide"), "slidepredict.features.extraction"),
    "ExtractSettings": "slidepredict.features.settings",
})

__all__ = [
    "Encoder", "EncoderConfig", "ExtractSettings", "MissingWeightsError", "extract", "extract_slide",
    "get_encoder", "list_encoders", "load_encoder", "register_encoder", "resolve_weights", "weight_status",
]
