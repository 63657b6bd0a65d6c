"""What one instance of an image is: the whole image, a grid of tiles, or a single cell.

Each unit maker turns an image into square boxes (top-left x, y and a side, in image pixels) that
are then cropped and resized for the encoder. Cells come from a classical scikit-image detector
(``nuclei`` for fluorescence: Otsu threshold and a distance-transform watershed that splits
touching nuclei; ``brightfield``: local contrast against the flat background) or from the user's
own segmentation, so Cellpose, StarDist or QuPath results can be used as they are: a label mask per
image (``mask``) or a table of centroids (``centroids``: IMAGE, X, Y).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slidepredict.core.errors import CohortError, SlideError
from slidepredict.core.registry import Registry


@dataclass(frozen=True)
class UnitSettings:
    """How units are cut; ``size`` is the crop side in image pixels (cells, tiles), ``min_area`` in pixels^2."""

    kind: str = "image"
    size: int = 64
    min_area: int = 30
    masks: Path | None = None  # folder of label masks named like the images (mask unit)
    centroids: Any = None  # DataFrame IMAGE, X, Y (centroids unit)


UnitMaker = Callable[[np.ndarray, Path, str, UnitSettings], np.ndarray]
UNITS: Registry[UnitMaker] = Registry("cell-image unit")


def boxes_around(centres: np.ndarray, size: int) -> np.ndarray:
    """(N, 2) x, y centres -> (N, 3) int64 top-left x, top-left y, side."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    top_left = np.floor(centres - size / 2.0 + 0.5).astype(np.int64)  # halves round up, not to even
    return np.concatenate([top_left, np.full((len(top_left), 1), size, np.int64)], axis=1)


@UNITS.register("image")
def whole_image(rgb: np.ndarray, path: Path, name: str, s: UnitSettings) -> np.ndarray:
    """One unit: the whole image, padded to a square (the encoder sees all of it)."""
    h, w = rgb.shape[:2]
    side = max(h, w)
    return np.array([[(w - side) // 2, (h - side) // 2, side]], dtype=np.int64)


@UNITS.register("tiles")
def tiles(rgb: np.ndarray, path: Path, name: str, s: UnitSettings) -> np.ndarray:
    """A grid of ``size`` x ``size`` tiles over the image (the last row/column only where they fit)."""
    h, w = rgb.shape[:2]
    ys, xs = np.meshgrid(np.arange(0, max(h - s.size, 0) + 1, s.size), np.arange(0, max(w - s.size, 0) + 1, s.size),
                         indexing="ij")
    return np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, s.size)], 1).astype(np.int64)


def _centroids_of_labels(labels: np.ndarray, min_area: int) -> np.ndarray:
    from skimage.measure import regionprops

    props = [p for p in regionprops(labels) if p.area >= min_area]
    return np.array([[p.centroid[1], p.centroid[0]] for p in props], dtype=np.float64).reshape(-1, 2)


@UNITS.register("nuclei")
def nuclei(rgb: np.ndarray, path: Path, name: str, s: UnitSettings) -> np.ndarray:
    """Bright objects on a dark background (a nuclear stain): Otsu, then a watershed on the distance transform."""
    from scipy import ndimage as ndi
    from skimage.filters import gaussian, threshold_otsu
    from skimage.measure import label
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    grey = gaussian(rgb.mean(axis=2) / 255.0, sigma=1.0)
    if float(grey.max() - grey.min()) < 1e-3:
        return np.zeros((0, 3), np.int64)
    fg = ndi.binary_fill_holes(grey > threshold_otsu(grey))
    distance = gaussian(ndi.distance_transform_edt(fg), sigma=1.0)
    # one marker per distance peak standing 2 px above its surroundings: touching round nuclei are split,
    # an elongated nucleus (a ridge of nearly equal distances) is not
    markers = label(h_maxima(distance, 2.0))
    return boxes_around(_centroids_of_labels(watershed(-distance, markers, mask=fg), s.min_area), s.size)


@UNITS.register("brightfield")
def brightfield(rgb: np.ndarray, path: Path, name: str, s: UnitSettings) -> np.ndarray:
    """Cells on a flat brightfield background: where local contrast (Sobel magnitude, smoothed) stands out."""
    from scipy import ndimage as ndi
    from skimage.filters import gaussian, sobel, threshold_otsu
    from skimage.measure import label
    from skimage.morphology import disk

    grey = rgb.mean(axis=2) / 255.0
    edges = gaussian(sobel(grey), sigma=2.0)
    if float(edges.max() - edges.min()) < 1e-4:
        return np.zeros((0, 3), np.int64)
    fg = ndi.binary_fill_holes(ndi.binary_closing(edges > threshold_otsu(edges), structure=disk(2)))
    return boxes_around(_centroids_of_labels(label(fg), s.min_area), s.size)


@UNITS.register("mask")
def from_mask(rgb: np.ndarray, path: Path, name: str, s: UnitSettings) -> np.ndarray:
    """Cells of a label mask (0 = background, one integer per cell) with the image's name in ``s.masks``."""
    from slidepredict.cells.images import read_image

    if s.masks is None:
        raise CohortError("the mask unit needs --masks, a folder of label masks named like the images")
    found = sorted(p for p in Path(s.masks).glob(f"{Path(name).stem}.*") if p.is_file())
    if not found:
        raise CohortError(f"no label mask for image '{name}' in {s.masks} (expected {Path(name).stem}.tif or .png)")
    labels = read_image(found[0])[:, :, 0]
    if labels.shape != rgb.shape[:2]:
        raise SlideError(f"{found[0]}: mask is {labels.shape[1]}x{labels.shape[0]} px but image '{name}' is "
                         f"{rgb.shape[1]}x{rgb.shape[0]}")
    return boxes_around(_centroids_of_labels(labels.astype(np.int64), s.min_area), s.size)


@UNITS.register("centroids")
def from_centroids(rgb: np.ndarray, path: Path, name: str, s: UnitSettings) -> np.ndarray:
    """Cells at the given centroids (a table with IMAGE, X, Y in image pixels)."""
    if s.centroids is None:
        raise CohortError("the centroids unit needs --centroids, a table with IMAGE, X and Y columns")
    rows = s.centroids[s.centroids["IMAGE"] == name]
    return boxes_around(rows[["X", "Y"]].to_numpy(np.float64), s.size)


def crop(rgb: np.ndarray, box: np.ndarray, out_px: int) -> np.ndarray:
    """The box (zero padding where it leaves the image) resized to ``out_px`` square, uint8 RGB."""
    x, y, side = (int(v) for v in box)
    h, w = rgb.shape[:2]
    patch = np.zeros((side, side, 3), np.uint8)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
    if x1 > x0 and y1 > y0:
        patch[y0 - y : y1 - y, x0 - x : x1 - x] = rgb[y0:y1, x0:x1]
    return resize_square(patch, out_px)


def resize_square(patch: np.ndarray, out_px: int) -> np.ndarray:
    """A square uint8 RGB patch at ``out_px`` (bilinear): the one resize embedding and fine-tuning share."""
    from PIL import Image

    if patch.shape[0] == out_px:
        return patch
    return np.asarray(Image.fromarray(patch).resize((out_px, out_px), Image.BILINEAR))


def make_units(rgb: np.ndarray, path: Path, name: str, settings: UnitSettings) -> np.ndarray:
    """Boxes of the configured unit kind; an unknown kind is one line listing the known ones."""
    if settings.kind not in UNITS:
        raise CohortError(f"unknown unit '{settings.kind}'; --unit is one of {', '.join(UNITS.names())}")
    return UNITS[settings.kind](rgb, path, name, settings)


def list_units() -> list[str]:
    """Registered unit kinds, in registration order."""
    return UNITS.names()
