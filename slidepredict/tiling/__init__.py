"""Tiling: tissue detection (`tissue`), the tile grid and its coordinate files (`grid`), QC images (`qc`).

Names are imported on first use, so reading ``TilingSettings`` never imports NumPy or SciPy.
"""

from slidepredict.core.lazy import lazy_exports

_API = {
    **dict.fromkeys(("DEFAULT_TILE_PX", "plan_fingerprint", "plan_tiles", "resolve_tile_px", "tile_many", "tile_means",
                     "tile_slide"), "slidepredict.tiling.grid"),
    "TilingSettings": "slidepredict.tiling.settings",
}
__getattr__ = lazy_exports(__name__, _API)
__all__ = sorted(_API)
