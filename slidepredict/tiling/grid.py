"""A grid of tiles of ``tile_um`` microns over the tissue, saved as level-0 coordinates.

All checks (tissue fraction, background colour, blur) run on the low-resolution image the
tissue mask was computed on, so planning a gigapixel slide reads no full-resolution pixels.
The output is ``<out>/<slide_stem>.h5`` with ``coords`` and the attributes of docs/formats.md,
plus CLAM/TRIDENT's ``patch_size``/``patch_level`` on ``coords`` so their tools read it too
(paths and attributes: :mod:`slidepredict.featurefile`).
"""

from __future__ import annotations

import os
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from slidepredict.core import batch
from slidepredict.tiling.settings import TilingSettings
from slidepredict.core.errors import NoTissueError, SlidePredictError
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
from slidepredict.tiling.qc import write_qc
from slidepredict.tiling.tissue import (
    METHODS, MODALITIES, TissueMask, TissueParams, dilate, rgb_to_hsv, tissue_mask,
)
from slidepredict.core.units import um_to_level0

log = logging.getLogger(__name__)

TISSUE = TissueParams()  # tissue detection defaults (part of every tiling file's fingerprint); the method is a setting
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
    dropped: dict[str, np.ndarray] = field(default_factory=dict)  # reason -> coords of tiles on tissue or ink

    def summary(self) -> dict[str, Any]:
        """Tissue area and tiles kept/dropped by reason: the QC line of the report."""
        return {"method": self.tissue.modality, "tissue_mm2": round(self.tissue.tissue_area_mm2, 3),
                "kept": int(len(self.coords)), "dropped": {k: int(len(v)) for k, v in self.dropped.items()}}


DROP_REASONS = ("ink", "background", "blur")  # the first that applies names a dropped tile


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


def _check_scale(slide: Slide, tissue: TissueMask) -> None:
    """Warn when the tissue's size is implausible for the resolution: the MPP is then probably wrong."""
    long_mm = max(slide.dimensions) * slide.mpp / 1000
    rows, cols = np.nonzero(tissue.mask)
    extent_mm = 0.0 if not len(rows) else max(np.ptp(rows) + 1, np.ptp(cols) + 1) * tissue.um_per_px / 1000
    if long_mm < 1.0 or extent_mm > 75.0:
        what = f"the whole image spans {long_mm:.2f} mm" if long_mm < 1.0 else f"the tissue spans {extent_mm:.0f} mm"
        log.warning("%s: %s at MPP %g (%s), implausible for a slide; check the resolution (--mpp, --mpp-override)",
                    slide.path.name, what, slide.mpp, slide.mpp_source)


def _plan(slide: Slide, params: TilingSettings) -> TilePlan:
    size0 = int(um_to_level0(params.tile_um, slide.mpp))
    tissue = tissue_mask(slide, tissue_params(params))
    _check_scale(slide, tissue)
    if not tissue.mask.any():
        raise NoTissueError(
            f"{slide.path.name}: no tissue found (the slide looks like empty glass at MPP {slide.mpp:g}); check the "
            f"file and its resolution, or force a detection method with --tissue-method ({', '.join(METHODS[1:])})",
            tissue=tissue,
        )
    cand = grid(slide, size0)
    frac = np.minimum(tile_means(tissue.mask, tissue.scale, cand, size0, full_area=True), 1.0)
    background = MODALITIES[tissue.modality].background(rgb_to_hsv(tissue.rgb))
    ink = tissue.ink if tissue.ink is not None else np.zeros_like(tissue.mask)
    near_ink = dilate(ink, TISSUE.pen_margin_um / tissue.um_per_px)  # a tile at a stroke's edge is inked too
    ink_frac = tile_means(near_ink, tissue.scale, cand, size0, full_area=False)
    fails = {
        "ink": ink_frac > params.max_ink,
        "background": (frac < params.min_tissue)
        | (tile_means(background, tissue.scale, cand, size0, full_area=False) >= params.max_background),
        "blur": np.zeros(len(cand), dtype=bool),
    }
    if params.min_sharpness > 0:
        sharp, factor = _sharpness_image(tissue.rgb, tissue.um_per_px)
        fails["blur"] = tile_means(sharp, tissue.scale * factor, cand, size0, full_area=False) < params.min_sharpness
    keep = ~np.logical_or.reduce(list(fails.values()))
    shown = (frac > 0) | (ink_frac > 0)  # dropped tiles worth marking in QC: they touch tissue or ink
    dropped, taken = {}, keep.copy()
    for reason in DROP_REASONS:
        hit = fails[reason] & ~taken & shown
        dropped[reason] = cand[hit]
        taken |= fails[reason]
    coords = cand[keep]
    plan = TilePlan(coords=coords, size_level0=size0, tissue=tissue, n_grid=len(cand), dropped=dropped)
    w_um, h_um = (d * slide.mpp for d in slide.dimensions)
    if len(coords) == 0 and max(w_um, h_um) < params.tile_um:
        raise NoTissueError(
            f"{slide.path.name}: the image ({w_um:.0f} x {h_um:.0f} um) is smaller than one {params.tile_um:g} um "
            "tile; lower --tile-um", plan=plan,
        )
    if len(coords) == 0:
        raise NoTissueError(
            f"{slide.path.name}: tissue found on {tissue.tissue_fraction:.1%} of the slide, but no "
            f"{params.tile_um:g} um tile has at least {params.min_tissue:.0%} tissue that is not blank, ink or "
            "blurred; lower --min-tissue or --tile-um", plan=plan,
        )
    return plan


def plan_tiles(slide: Slide, params: TilingSettings) -> np.ndarray:
    """Level-0 top-left (x, y) of every kept tile, int64 (N, 2); reads only the low-resolution level."""
    return _plan(slide, params).coords


def tissue_params(params: TilingSettings) -> TissueParams:
    """The tissue detector's settings: fixed defaults plus the method the tiling settings choose."""
    return replace(TISSUE, modality=params.tissue_method)


def plan_fingerprint(params: TilingSettings) -> dict[str, Any]:
    """Every setting that changes which tiles are kept (not ``qc``, which only adds a picture)."""
    return {**resolve_tile_px(params).model_dump(exclude={"qc"}), "tissue": asdict(tissue_params(params))}


def tile_slide(
    slide_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    params: TilingSettings | None = None,
    mpp: MPPChoice = None,
) -> str:
    """Tile one slide into ``<out_dir>/<stem>.h5``; returns batch.DONE, SKIPPED (complete) or BUSY (locked)."""
    params = resolve_tile_px(params or TilingSettings())
    target = slide_h5_path(out_dir, slide_path)
    try:
        with open_slide(slide_path, mpp=mpp) as slide:
            attrs = coords_attrs(slide, params, plan_fingerprint(params))

            def work() -> None:
                try:
                    plan = _plan(slide, params)
                except NoTissueError as exc:
                    if params.qc:
                        write_qc(out_dir, slide_path, exc.plan, exc.tissue, str(exc))  # type: ignore[arg-type]
                    raise
                write_h5_atomic(target, {COORDS: plan.coords}, attrs,
                                dataset_attrs={COORDS: clam_coords_attrs(attrs, slide)})
                if params.qc:
                    write_qc(out_dir, slide_path, plan)

            return write_once(target, attrs, work, COORDS_DATASETS)
    except SlidePredictError as exc:
        if params.qc and not isinstance(exc, NoTissueError):  # unreadable: a QC image that says why
            write_qc(out_dir, slide_path, failure=str(exc))
        raise


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
