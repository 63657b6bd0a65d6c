"""Where per-slide h5 files live, which datasets they hold and which attributes we write (docs/formats.md).

A slide's tiling file and its feature file share one name, ``<out>/<slide_stem>.h5``, in
different folders (extraction keeps its tiling files in ``<features>/coords`` unless told
otherwise), so any stage finds the previous stage's file from the slide name alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from slidepredict.core.errors import CohortError
from slidepredict.layout import COORDS_SUBDIR
from slidepredict.slide import Slide, slide_stem
from slidepredict.core.units import um_to_level0

if TYPE_CHECKING:
    from slidepredict.tiling.settings import TilingSettings

COORDS = "coords"
FEATURES = "features"  # ours, CLAM and TRIDENT
STAMP_FEATURES = "feats"  # marugoto and STAMP
FEATURE_KEYS = (FEATURES, STAMP_FEATURES)
COORDS_DATASETS = (COORDS,)  # what a complete tiling file holds
FEATURE_DATASETS = (FEATURES, COORDS)  # what a complete feature file holds
STAMP_FILE_STEM = "features"  # marugoto/STAMP exports: <slide>/features.h5

# Tiling attributes a feature file repeats, so that it alone says how its tiles were cut.
TILE_ATTRS = ("tile_size_um", "tile_size_px", "tile_size_level0", "mpp", "slide_width", "slide_height")


def slide_h5_path(out_dir: str | os.PathLike[str], slide_path: str | os.PathLike[str]) -> Path:
    """``<out_dir>/<slide_stem>.h5``: a slide's tiling file or feature file, depending on the folder."""
    return Path(out_dir) / f"{slide_stem(slide_path)}.h5"


def default_coords_dir(features_dir: str | os.PathLike[str]) -> Path:
    """Where extraction keeps tiling files when no coordinates folder is given; cohorts skip it."""
    return Path(features_dir) / COORDS_SUBDIR


def index_feature_files(features_dir: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """Feature files under a folder (recursively), keyed by slide name (``<slide>/features.h5`` by its folder)."""
    root = Path(features_dir)
    if not root.is_dir():
        raise CohortError(f"features folder not found: {root}")
    index: dict[str, list[Path]] = {}
    for p in sorted(root.rglob("*.h5")):
        if p.relative_to(root).parts[0] == COORDS_SUBDIR:
            continue
        key = p.parent.name if p.stem == STAMP_FILE_STEM and p.parent != root else p.stem
        index.setdefault(key, []).append(p)
    return index


def coords_attrs(slide: Slide, params: TilingSettings, fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes of a tiling file (``params.tile_px`` resolved); a rerun with other values redoes the slide.

    ``fingerprint`` holds every setting that changes which tiles are kept (``tiling.plan_fingerprint``).
    """
    return {
        "tile_size_um": float(params.tile_um),
        "tile_size_px": int(params.tile_px or 0),
        "tile_size_level0": int(um_to_level0(params.tile_um, slide.mpp)),
        "mpp": float(slide.mpp),
        "slide_width": int(slide.dimensions[0]),
        "slide_height": int(slide.dimensions[1]),
        "tiling_params": json.dumps(dict(fingerprint), sort_keys=True),
    }


def clam_coords_attrs(attrs: Mapping[str, Any], slide: Slide) -> dict[str, Any]:
    """What CLAM/TRIDENT read from the ``coords`` dataset: tiles are read at level 0 with this size."""
    return {
        "patch_size": attrs["tile_size_level0"],
        "patch_level": 0,
        "patch_size_level0": attrs["tile_size_level0"],
        "downsample": [1.0, 1.0],
        "level_dim": list(slide.dimensions),
        "name": slide.name,
    }


def coords_digest(coords: np.ndarray) -> str:
    """Short hash of the tile grid, so features of an outdated tiling are redone rather than reused."""
    return hashlib.sha1(np.ascontiguousarray(coords, dtype=np.int64).tobytes()).hexdigest()[:16]


def feature_attrs(
    encoder: str, encoder_hash: str, tiling: Mapping[str, Any], coords: np.ndarray, stain_norm: str
) -> dict[str, Any]:
    """Attributes of a feature file: what a rerun must match to skip it, and what FeatureSpec compares.

    ``tiling`` is the tiling file's attributes; ``stain_norm`` is ``none`` or the normaliser's tag.
    """
    return {
        "encoder": encoder,
        "encoder_hash": encoder_hash,
        **{k: tiling[k] for k in TILE_ATTRS},
        "stain_norm": stain_norm,
        "coords_sha1": coords_digest(coords),
    }
