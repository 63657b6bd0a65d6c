"""Reading feature files written by slidepredict, CLAM/TRIDENT or marugoto/STAMP, and our tiling files.

Ours, CLAM and TRIDENT store ``features``, marugoto and STAMP ``feats``, as (N, D) or
(1, N, D); :func:`feature_dataset` is the one place that knows this, and every reader
(whole bags, sampled rows, probes, heatmaps) goes through it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from slidepredict.core.errors import FeatureFileError
from slidepredict.featurefile.h5 import plain_attrs, read_attrs
from slidepredict.featurefile.layout import COORDS, FEATURE_KEYS, STAMP_FEATURES
from slidepredict.featurefile.spec import TUNED_ATTR, FeatureSpec, SlideFeatures, microns_per_px

if TYPE_CHECKING:
    import h5py

_TILE_NAME_XY = re.compile(r"\((\d+),\s*(\d+)\)")


@dataclass
class FeatureBag:
    """What any supported feature file holds, whatever tool wrote it."""

    path: Path
    features: np.ndarray | None
    coords: np.ndarray | None
    spec: FeatureSpec
    attrs: dict[str, Any] = field(default_factory=dict)
    layout: str = "slidepredict"  # or "clam" (``features`` without our attributes) or "stamp" (``feats``)

    @property
    def n_tiles(self) -> int:
        """Rows read (all of them unless ``rows`` was given), also when features were not loaded."""
        if self.features is not None:
            return int(self.features.shape[0])
        return 0 if self.coords is None else int(self.coords.shape[0])


@contextlib.contextmanager
def open_h5(path: Path) -> Iterator[h5py.File]:
    """Open a feature file for reading; a missing or broken file is a one-line error naming it."""
    import h5py

    if not path.is_file():
        raise FeatureFileError(f"feature file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FeatureFileError(f"{path}: not a readable HDF5 feature file ({exc.__class__.__name__})") from None
    with f:
        yield f


def feature_dataset(f: h5py.File, path: Path) -> h5py.Dataset:
    """The features of an open file (``features`` or ``feats``), checked to be (N, D) or (1, N, D)."""
    key = next((k for k in FEATURE_KEYS if k in f), None)
    if key is None:
        raise FeatureFileError(
            f"{path}: no 'features' or 'feats' dataset (found: {', '.join(f.keys()) or 'nothing'}); "
            "is this a coordinates-only file from `slidepredict tile`?"
        )
    ds = f[key]
    if not (ds.ndim == 2 or (ds.ndim == 3 and ds.shape[0] == 1)):  # CLAM/TRIDENT sometimes store (1, N, D)
        raise FeatureFileError(f"{path}: '{key}' has shape {ds.shape}; expected (N, D)")
    return ds


def _layout(ds: h5py.Dataset, attrs: dict[str, Any]) -> str:
    if ds.name.rsplit("/", 1)[-1] == STAMP_FEATURES:
        return "stamp"
    return "slidepredict" if "encoder" in attrs else "clam"


def _coords_from_names(names: np.ndarray) -> np.ndarray | None:
    """Recover (x, y) from tile file names like ``Tile_(16896,20480).jpg`` when a file has no coords."""
    out = []
    for raw in names:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        m = _TILE_NAME_XY.search(name)
        if m is None:
            return None
        out.append((int(m.group(1)), int(m.group(2))))
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def _coords(f: h5py.File, attrs: dict[str, Any], layout: str) -> np.ndarray | None:
    """Level-0 pixel coordinates of every row, from ``coords`` or tile names; None when neither exists."""
    if COORDS in f:
        coords = np.asarray(f[COORDS][()])
        if coords.ndim == 3 and coords.shape[0] == 1:
            coords = coords[0]
        if layout == "stamp" and "mpp" in attrs and coords.dtype.kind == "f":  # STAMP stores microns
            coords = np.round(coords / float(attrs["mpp"]))
        return coords.astype(np.int64)
    if "metadata" in f:
        return _coords_from_names(f["metadata"][()])
    return None


def read_features(
    path: str | os.PathLike[str], load: bool = True, rows: np.ndarray | None = None
) -> FeatureBag:
    """Read a feature file written by slidepredict, CLAM/TRIDENT (``features``) or STAMP (``feats``).

    ``rows`` (sorted indices) reads only those tiles, for sampled training bags; ``load=False``
    reads coordinates and attributes only. STAMP coordinates in microns are converted to
    level-0 pixels when the file records the slide MPP, and kept as they are otherwise. Files
    without coordinates (some marugoto exports) get them from tile names when possible, else
    ``coords`` is None.
    """
    path = Path(path)
    with open_h5(path) as f:
        attrs = plain_attrs(f.attrs)
        ds = feature_dataset(f, path)
        n, dim = ds.shape[-2:]
        layout = _layout(ds, attrs)
        sel: Any = slice(None) if rows is None else rows
        feats = (ds[0, sel] if ds.ndim == 3 else ds[sel]) if load else None
        coords = _coords(f, attrs, layout)
    if coords is not None and coords.shape[0] != n:
        raise FeatureFileError(f"{path}: {n} feature rows but {coords.shape[0]} coordinates")
    if coords is not None and rows is not None:
        coords = coords[rows]
    return FeatureBag(path, feats, coords, FeatureSpec.from_attrs(attrs, dim), attrs, layout)


def read_bag_rows(path: Path, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (float32) and level-0 coords of one file, all rows or only ``rows`` (sorted) for sampling."""
    bag = read_features(path, rows=rows)
    return np.asarray(bag.features, dtype=np.float32), bag.coords


def probe_feature_file(path: Path) -> SlideFeatures:
    """Tile count and spec of a feature file without reading its features or coordinates (cohort building)."""
    with open_h5(path) as f:
        n, dim = feature_dataset(f, path).shape[-2:]
        attrs = plain_attrs(f.attrs)
    return SlideFeatures(path, int(n), FeatureSpec.from_attrs(attrs, dim), microns_per_px(attrs),
                         bool(attrs.get(TUNED_ATTR, False)))


SLIDE_GAP_UM = 1e6  # a patient's slides are placed this far apart (1 m): no tile of one neighbours a tile of another


def positions_um(coords: np.ndarray, um_per_px: float | None, slide_index: int = 0) -> np.ndarray:
    """Tile positions a MIL head sees: level-0 px times the slide's microns per px, each slide shifted apart.

    Physical units make "two tiles 0.5 mm apart" mean the same on every scanner and magnification;
    the shift keeps a multi-slide patient's slides from sharing positions. Files that record no
    resolution are placed in pixels.
    """
    scale = 1.0 if um_per_px is None else float(um_per_px)
    out = np.asarray(coords, dtype=np.float64) * scale
    out[:, 0] += slide_index * SLIDE_GAP_UM
    return out.astype(np.float32)


def load_coords(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Coordinates (int64 (N, 2)) and attributes of a complete tiling file."""
    import h5py

    path = Path(path)
    attrs = read_attrs(path)
    if attrs is None:
        raise FeatureFileError(f"{path}: missing or incomplete tiling file; run `slidepredict tile` again")
    with h5py.File(path, "r") as f:
        if COORDS not in f:
            raise FeatureFileError(f"{path}: no 'coords' dataset; not a tiling file")
        coords = np.asarray(f[COORDS][()], dtype=np.int64).reshape(-1, 2)
    return coords, attrs
