"""Spatial heatmaps: per-tile attention and class scores, thumbnail overlays, top tiles, QuPath exports.

``heatmaps(model, slides_dir, features_dir, out_dir)`` writes one folder per slide (docs/formats.md):
``tile-scores.csv``, ``<slide>.geojson``, ``<slide>_heatmap_<class|attention>.png``, ``tiles/`` with
a ``<slide>_tiles.png`` contact sheet, and ``<slide>_probability.ome.tif``.
"""

from slidepredict.core.lazy import lazy_exports

_API = {
    **dict.fromkeys(("HeatmapRun", "heatmap_slide", "run_heatmaps", "select_slides"), "slidepredict.heatmaps.api"),
    **dict.fromkeys(("TileScores", "rank_normalise", "score_slide"), "slidepredict.heatmaps.scores"),
    "HeatmapSettings": "slidepredict.heatmaps.settings",
}
__getattr__ = lazy_exports(__name__, _API)
__all__ = sorted(_API)
