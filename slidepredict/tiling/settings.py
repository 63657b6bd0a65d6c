"""The `tiling:` section: tile size and which tiles are kept."""

from __future__ import annotations

from typing import Literal

from slidepredict.core.settings import Settings, setting


class TilingSettings(Settings):
    """Tissue detection and the tile grid."""

    tile_um: float = setting(256.0, "Tile edge in microns.", gt=0)
    tile_px: int | None = setting(
        None, "Tile edge in pixels after resizing (null: the encoder's input size, 224 when tiling alone).", gt=0)
    min_tissue: float = setting(0.5, "Keep tiles with at least this tissue fraction.", ge=0, le=1)
    max_background: float = setting(
        0.8, "Drop tiles whose pixels are mostly glass-coloured (e.g. filled lumen holes).", gt=0, le=1)
    min_sharpness: float = setting(
        0.03, "Drop blurred tiles: mean |Laplacian| of grey at 8 um/px (real tissue 0.06-0.15; 0: off).", ge=0)
    max_ink: float = setting(
        0.05, "Drop tiles whose pixels are more than this share marker ink (red, green, blue, black).", ge=0, le=1)
    tissue_method: Literal["auto", "he", "ihc", "fluorescence"] = setting(
        "auto", "Tissue detection: he (saturation), ihc (optical density: pale counterstain, DAB), fluorescence "
        "(bright on dark); auto picks one per slide.")
    qc: bool = setting(True, "Write a QC thumbnail per slide (mask outline + tile grid).")
