"""Top-k and bottom-k tiles per class, read from the slide at the feature tile size, and one contact sheet.

Only 2 * k * C tiles are read, so this costs the same on any slide size. File names carry the
rank, score and level-0 position, so a tile can be found again in QuPath (x, y are its top-left).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from slidepredict.core.names import safe_name
from slidepredict.heatmaps.scores import TileScores
from slidepredict.slide import Slide
from slidepredict.core.units import Microns, SlidePixels, TilePixels

TILE_DIR = "tiles"
SHEET_PX = 160  # tile edge on the contact sheet


@dataclass
class PickedTile:
    category: str
    end: str  # "top" or "bottom"
    rank: int  # 1 = most (top) or least (bottom) typical
    index: int  # row in the feature file
    score: float
    image: np.ndarray
    path: Path


def pick(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the k highest and k lowest values (stable, so ties keep file order)."""
    order = np.argsort(-np.asarray(values), kind="stable")
    k = min(k, len(order))
    return order[:k], order[::-1][:k]


def extract_tiles(slide: Slide, scores: TileScores, out_dir: Path, k: int, tile_px: int) -> list[PickedTile]:
    """Write ``tiles/<class>_<top|bottom>_<rank>_x<X>_y<Y>.jpg`` for every class; returns them in sheet order."""
    folder = out_dir / TILE_DIR
    folder.mkdir(exist_ok=True)
    size_um = Microns(scores.size0 * float(slide.mpp))
    picked: list[PickedTile] = []
    for j, cat in enumerate(scores.categories):
        values = scores.class_scores[:, j]
        for end, rows in zip(("top", "bottom"), pick(values, k)):
            for rank, row in enumerate(rows, start=1):
                x, y = (int(v) for v in scores.coords[row])
                rgb = slide.read_region_at(SlidePixels(x), SlidePixels(y), size_um, TilePixels(tile_px))
                path = folder / f"{safe_name(cat)}_{end}_{rank:02d}_x{x}_y{y}.jpg"
                Image.fromarray(rgb).save(path, quality=92)
                picked.append(PickedTile(cat, end, rank, int(row), float(values[row]), rgb, path))
    return picked


def contact_sheet(picked: list[PickedTile], path: Path, title: str) -> Path:
    """One row per class and end (top / bottom), k tiles per row, each labelled with its score."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows: dict[tuple[str, str], list[PickedTile]] = {}
    for t in picked:
        rows.setdefault((t.category, t.end), []).append(t)
    n_rows, n_cols = len(rows), max(len(r) for r in rows.values())
    cell_in = 1.6
    fig = Figure(figsize=(cell_in * n_cols + 1.4, cell_in * n_rows + 0.8), dpi=SHEET_PX / cell_in * 1.1,
                 layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=12)
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    for r, ((cat, end), tiles) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"{cat}\n{end} {len(tiles)}", fontsize=9)
            if c >= len(tiles):
                ax.set_axis_off()
                continue
            ax.imshow(tiles[c].image)
            ax.set_title(f"{tiles[c].score:.3f}", fontsize=8)
    fig.savefig(path, pil_kwargs={"compress_level": 1})
    return path
