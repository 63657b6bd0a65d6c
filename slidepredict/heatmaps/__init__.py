"""Spatial heatmaps: per-tile attention and class scores, thumbnail overlays, top tiles, QuPath exports.

``heatmaps(model, slides_dir, features_dir, out_dir)`` writes one folder per slide (DESIGN.md §3):
``tile-scores.csv``, ``<slide>.geojson``, ``<slide>_heatmap_<class|attention>.png``, ``tiles/`` with
a ``<slide>_tiles.png`` contact sheet, and ``<slide>_probability.ome.tif``.
"""

from slidepredict.heatmaps.api import HeatmapParams, HeatmapRun, heatmap_slide, heatmaps, run_heatmaps, select_slides
from slidepredict.heatmaps.scores import TileScores, rank_normalise, score_slide

__all__ = [
    "HeatmapParams", "HeatmapRun", "TileScores", "heatmap_slide", "heatmaps", "rank_normalise", "run_heatmaps",
    "score_slide", "select_slides",
]
