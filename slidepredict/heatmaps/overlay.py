"""Score maps on the slide thumbnail: tiles painted at thumbnail resolution, never at slide resolution.

Every raster here is sized by the thumbnail (or the requested map size), so memory and time
stay flat however large the slide is; CLAM-style heatmaps built at level 0 need tens of GiB.
Tissue-only: pixels no tile covers stay transparent, so background never gets a colour.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from slidepredict.heatmaps.scores import ATTENTION, TileScores

CMAPS = {"class": "viridis", ATTENTION: "inferno"}  # perceptually uniform, readable in greyscale print
ALPHA = 0.6
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(label: str) -> str:
    """A class name as it may appear in a file name (``MSI-H`` stays, ``wt/mut`` -> ``wt_mut``)."""
    return _UNSAFE.sub("_", str(label)).strip("_") or "class"


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


def draw_overlay(
    thumb: np.ndarray, value_map: np.ndarray, path: Path, title: str, label: str, cmap: str
) -> Path:
    """Thumbnail with the score map on top, a 0..1 colour bar and a two-line title, as a PNG.

    The figure's DPI is chosen so the thumbnail is drawn at about its native size: no
    resampling blur, and text stays legible at any thumbnail size.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h, w = thumb.shape[:2]
    long_in = 9.0
    dpi = max(60.0, max(h, w) / long_in)
    fig = Figure(figsize=(w / dpi + 1.6, h / dpi + 1.0), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(thumb, interpolation="nearest")
    masked = np.ma.masked_invalid(value_map)
    im = ax.imshow(masked, cmap=cmap, vmin=0.0, vmax=1.0, alpha=ALPHA, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=12)
    bar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    bar.solids.set_alpha(1.0)  # the bar shows the colours themselves, not blended with white
    bar.set_label(label, fontsize=11)
    fig.savefig(path, dpi=dpi)
    return path


def map_title(slide: str, name: str, scores: TileScores) -> tuple[str, str]:
    """Title naming the map and the slide-level prediction, and the colour-bar label."""
    pred = f"prediction {scores.target} = {scores.prediction} (p = {scores.confidence:.2f})"
    if name == ATTENTION:
        return f"{slide}: attention\n{pred}", "attention (rank within slide, 1 = highest)"
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
        path = out_dir / f"{stem}_heatmap_{safe_name(name)}.png"
        written.append(draw_overlay(thumb, gather(index, values), path, title, label, cmap))
    return written


def map_scale(dimensions: tuple[int, int], size0: int, max_px: int) -> int:
    """Integer level-0 px per map pixel: the map's long side fits ``max_px``, and no finer than 8 px per tile.

    An integer factor keeps the map's pixel grid exactly on the slide's, so overlays line up.
    """
    by_size = math.ceil(max(dimensions) / max_px)
    by_tile = max(1, size0 // 8)
    return max(1, by_size, by_tile)
