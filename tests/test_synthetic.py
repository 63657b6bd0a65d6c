"""Synthetic slides: readable by OpenSlide, deterministic, with a signal visible to stain/nuclear statistics."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import openslide
import pytest
from skimage.color import rgb2hed

from slidepredict.slide import open_slide
from slidepredict.demo.synthetic import SIGNAL_FRACTION, SlideLook, load_ground_truth, make_cohort, make_slide, render_he
from slidepredict.tiling import TilingSettings, plan_tiles
from slidepredict.core.units import um_to_level0

SMALL = {"width": 2048, "height": 1536}


@pytest.fixture(scope="module")
def signal_slide(tmp_path_factory: pytest.TempPathFactory):
    return make_slide(tmp_path_factory.mktemp("syn") / "pos.tif", seed=11, signal=True)


def test_openslide_reads_it_as_generic_tiff(signal_slide) -> None:
    path = str(signal_slide.path)
    assert openslide.OpenSlide.detect_format(path) == "generic-tiff"
    osr = openslide.OpenSlide(path)
    assert osr.level_dimensions[0] == (4096, 3072)
    assert len(osr.level_dimensions) >= 3
    osr.close()
    with open_slide(path) as s:
        assert s.mpp == pytest.approx(0.5)
        assert type(s.backend).__name__ == "OpenSlideBackend"


def test_deterministic_from_seed(tmp_path: Path) -> None:
    a = make_slide(tmp_path / "a.tif", seed=5, signal=True, **SMALL)
    b = make_slide(tmp_path / "b.tif", seed=5, signal=True, **SMALL)
    c = make_slide(tmp_path / "c.tif", seed=6, signal=True, **SMALL)
    with open_slide(a.path) as sa, open_slide(b.path) as sb, open_slide(c.path) as sc:
        pa, pb, pc = (s.read_at_mpp(2.0)[0] for s in (sa, sb, sc))
    assert np.array_equal(pa, pb)
    assert np.array_equal(a.signal_mask, b.signal_mask)
    assert not np.array_equal(pa, pc)


def test_signal_region_is_localised_and_sized(signal_slide) -> None:
    tissue, sig = signal_slide.tissue_mask, signal_slide.signal_mask
    assert sig.any() and not (sig & ~tissue).any()
    assert sig.sum() / tissue.sum() == pytest.approx(SIGNAL_FRACTION, abs=0.03)
    from scipy import ndimage

    assert ndimage.label(sig)[1] == 1  # one patch, not scattered pixels


def test_signal_is_nuclear_size_not_colour(signal_slide) -> None:
    """Within a slide, the median nucleus size ranks signal tiles first; mean hematoxylin does not."""
    from skimage.measure import label, regionprops
    from sklearn.metrics import roc_auc_score

    params = TilingSettings(tile_um=128.0)
    with open_slide(signal_slide.path) as s:
        coords = plan_tiles(s, params)
        size0 = um_to_level0(params.tile_um, s.mpp)
        hema = [rgb2hed(s.read_region_at(x, y, 128.0, 128))[..., 0] for x, y in coords]
    inside = signal_slide.in_signal(coords, size0)
    assert 3 <= inside.sum() <= 0.15 * len(inside)
    size = [np.median([r.area for r in regionprops(label(h > 0.04))] or [0]) for h in hema]
    assert roc_auc_score(inside, size) > 0.9
    assert abs(roc_auc_score(inside, [h.mean() for h in hema]) - 0.5) < 0.25


def test_the_signal_moves_slide_mean_colour_far_less_than_slides_differ() -> None:
    """Same seed with and without the planted region: the mean tissue colour moves by < 0.1 between-slide SD."""
    paired, negatives = [], []
    for seed in range(12):
        means = []
        for signal in (False, True):
            rgb, tissue, _ = render_he(np.random.default_rng(seed), 1536, 1024, 0.5, signal=signal)
            mask = np.kron(tissue, np.ones((16, 16), dtype=bool))[:1024, :1536]
            means.append(rgb[mask].astype(float).mean(0))
        paired.append(means[1] - means[0])
        negatives.append(means[0])
    shift, spread = np.abs(np.mean(paired, 0)), np.std(negatives, 0)
    assert (shift < 0.1 * spread).all(), (shift, spread)


def test_negative_slide_has_no_signal_but_natural_variation(tmp_path: Path) -> None:
    neg = make_slide(tmp_path / "neg.tif", seed=11, signal=False, **SMALL)
    assert not neg.has_signal
    assert not neg.in_signal(np.array([[0, 0], [512, 512]]), 512).any()
    with open_slide(neg.path) as s:
        tiles = [s.read_region_at(x, y, 128.0, 128) for x, y in plan_tiles(s, TilingSettings(tile_um=128.0))[:6]]
    assert all(not np.array_equal(tiles[0], t) for t in tiles[1:])


def test_stain_shift_changes_colour(tmp_path: Path) -> None:
    ref = make_slide(tmp_path / "ref.tif", seed=3, look=SlideLook(), **SMALL)
    shifted = make_slide(tmp_path / "shift.tif", seed=3, stain_shift=0.6, look=SlideLook(), **SMALL)
    with open_slide(ref.path) as a, open_slide(shifted.path) as b:
        ra, rb = a.read_at_mpp(4.0)[0], b.read_at_mpp(4.0)[0]
    tissue = ra.mean(axis=2) < 200
    diff = np.abs(ra[tissue].mean(0) - rb[tissue].mean(0))
    assert diff.max() > 10


def test_blank_slide_has_no_tissue(tmp_path: Path) -> None:
    blank = make_slide(tmp_path / "blank.tif", seed=1, tissue=False, **SMALL)
    with open_slide(blank.path) as s:
        rgb = s.read_at_mpp(8.0)[0]
    assert rgb.min() > 220 and not blank.tissue_mask.any()


def test_make_cohort(tmp_path: Path) -> None:
    cohort = make_cohort(tmp_path / "c", n_patients=4, seed=2, slides_per_patient=2, width=1024, height=768)
    with open(cohort.clini_table) as fh:
        clini = list(csv.DictReader(fh))
    with open(cohort.slide_table) as fh:
        slides = list(csv.DictReader(fh))
    assert [r["PATIENT"] for r in clini] == ["SYN-0001", "SYN-0002", "SYN-0003", "SYN-0004"]
    assert sorted(r["MSI"] for r in clini) == ["MSI", "MSI", "MSS", "MSS"]
    assert len(slides) == 8 and all((cohort.slides_dir / r["FILENAME"]).is_file() for r in slides)
    truth = load_ground_truth(cohort.ground_truth)
    assert set(truth) == {Path(r["FILENAME"]).stem for r in slides}
    for row in slides:
        has = truth[Path(row["FILENAME"]).stem].has_signal
        assert has == (cohort.labels[row["PATIENT"]] == "MSI")
    again = make_cohort(tmp_path / "d", n_patients=4, seed=2, slides_per_patient=2, width=1024, height=768)
    assert again.labels == cohort.labels


def test_make_cohort_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least two patients and exactly two classes"):
        make_cohort(tmp_path, n_patients=1, seed=0)
