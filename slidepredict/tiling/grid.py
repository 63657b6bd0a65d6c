"""A grid of tiles of ``tile_um`` microns over the tissue, saved as level-0 coordinates.

All checks (tissue fraction, background colour, blur) run on the low-resolution image the
tissue mask was computed on, so planning a gigapixel slide reads no full-resolution pixels.
The output is ``<out>/<slide_stem>.h5`` with ``coords`` and the attributes of docs/formats.md,
plus CLAM/TRIDENT's ``patch_size``/``patch_level`` on ``coords`` so their tools read it too
(paths and attributes: :mod:`slidepredict.featurefile`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from slidepredict.core import batch
from slidepredict.tiling.settings import TilingSettings
from slidepredict.core.errors import NoTissueError
from slidepredict.featurefile import (
    COORDS,
    COORDS_DATASETS,
    clam_coords_attrs,
    clean_partials,
    coords_attrs,
    slide_h5_path,
    write_h5_atomic,
    write_once,
)
from slidepredict.slide import MPPChoice, Slide, open_slide
from slidepredict.tiling.tissue import MODALITIES, TissueMask, TissueParams, rgb_to_hsv, tissue_mask
from slidepredict.core.units import um_to_level0

TISSUE = TissueParams()  # tissue detection settings (not user settings yet; part of every tiling file's fingerprint)
BLUR_UM_PER_PX = 8.0  # sharpness is measured at one fixed resolution so its threshold means the same everywhere


DEFAULT_TILE_PX = 224  # tiles resized for an encoder with this input when none is named


def resolve_tile_px(params: TilingSettings, encoder_px: int | None = None) -> TilingSettings:
    """``tile_px: null`` means the encoder's input size (or DEFAULT_TILE_PX when tiling alone)."""
    if params.tile_px is not None:
        return params
    return params.model_copy(update={"tile_px": encoder_px or DEFAULT_TILE_PX})


@dataclass
class TilePlan:
    """Kept tiles plus what they were chosen from (for QC images and diagnostics)."""

    coords: np.ndarray
    size_level0: int
    tissue: TissueMask
    n_grid: int


def tile_means(image: np.ndarray, scale: float, coords: np.ndarray, size0: int, full_area: bool) -> np.ndarray:
    """Mean of ``image`` over each tile, via a summed-area table (no per-tile loop).

    ``full_area`` divides by the whole tile (parts outside the slide count as zero),
    otherwise by the part of the tile inside the image.
    """
    h, w = image.shape
    sat = np.zeros((h + 1, w + 1), dtype=np.float64)
    sat[1:, 1:] = image.astype(np.float64).cumsum(0).cumsum(1)
    x0 = np.clip(np.floor(coords[:, 0] / scale), 0, w).astype(np.int64)
    y0 = np.clip(np.floor(coords[:, 1] / scale), 0, h).astype(np.int64)
    x1 = np.clip(np.maximum(np.ceil((coords[:, 0] + size0) / scale), x0 + 1), 0, w).astype(np.int64)
    y1 = np.clip(np.maximum(np.ceil((coords[:, 1] + size0) / scale), y0 + 1), 0, h).astype(np.int64)
    total = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    if full_area:
        side = max(size0 / scale, 1.0)
        area = np.full(len(coords), side * side)
    else:
        area = ((x1 - x0) * (y1 - y0)).astype(np.float64)
    return np.where(area > 0, total / np.maximum(area, 1e-9), 0.0)


def _sharpness_image(rgb: np.ndarray, um_per_px: float) -> tuple[np.ndarray, float]:
    """|Laplacian| of grey at BLUR_UM_PER_PX; returns it and its size factor relative to ``rgb``."""
    from scipy import ndimage
    from skimage.transform import resize

    grey = rgb.astype(np.float32).mean(axis=2) / 255.0
    factor = max(1.0, BLUR_UM_PER_PX / um_per_px)
    if factor > 1.0:
        shape = (max(1, round(grey.shape[0] / factor)), max(1, round(grey.shape[1] / factor)))
        grey = resize(grey, shape, anti_aliasing=True)
        factor = rgb.shape[0] / shape[0]
    return np.abs(ndimage.laplace(grey)), factor


def grid(slide: Slide, size0: int) -> np.ndarray:
    """Top-left corners of a gap-free grid from (0, 0); edge tiles may overhang (read as white)."""
    w, h = slide.dimensions
    xs = np.arange(0, w, size0, dtype=np.int64)
    ys = np.arange(0, h, size0, dtype=np.int64)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def _plan(slide: Slide, params: TilingSettings, tissue_params: TissueParams = TISSUE) -> TilePlan:
    size0 = int(um_to_level0(params.tile_um, slide.mpp))
    tissue = tissue_mask(slide, tissue_params)
    if not tissue.mask.any():
        raise NoTissueError(
            f"{slide.path.name}: no tissue found (the slide looks like empty glass); "
            "check the file, or use another tissue modality if it is not brightfield/fluorescence"
        )
    cand = grid(slide, size0)
    keep = tile_means(tissue.mask, tissue.scale, cand, size0, full_area=True) >= params.min_tissue
    background = MODALITIES[tissue.modality].background(rgb_to_hsv(tissue.rgb))
    keep &= tile_means(background, tissue.scale, cand, size0, full_area=False) < params.max_background
    if params.min_sharpness > 0:
        sharp, factor = _sharpness_image(tissue.rgb, tissue.um_per_px)
        keep &= tile_means(sharp, tissue.scale * factor, cand, size0, full_area=False) >= params.min_sharpness
    coords = cand[keep]
    w_um, h_um = (d * slide.mpp for d in slide.dimensions)
    if len(coords) == 0 and max(w_um, h_um) < params.tile_um:
        raise NoTissueError(
            f"{slide.path.name}: the image ({w_um:.0f} x {h_um:.0f} um) is smaller than one {params.tile_um:g} um "
            "tile; lower --tile-um"
        )
    if len(coords) == 0:
        raise NoTissueError(
            f"{slide.path.name}: tissue found on {tissue.tissue_fraction:.1%} of the slide, but no "
            f"{params.tile_um:g} um tile has at least {params.min_tissue:.0%} tissue that is not blank or blurred; "
            "lower --min-tissue or --tile-um"
        )
    return TilePlan(coords=coords, size_level0=size0, tissue=tissue, n_grid=len(cand))


def plan_tiles(slide: Slide, params: TilingSettings) -> np.ndarray:
    """Level-0 top-left (x, y) of every kept tile, int64 (N, 2); reads only the low-resolution level."""
    return _plan(slide, params).coords


def plan_fingerprint(params: TilingSettings) -> dict[str, Any]:
    """Every setting that changes which tiles are kept (not ``qc``, which only adds a picture)."""
    return {**resolve_tile_px(params).model_dump(exclude={"qc"}), "tissue": asdict(TISSUE)}


def tile_slide(
    slide_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    params: TilingSettings | None = None,
    mpp: MPPChoice = None,
) -> str:
    """Tile one slide into ``<out_dir>/<stem>.h5``; returns batch.DONE, SKIPPED (complete) or BUSY (locked)."""
    params = resolve_tile_px(params or TilingSettings())
    target = slide_h5_path(out_dir, slide_path)
    with open_slide(slide_path, mpp=mpp) as slide:
        attrs = coords_attrs(slide, params, plan_fingerprint(params))

        def work() -> None:
            plan = _plan(slide, params)
            write_h5_atomic(target, {COORDS: plan.coords}, attrs, dataset_attrs={COORDS: clam_coords_attrs(attrs, slide)})
            if params.qc:
                from slidepredict.tiling.qc import qc_path, write_qc_image

                write_qc_image(qc_path(out_dir, slide_path), plan.tissue, plan.coords, plan.size_level0)

        return write_once(target, attrs, work, COORDS_DATASETS)


def tile_many(
    slides: list[Path],
    out_dir: str | os.PathLike[str],
    params: TilingSettings | None = None,
    mpp: MPPChoice = None,
) -> batch.BatchResult:
    """Tile every slide; one failing slide is reported and the rest go on."""
    params = resolve_tile_px(params or TilingSettings())
    out = batch.check_writable(out_dir)
    clean_partials(out)
    return batch.run_per_slide(slides, lambda p: tile_slide(p, out, params, mpp=mpp), "Tiling slides")
