"""Tissue and ink masks on a low-resolution copy of the slide, with every size in microns.

H&E slides: Otsu on HSV saturation, clamped to a plausible range so a slide that is all tissue
(a small crop) or all glass (no tissue) is not split in half by Otsu. IHC slides (brown DAB on
a pale blue haematoxylin counterstain): the counterstain is barely saturated, so tissue is
optical density instead. Fluorescence slides (dark background): saturation is meaningless
there (near-black pixels have arbitrary hue and saturation), so tissue is the bright signal.
The method is detected from the image unless given (`--tissue-method`). Marker ink (red,
green, blue including dark blue, black) is found by colour, per method, and is neither tissue
nor tiled. Sizes (filters, closing, smallest object and hole) are microns, so small biopsies
and gigapixel resections work with the same defaults (CLAM's area threshold in 512-px patches
removes every object on small slides).
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
    modality: str = "auto"  # "auto" or a key of MODALITIES: "he", "ihc", "fluorescence" (--tissue-method)
    median_um: float = 24.0  # median filter width, removes speckle
    close_um: float = 32.0  # closing radius, bridges gaps between nuclei/fibres
    min_object_um2: float = 20_000.0  # ~140x140 um; smaller fragments are dropped
    min_hole_um2: float = 40_000.0  # holes (lumen, fat) smaller than this are filled
    pen_filter: bool = True  # remove red/green/blue/black ink marks (brightfield methods only)
    pen_margin_um: float = 24.0  # margin removed around ink
    min_pen_um2: float = 2_000.0  # ink strokes are larger than this; smaller bluish specks are stain
    dark_background_below: float = 0.35  # auto: median brightness below this means fluorescence
    ihc_share: float = 0.5  # auto: stained pixels mostly brown (DAB) or pale blue (counterstain) means IHC

    def working_mpp(self, slide: Slide) -> float:
        """Mask resolution: ``um_per_px``, or finer on small slides, never finer than the slide."""
        long_um = max(slide.dimensions) * slide.mpp
        return max(slide.mpp, self.finest_um_per_px, min(self.um_per_px, long_um / self.min_mask_px))


@dataclass
class TissueMask:
    """A boolean mask, its scale (level-0 px per mask px), the RGB image it was computed on, and the ink found."""

    mask: np.ndarray
    scale: float
    rgb: np.ndarray
    modality: str = "he"
    um_per_px: float = 8.0
    ink: np.ndarray | None = None  # marker ink per mask pixel (brightfield), excluded from ``mask``

    @property
    def tissue_area_mm2(self) -> float:
        return float(self.mask.sum()) * self.um_per_px**2 / 1e6

    @property
    def tissue_fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0


@dataclass(frozen=True)
class Modality:
    """How tissue, background and marker ink look under one kind of imaging."""

    signal: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (RGB, HSV) -> per-pixel tissue evidence
    threshold_bounds: tuple[float, float]  # Otsu's threshold is clamped into this range
    background: Callable[[np.ndarray], np.ndarray]  # HSV image -> background-coloured pixels
    ink: Callable[[np.ndarray], np.ndarray] | None  # HSV image -> marker-ink pixels (None: no ink filter)


def _saturation(rgb: np.ndarray, hsv: np.ndarray) -> np.ndarray:
    return hsv[..., 1]


def _optical_density(rgb: np.ndarray, hsv: np.ndarray) -> np.ndarray:
    """Largest optical density over the channels, capped at 0.2: pale counterstain absorbs (0.08-0.2), glass
    hardly (~0.05). The cap keeps Otsu from splitting dark DAB nuclei from everything else instead."""
    return np.minimum(-np.log10(rgb.min(axis=-1).astype(np.float32) / 255.0 + 1.0 / 255.0), 0.2)


_DARKEST = 1.0 / 255.0


def _log_brightness(rgb: np.ndarray, hsv: np.ndarray) -> np.ndarray:
    """Fluorescence intensities span decades; on a log scale Otsu separates dim tissue from black glass."""
    return np.log(hsv[..., 2] + _DARKEST) / -np.log(_DARKEST) + 1.0


def _white(hsv: np.ndarray) -> np.ndarray:
    return (hsv[..., 1] < 0.08) & (hsv[..., 2] > 0.82)


def _black(hsv: np.ndarray) -> np.ndarray:
    return hsv[..., 2] < 0.08


def _ink(hsv: np.ndarray, red_to: float, cool_to: float, strong_blue: bool) -> np.ndarray:
    """Marker colours no stain has, grown by hysteresis into the ink's fainter rim.

    Clear ink: red (hue 348-``red_to`` deg, saturated), green to blue (70-``cool_to`` deg), dark
    blue up to 245 deg (``strong_blue``: only when clearly saturated), and black. Ink over tissue
    or thinned at a stroke's edge is paler or greyer; such pixels (reddish, cool-hued, or dark
    and grey) count as ink only where they touch clear ink, so tissue of those colours elsewhere
    is left alone.
    """
    h, s, v = hsv[..., 0] * 360.0, hsv[..., 1], hsv[..., 2]
    reddish = (h >= 345) | (h <= red_to + 5)  # eosin stops at ~340 deg; red marker is at 350-10
    clear = ((h >= 348) | (h <= red_to)) & (s > 0.6) & (v > 0.25)
    clear |= ((h >= 70) & (h <= cool_to) & (s > 0.15) & (v > 0.1)) | (v < 0.2)
    if strong_blue:
        clear |= (h > cool_to) & (h <= 245) & (s > 0.6)
    faint = (reddish & (s > 0.4)) | ((h >= 70) & (h <= cool_to) & (s > 0.06)) | ((v < 0.5) & (s < 0.3))
    if strong_blue:
        faint |= (h > cool_to) & (h <= 245) & (s > 0.45)
    labels, _ = ndimage.label(clear | (faint & ~_white(hsv)), structure=np.ones((3, 3), bool))
    touching = np.unique(labels[clear])
    return np.isin(labels, touching[touching > 0])


def he_ink(hsv: np.ndarray) -> np.ndarray:
    """H&E: haematoxylin sits at 250-300 deg and eosin at 300-345 deg, so 70-245 deg is ink (incl. dark blue 233-244)."""
    return _ink(hsv, red_to=20.0, cool_to=245.0, strong_blue=False)


def ihc_ink(hsv: np.ndarray) -> np.ndarray:
    """IHC: pale blue counterstain (~200-215 deg) and brown DAB (~20-40 deg) are stain, so blue must be strong."""
    return _ink(hsv, red_to=10.0, cool_to=170.0, strong_blue=True)


MODALITIES: dict[str, Modality] = {
    # Tissue in H&E is saturated; glass is white or light grey (saturation < ~0.05).
    "he": Modality(_saturation, (0.05, 0.2), _white, he_ink),
    # IHC counterstain is pale but absorbs: optical density 0.06-0.2 separates it from glass (~0.02).
    "ihc": Modality(_optical_density, (0.06, 0.2), _white, ihc_ink),
    # Stained nuclei/cells glow on a black background; bounds are brightness 0.03-0.3 on the log scale.
    "fluorescence": Modality(_log_brightness, (0.39, 0.78), _black, None),
}
METHODS = ("auto", *MODALITIES)  # the --tissue-method choices


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """HSV in [0, 1] (hue as a fraction of a turn)."""
    from skimage.color import rgb2hsv

    return rgb2hsv(rgb)


def detect_modality(hsv: np.ndarray, params: TissueParams) -> str:
    """Fluorescence when most of the image is dark; IHC when stained pixels are mostly brown or pale blue; else H&E."""
    if params.modality != "auto":
        if params.modality not in MODALITIES:
            raise SlidePredictError(
                f"unknown tissue method {params.modality!r}; --tissue-method is one of {', '.join(METHODS)}"
            )
        return params.modality
    if float(np.median(hsv[..., 2])) < params.dark_background_below:
        return "fluorescence"
    h, stained = hsv[..., 0] * 360.0, hsv[..., 1] > 0.12
    if not stained.any():
        return "he"
    ihc = ((h >= 15) & (h <= 60)) | ((h >= 180) & (h <= 235))  # DAB brown, haematoxylin counterstain blue
    return "ihc" if float(ihc[stained].mean()) > params.ihc_share else "he"


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


def mask_from_rgb(rgb: np.ndarray, um_per_px: float, params: TissueParams | None = None,
                  ) -> tuple[np.ndarray, str, np.ndarray]:
    """Tissue mask of a low-resolution RGB image with ``um_per_px``; returns (mask, method, ink).

    Ink (components of at least ``min_pen_um2``) is neither tissue nor near tissue: it and a
    ``pen_margin_um`` rim are removed from the mask; the ink itself is returned for tiling and QC.
    """
    params = params or TissueParams()
    hsv = rgb_to_hsv(rgb)
    name = detect_modality(hsv, params)
    modality = MODALITIES[name]
    signal = modality.signal(rgb, hsv)
    lo, hi = modality.threshold_bounds
    raw = signal > min(max(_otsu(signal), lo), hi)
    ink = np.zeros_like(raw)
    if params.pen_filter and modality.ink is not None:
        ink = drop_small(modality.ink(hsv) & ~modality.background(hsv), params.min_pen_um2 / (um_per_px * um_per_px))
        raw &= ~ink
    mask = clean_mask(raw, um_per_px, params)
    if ink.any():
        mask &= ~dilate(ink, params.pen_margin_um / um_per_px)
        mask = drop_small(mask, min_object_px(mask, um_per_px, params))
    return mask, name, ink


def tissue_mask(slide: Slide, params: TissueParams | None = None) -> TissueMask:
    """Tissue mask of a slide computed at about ``params.um_per_px`` in bounded memory."""
    params = params or TissueParams()
    rgb, scale = slide.read_at_mpp(params.working_mpp(slide))
    um_per_px = scale * slide.mpp
    mask, name, ink = mask_from_rgb(rgb, um_per_px, params)
    return TissueMask(mask=mask, scale=scale, rgb=rgb, modality=name, um_per_px=um_per_px, ink=ink)
