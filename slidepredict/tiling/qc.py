"""QC thumbnails: the slide with its tissue outline and the kept tile grid, to check tiling at a glance."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from slidepredict.core.atomic import atomic_path
from slidepredict.slide import slide_stem
from slidepredict.tiling.tissue import TissueMask

OUTLINE_RGB = (0, 200, 0)
TILE_RGB = (30, 90, 255)
MIN_SIDE_PX = 768  # small masks are enlarged so the grid stays visible


def qc_path(out_dir: str | os.PathLike[str], slide_path: str | os.PathLike[str]) -> Path:
    return Path(out_dir) / "qc" / f"{slide_stem(slide_path)}.png"


def render_qc(tissue: TissueMask, coords: np.ndarray, size_level0: int) -> Image.Image:
    """Draw on the low-resolution image the mask was computed on (no extra slide read)."""
    from skimage.segmentation import find_boundaries

    zoom = max(1, int(np.ceil(MIN_SIDE_PX / max(tissue.mask.shape))))
    rgb = np.repeat(np.repeat(tissue.rgb, zoom, axis=0), zoom, axis=1)
    mask = np.repeat(np.repeat(tissue.mask, zoom, axis=0), zoom, axis=1)
    edge = find_boundaries(mask, mode="inner")
    edge |= np.roll(edge, 1, axis=0) | np.roll(edge, 1, axis=1)  # two pixels wide
    rgb = rgb.copy()
    rgb[edge] = OUTLINE_RGB
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    f = zoom / tissue.scale  # image pixels per level-0 pixel
    side = size_level0 * f
    for x, y in coords:
        draw.rectangle([x * f, y * f, x * f + side - 1, y * f + side - 1], outline=TILE_RGB)
    return image


def write_qc_image(path: str | os.PathLike[str], tissue: TissueMask, coords: np.ndarray, size_level0: int) -> Path:
    """Render and save the QC PNG atomically (a killed run leaves no half-written image)."""
    with atomic_path(path) as tmp:
        render_qc(tissue, coords, size_level0).save(tmp, format="PNG")
    return Path(path)
