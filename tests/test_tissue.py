"""Tissue detection: real slides with default settings, biopsies, pen ink, fluorescence, micron-based sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from slidepredict.core.errors import SlidePredictError
from slidepredict.slide import open_slide
from slidepredict.demo.synthetic import SlideLook, render_he, write_pyramid
from slidepredict.tiling.tissue import TissueParams, mask_from_rgb, tissue_mask


@pytest.mark.parametrize(
    ("fixture", "mpp", "modality", "low", "high"),
    [
        ("cmu_slide", None, "he", 0.2, 0.5),
        ("tcga_no_mpp_slide", 0.5, "he", 0.5, 0.8),
        ("ndpi_slide", None, "fluorescence", 0.3, 0.7),
        ("ome_tiff_slide", None, "he", 0.95, 1.0),
    ],
)
def test_default_settings_find_tissue_on_real_slides(request, fixture, mpp, modality, low, high) -> None:
    with open_slide(request.getfixturevalue(fixture), mpp=mpp) as s:
        tm = tissue_mask(s)
        assert tm.modality == modality
        assert low <= tm.tissue_fraction <= high
        assert tm.mask.shape == tm.rgb.shape[:2]
        assert tm.scale * tm.mask.shape[1] == pytest.approx(s.dimensions[0], rel=0.01)
        assert max(tm.mask.shape) <= 4096  # bounded memory


def test_fluorescence_background_is_not_tissue(ndpi_slide: Path) -> None:
    """Near-black pixels have saturation ~1: saturation-Otsu would call the dark glass tissue."""
    with open_slide(ndpi_slide) as s:
        tm = tissue_mask(s)
        forced = tissue_mask(s, TissueParams(modality="he", pen_filter=False))
    assert forced.tissue_fraction > 0.9  # what an H&E-only detector does on this slide
    brightness = tm.rgb.max(axis=2)
    assert np.median(brightness[~tm.mask]) * 3 < np.median(brightness[tm.mask])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    return resize(mask.astype(float), shape, order=0) > 0.5


@pytest.mark.parametrize(("width", "height"), [(4096, 3072), (768, 576)])
def test_mask_matches_synthetic_ground_truth(width: int, height: int) -> None:
    """Resection-sized and biopsy-sized (384 x 288 um) synthetic tissue are both found."""
    rgb, truth, _ = render_he(np.random.default_rng(4), width, height, 0.5, look=SlideLook())
    um_per_px = 4.0 if width > 1000 else 2.0
    step = int(um_per_px / 0.5)
    mask, modality, _ = mask_from_rgb(rgb[::step, ::step], um_per_px)
    assert modality == "he"
    assert _iou(mask, _resize_mask(truth, mask.shape)) > 0.85


def test_pen_ink_is_removed() -> None:
    rgb, truth, _ = render_he(np.random.default_rng(8), 2048, 1536, 0.5, look=SlideLook())  # pale looks: issue 13
    inked = rgb.copy()
    inked[700:760, 200:1800] = (40, 140, 60)  # green marker across tissue and glass
    inked[200:1400, 1000:1050] = (30, 60, 170)  # blue marker
    inked[1300:1400, 300:500] = (15, 15, 20)  # black ink
    pen = np.zeros(rgb.shape[:2], bool)
    pen[700:760, 200:1800] = pen[200:1400, 1000:1050] = pen[1300:1400, 300:500] = True
    step = 8  # 4 um/px
    mask, _, ink = mask_from_rgb(inked[::step, ::step], 4.0)
    assert not (mask & pen[::step, ::step]).any()
    margin = ndimage.distance_transform_edt(~pen[::step, ::step]) * 4.0 <= TissueParams().pen_margin_um + 4.0
    clean_truth = _resize_mask(truth, mask.shape) & ~margin
    assert (mask & clean_truth).sum() / clean_truth.sum() > 0.9  # the rest of the tissue stays
    assert (ink & pen[::step, ::step]).sum() / pen[::step, ::step].sum() > 0.9  # the ink itself is found
    unfiltered, _, _ = mask_from_rgb(inked[::step, ::step], 4.0, TissueParams(pen_filter=False))
    assert (unfiltered & pen[::step, ::step]).sum() > 100  # the filter is what removes it


def _squares_slide(path: Path, mpp: float) -> Path:
    """Glass with a 400 um tissue square and a 100 um fragment, at any MPP."""
    side = int(round(800 / mpp))
    rng = np.random.default_rng(0)
    rgb = np.full((side, side, 3), 242, np.uint8)
    big, frag, y0, f0 = int(400 / mpp), int(100 / mpp), int(100 / mpp), int(600 / mpp)
    rgb[y0 : y0 + big, y0 : y0 + big] = (215, 120, 180)
    rgb[f0 : f0 + frag, f0 : f0 + frag] = (200, 110, 170)
    noise = rng.integers(-12, 13, rgb.shape)
    return write_pyramid(path, np.clip(rgb + noise, 0, 255).astype(np.uint8), mpp)


@pytest.mark.parametrize("mpp", [0.25, 0.5])
def test_sizes_are_microns_not_pixels(tmp_path: Path, mpp: float) -> None:
    """The 10,000 um^2 fragment is dropped by the 20,000 um^2 default and kept at 5,000, at any MPP."""
    with open_slide(_squares_slide(tmp_path / "sq.tif", mpp)) as s:
        default = tissue_mask(s)
        finer = tissue_mask(s, TissueParams(min_object_um2=5_000.0))
    px_um2 = default.um_per_px**2
    assert default.mask.sum() * px_um2 == pytest.approx(400 * 400, rel=0.1)
    assert finer.mask.sum() * px_um2 == pytest.approx(400 * 400 + 100 * 100, rel=0.1)


def test_unknown_modality() -> None:
    with pytest.raises(SlidePredictError) as err:
        mask_from_rgb(np.zeros((8, 8, 3), np.uint8), 8.0, TissueParams(modality="brightfield"))
    assert str(err.value) == "unknown tissue method 'brightfield'; --tissue-method is one of auto, he, ihc, fluorescence"


def test_empty_glass_has_no_tissue() -> None:
    rng = np.random.default_rng(1)
    glass = np.clip(240 + rng.normal(0, 3, (200, 200, 3)), 0, 255).astype(np.uint8)
    mask, _, _ = mask_from_rgb(glass, 8.0)
    assert not mask.any()
