"""The `heatmaps:` section: which slides are drawn and how much is drawn for each."""

from __future__ import annotations

from slidepredict.core.settings import Settings, setting


class HeatmapSettings(Settings):
    """Spatial heatmaps, top tiles and QuPath export; every size is bounded so cost does not grow with the slide."""

    enabled: bool = setting(True, "Draw heatmaps.", run_only="`slidepredict heatmaps` always draws")
    topk: int = setting(8, "Top and bottom tiles saved per class (0: none).", ge=0)
    thumb_px: int = setting(2048, "Long side of the overlay thumbnails in pixels.", ge=64)
    map_px: int = setting(4096, "Long side of the OME-TIFF score map in pixels.", ge=64)
    tile_px: int | None = setting(
        None, "Edge of the saved top-tile images in pixels (null: the feature file's tile size).", ge=8)
    slides: list[str] = setting(
        default_factory=list, flag="--slide",
        description="Slide names to draw, with or without extension (empty: all slides with features).")
    max_slides: int = setting(20, "At most this many slides when `slides` is empty (0: all).", ge=0)
