"""Tissue masks on a low-resolution copy of the slide, with every size in microns.

Brightfield (H&E) slides: Otsu on HSV saturation, clamped to a plausible range so a slide
that is all tissue (a small crop) or all glass (no tissue) is not split in half by Otsu.
Fluorescence slides (dark background): saturation is meaningless there (near-black pixels
have arbitrary hue and saturation), so tissue is the bright signal instead. The modality is
detected from the image's median brightness unless given. Sizes (filters, closing, smallest
object and hole) are microns, so small biopsies and gigapixel resections work with the
same defaults (CLAM's area threshold in 512-px patches removes every object on small slides).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from slidepredict.core.errors import SlidePredictError
from slidepredict.slide import Slide


@dataclass
class TissueParams:
    """Tissue detection settings; lengths in microns, areas in square microns."""

    um_per_px: float = 8.0  # working resolution of the mask
    min_mask_px: int = 256  # small slides get a finer working resolution so the long side has this many px
    finest_um_per_px: float = 2.0  # ... but never finer than this (morphology cost, nuclei-level noise)
    modality: str = "auto"  # "auto", "brightfield" or "fluorescence" (see MODALITIES)
    median_um: float = 24.0  # median filter width, removes speckle
    close_um: float = 32.0  # closing radius, bridges gaps between nuclei/fibres
    min_object_um2: float = 20_000.0  # ~140x140 um; smaller fragments are dropped
    min_hole_um2: float = 40_000.0  # holes (lumen, fat) smaller than this are filled
    pen_filter: bool = True  # remove green/blue/black ink marks (brightfield only)
    pen_margin_um: float = 24.0  # margin removed around ink
    min_pen_um2: float = 2_000.0  # ink strokes are larger than this; smaller bluish specks are stain
    dark_background_below: float = 0.35  # auto: median brightness below this means fluorescence

    def working_mpp(self, slide: Slide) -> float:
        """Mask resolution: ``um_per_px``, or finer on small slides, never finer than the slide."""
        long_um = max(slide.dimensions) * slide.mpp
        return max(slide.mpp, self.finest_um_per_px, min(self.um_per_px, long_um / self.min_mask_px))


@dataclass
class TissueMask:
    """A boolean mask, its scale (level-0 px per mask px) and the RGB image it was computed on."""

    mask: np.ndarray
    scale: float
    rgb: np.ndarray
    modality: str = "brightfield"
    um_per_px: float = 8.0

    @property
    def tissue_fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0


@dataclass(frozen=True)
class Modality:
    """How tissue and background look under one kind of imaging."""

    signal: Callable[[np.ndarray], np.ndarray]  # HSV image -> per-pixel tissue evidence in [0, 1]
    threshold_bounds: tuple[float, float]  # Otsu's threshold is clamped into this range
    background: Callable[[np.ndarray], np.ndarray]  # HSV image -> background-coloured pixels
    pen_filter: bool


def _saturation(hsv: np.ndarray) -> np.ndarray:
    return hsv[..., 1]


_DARKEST = 1.0 / 255.0


def _log_brightness(hsv: np.ndarray) -> np.ndarray:
    """Fluorescence intensities span decades; on a log scale Otsu separates dim tissue from black glass."""
    return np.log(hsv[..., 2] + _DARKEST) / -np.log(_DARKEST) + 1.0


def _white(hsv: np.ndarray) -> np.ndarray:
    return (hsv[..., 1] < 0.08) & (hsv[..., 2] > 0.82)


def _black(hsv: np.ndarray) -> np.ndarray:
    return hsv[..., 2] < 0.08


MODALITIES: dict[str, Modality] = {
    # Tissue in H&E is saturated; glass is white or light grey (saturation < ~0.05).
    "brightfield": Modality(_saturation, (0.05, 0.2), _white, pen_filter=True),
    # Stained nuclei/cells glow on a black background; bounds are brightness 0.03-0.3 on the log scale.
    "fluorescence": Modality(_log_brightness, (0.39, 0.78), _black, pen_filter=False),
}


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """HSV in [0, 1] (hue as a fraction of a turn)."""
    from skimage.color import rgb2hsv

    return rgb2hsv(rgb)


def detect_modality(hsv: np.ndarray, params: TissueParams) -> str:
    """Fluorescence when most of the image is dark (glass is black there, white in brightfield)."""
    if params.modality != "auto":
        if params.modality not in MODALITIES:
            raise SlidePredictError(
                f"unknown tissue modality {params.modality!r}; choose auto or one of {', '.join(MODALITIES)}"
            )
        return params.modality
    return "fluorescence" if float(np.median(hsv[..., 2])) < params.dark_background_below else "brightfield"


def pen_ink(hsv: np.ndarray) -> np.ndarray:
    """Green/blue marker ink (hue 70-230 deg, clearly saturated) and black ink (very dark).

    H&E hues sit between blue-purple hematoxylin (~240-270 deg) and pink eosin (~300-20 deg),
    so the green-blue band is free of stain; black ink is darker than tissue at low resolution.
    """
    h, s, v = hsv[..., 0] * 360.0, hsv[..., 1], hsv[..., 2]
    coloured = (h >= 70) & (h <= 230) & (s > 0.25) & (v > 0.1)
    black = (v < 0.2) & (s < 0.6)
    return coloured | black


def dilate(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Dilation by a disk via the distance transform: cost independent of the radius."""
    if radius_px < 0.5 or not mask.any():
        return mask
    return ndimage.distance_transform_edt(~mask) <= radius_px


def close(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Morphological closing by a disk; padded so tissue touching the border is not eroded."""
    if radius_px < 0.5 or not mask.any():
        return mask
    pad = int(math.ceil(radius_px)) + 1
    grown = dilate(np.pad(mask, pad, mode="constant"), radius_px)
    shrunk = ndimage.distance_transform_edt(grown) > radius_px
    return shrunk[pad:-pad, pad:-pad] | mask


def drop_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    """Remove 8-connected components smaller than ``min_px`` pixels."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_px
    keep[0] = False
    return keep[labels]


def small_holes(mask: np.ndarray, max_px: float) -> np.ndarray:
    """Background components smaller than ``max_px`` that are enclosed (not touching the image border).

    Glass around a small biopsy can be smaller than the hole threshold; it is not a hole.
    """
    labels, n = ndimage.label(~mask)
    if n == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    fill = sizes < max_px
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    fill[np.unique(border)] = False
    fill[0] = False
    return fill[labels]


def clean_mask(raw: np.ndarray, um_per_px: float, params: TissueParams) -> np.ndarray:
    """Median blur, closing, small-object removal and hole filling, all sized in microns."""
    px_area = um_per_px * um_per_px
    size = max(1, int(round(params.median_um / um_per_px)) | 1)
    mask = ndimage.median_filter(raw.astype(np.uint8), size=size, mode="constant") > 0
    mask = close(mask, params.close_um / um_per_px)
    mask = drop_small(mask, min_object_px(mask, um_per_px, params))
    return mask | small_holes(mask, params.min_hole_um2 / px_area)


def min_object_px(mask: np.ndarray, um_per_px: float, params: TissueParams) -> float:
    """Smallest kept object; on images smaller than a biopsy (microscopy crops) at most 5% of the image."""
    return min(params.min_object_um2 / (um_per_px * um_per_px), 0.05 * mask.size)


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    flat = values.ravel()
    if flat.size == 0 or float(flat.min()) == float(flat.max()):
        return float(flat[0]) if flat.size else 0.0
    return float(threshold_otsu(flat))


def mask_from_rgb(rgb: np.ndarray, um_per_px: float, params: TissueParams | None = None) -> tuple[np.ndarray, str]:
    """Tissue mask of a low-resolution RGB image with ``um_per_px``; returns (mask, modality)."""
    params = params or TissueParams()
    hsv = rgb_to_hsv(rgb)
    name = detect_modality(hsv, params)
    modality = MODALITIES[name]
    signal = modality.signal(hsv)
    lo, hi = modality.threshold_bounds
    raw = signal > min(max(_otsu(signal), lo), hi)
    pen = np.zeros_like(raw)
    if params.pen_filter and modality.pen_filter:
        pen = drop_small(pen_ink(hsv), params.min_pen_um2 / (um_per_px * um_per_px))
        raw &= ~pen
    mask = clean_mask(raw, um_per_px, params)
    if pen.any():
        mask &= ~dilate(pen, params.pen_margin_um / um_per_px)
        mask = drop_small(mask, min_object_px(mask, um_per_px, params))
    return mask, name


def tissue_mask(slide: Slide, params: TissueParams | None = None) -> TissueMask:
    """Tissue mask of a slide computed at about ``params.um_per_px`` in bounded memory."""
    params = params or TissueParams()
    rgb, scale = slide.read_at_mpp(params.working_mpp(slide))
    um_per_px = scale * slide.mpp
    mask, name = mask_from_rgb(rgb, um_per_px, params)
    return TissueMask(mask=mask, scale=scale, rgb=rgb, modality=name, um_per_px=um_per_px)
