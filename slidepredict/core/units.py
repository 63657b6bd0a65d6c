"""Distinct unit types so a pixel count is never passed where microns are expected."""

from __future__ import annotations

from typing import NewType

Microns = NewType("Microns", float)
"""A physical length in micrometres."""

SlideMPP = NewType("SlideMPP", float)
"""Microns per level-0 pixel of a slide."""

SlidePixels = NewType("SlidePixels", int)
"""A length or coordinate in level-0 slide pixels."""

TilePixels = NewType("TilePixels", int)
"""A length in pixels of a (resized) tile as the encoder sees it."""


def um_to_level0(length_um: float, mpp: float) -> SlidePixels:
    """Level-0 pixels spanned by a physical length; rounded so tiles tile without gaps."""
    if mpp <= 0:
        raise ValueError(f"MPP must be positive, got {mpp}")
    return SlidePixels(max(1, int(round(length_um / mpp))))
