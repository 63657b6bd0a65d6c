"""Score maps on the slide thumbnail: tiles painted at thumbnail resolution, never at slide resolution.

Every raster here is sized by the thumbnail (or the requested map size), so memory and time
stay flat however large the slide is; CLAM-style heatmaps built at level 0 need tens of GiB.
Tissue-only: pixels no tile covers stay transparent, so background never gets a colour.
"""

from __future__ import annotations

import math

from pathlib import Path

import numpy as np

from slidepredict.core.names import safe_name
from slidepredict.heatmaps.scores import ATTENTION, TileScores

CMAPS = {"class": "viridis", ATTENTION: "inferno"}  # perceptually uniform, readable in greyscale print
ALPHA = 0.6


def tile_index_map(coords: np.ndarray, size0: int, scale: float, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) int32 raster of which tile covers each pixel (-1: none) at ``scale`` level-0 px per pixel.

    One pass over the tiles; every score channel is then a vectorised gather, so C classes cost
    one rasterisation. Where tiles overlap the later one wins.
    """
    h, w = shape
    index = np.full((h, w), -1, dtype=np.int32)
    x0 = np.clip(np.floor(coords[:, 0] / scale), 0, w).astype(np.int64)
    y0 = np.clip(np.floor(coords[:, 1] / scale), 0, h).astype(np.int64)
    x1 = np.clip(np.ceil((coords[:, 0] + size0) / scale), 0, w).astype(np.int64)
    y1 = np.clip(np.ceil((coords[:, 1] + size0) / scale), 0, h).astype(np.int64)
    for i, (a, b, c, d) in enumerate(zip(x0, y0, x1, y1)):
        index[b:d, a:c] = i
    return index


def gather(index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-tile ``values`` (N,) -> float32 raster with NaN where no tile lies."""
    out = np.full(index.shape, np.nan, dtype=np.float32)
    covered = index >= 0
    out[covered] = np.asarray(values, dtype=np.float32)[index[covered]]
    return out


def blend(thumb: np.ndarray, value_map: np.ndarray, cmap: str) -> np.ndarray:
    """Colour-mapped scores alpha-blended onto the thumbnail where tiles lie; elsewhere the thumbnail as is.

    Colours come from a 256-entry lookup table and the blend is integer arithmetic, so the
    extra memory is a few bytes per thumbnail pixel, not float copies of the whole image.
    """
    from matplotlib import colormaps

    covered = ~np.isnan(value_map)
    levels = np.zeros(value_map.shape, dtype=np.uint8)
    levels[covered] = np.round(np.clip(value_map[covered], 0.0, 1.0) * 255).astype(np.uint8)
    lut = colormaps[cmap](np.linspace(0.0, 1.0, 256), bytes=True)[:, :3].astype(np.uint16)
    alpha = round(ALPHA * 256)
    mixed = (thumb.astype(np.uint16) * (256 - alpha) + lut[levels] * alpha + 128) >> 8
    return np.where(covered[..., None], mixed.astype(np.uint8), thumb)


def draw_overlay(
    thumb: np.ndarray, value_map: np.ndarray, path: Path, title: str, label: str, cmap: str,
    bar: tuple[float, float] = (0.0, 1.0),
) -> Path:
    """Thumbnail with the score map on top, a 0..1 colour bar and a two-line title, as a PNG.

    Matplotlib draws only the title and the colour bar; the blended thumbnail is pasted into
    the rendered canvas pixel for pixel. No resampling blur, text legible at any thumbnail
    size, and no float copies of the image inside matplotlib.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from PIL import Image

    h, w = thumb.shape[:2]
    dpi = max(60.0, max(h, w) / 9.0)  # the long side spans 9 inches
    top, right = 0.65, 1.3  # inches for the title and the colour bar
    fig = Figure(figsize=(w / dpi + right, h / dpi + top), dpi=dpi, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    fw, fh = fig.get_size_inches()
    fig.suptitle(title, fontsize=12, x=(w / dpi) / fw / 2, y=1 - 0.08 / fh, va="top")
    cax = fig.add_axes(((w / dpi + 0.25) / fw, 0.05, 0.2 / fw, (h / dpi) / fh - 0.1))
    colorbar = fig.colorbar(ScalarMappable(Normalize(*bar), cmap), cax=cax)  # ``value_map`` is 0..1 over ``bar``
    colorbar.set_label(label, fontsize=11)
    canvas.draw()
    page = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
    page.paste(Image.fromarray(blend(thumb, value_map, cmap)), (0, page.height - h))
    page.save(path, format="PNG", compress_level=1)
    return path


def map_title(slide: str, name: str, scores: TileScores) -> tuple[str, str]:
    """Title naming the map, the prediction and whether its model held the patient out; the colour-bar label."""
    who = f"patient {scores.patient}: " if scores.patient else ""
    pred = f"{who}prediction {scores.stated}"
    pred += f", {scores.drawer.describe()}" if scores.drawer is not None else ""
    if name == ATTENTION:
        return f"{slide}: attention\n{pred}", "attention (rank within slide, 1 = highest)"
    if scores.value_range is not None:
        lo, hi = scores.value_range
        what = f"{scores.target} {scores.measure}" if scores.measure == "risk" else scores.target
        return f"{slide}: each tile's own {what}\n{pred}", f"tile {scores.measure} of {scores.target} ({lo:.3g} to {hi:.3g})"
    return f"{slide}: tile scores for {scores.target} = {name}\n{pred}", f"tile score for {name}"


def write_overlays(
    thumb: np.ndarray, thumb_scale: float, scores: TileScores, out_dir: Path, stem: str
) -> list[Path]:
    """One PNG per class and one for attention: ``<slide>_heatmap_<name>.png``."""
    shape = thumb.shape[:2]
    index = tile_index_map(scores.coords, scores.size0, thumb_scale, shape)
    written = []
    for name, values in scores.maps().items():
        title, label = map_title(stem, name, scores)
        cmap = CMAPS[ATTENTION] if name == ATTENTION else CMAPS["class"]
        bar = (0.0, 1.0)
        if name != ATTENTION and scores.value_range is not None:  # units -> the fixed 0..1 colour scale
            bar = lo, hi = scores.value_range
            values = (np.asarray(values, dtype=np.float64) - lo) / max(hi - lo, 1e-12)
        path = out_dir / f"{stem}_heatmap_{safe_name(name)}.png"
        written.append(draw_overlay(thumb, gather(index, values), path, title, label, cmap, bar))
    return written


def map_scale(dimensions: tuple[int, int], size0: int, max_px: int) -> int:
    """Integer level-0 px per map pixel: the map's long side fits ``max_px``, and no finer than 8 px per tile.

    An integer factor keeps the map's pixel grid exactly on the slide's, so overlays line up.
    """
    by_size = math.ceil(max(dimensions) / max_px)
    by_tile = max(1, size0 // 8)
    return max(1, by_size, by_tile)
