"""Tissue detection and QC on real files nobody on the project made: pen ink, IHC, determinism (tests/data/qc)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from slidepredict.slide import open_slide
from slidepredict.tiling.grid import _plan, tile_slide
from slidepredict.tiling.settings import TilingSettings
from slidepredict.tiling.tissue import tissue_mask

QC = Path(__file__).parent / "data" / "qc"

# Where the ink really is: polygons drawn by hand (level-0 px) on each image, looking at it with a 10-50 px
# grid; they follow the visible ink and its faint rim. The MPPs are estimates (the files record none):
# adipocytes and nuclei in the TCGA regions, the ~1.5-2 mm core width of the biopsy, a ~15 mm section in the
# 174 px thumbnail (40 um/px, the largest plausible MPP).
INK = {
    "tcga-red-pen.png": (2.0, 64.0, [
        [(0, 90), (40, 40), (130, 60), (178, 110), (178, 260), (200, 290), (186, 330), (190, 400), (178, 448), (0, 448)],
        [(10, 0), (230, 0), (200, 30), (100, 40), (20, 30)]]),
    "tcga-green-pen.png": (2.0, 64.0, [
        [(323, 0), (483, 0), (470, 50), (450, 100), (427, 150), (417, 200), (403, 250), (350, 300), (330, 450),
         (315, 631), (155, 631), (145, 430), (180, 340), (205, 300), (233, 250), (250, 200), (283, 150), (300, 100),
         (307, 50)]]),
    "slide_with_ink.jpeg": (2.0, 128.0, [
        [(3652, 860), (3700, 832), (3716, 805), (3790, 750), (3830, 695), (3890, 715), (3930, 770), (3975, 830),
         (4010, 900), (4010, 955), (3650, 915)]]),
    "wsi-blue-pen.png": (40.0, 640.0, [
        [(144, 55), (174, 55), (174, 78), (144, 78)], [(148, 95), (174, 95), (174, 133), (148, 133)],
        [(155, 0), (174, 0), (174, 5), (155, 5)]]),
}


def _ink_truth(size: tuple[int, int], polygons: list) -> np.ndarray:
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        draw.polygon(poly, fill=1)
    return np.asarray(canvas).astype(bool)


@pytest.mark.parametrize("name", list(INK))
def test_kept_tiles_carry_no_ink(name: str) -> None:
    mpp, tile_um, polygons = INK[name]
    with open_slide(QC / name, mpp=mpp) as slide:
        plan = _plan(slide, TilingSettings(tile_um=tile_um, tile_px=64))
        truth = _ink_truth(slide.dimensions, polygons)
    size = plan.size_level0
    share = np.array([truth[y : y + size, x : x + size].mean() for x, y in plan.coords])
    assert len(share) > 10
    assert share.mean() < 0.02, f"{name}: {share.mean():.1%} of the kept tiles' pixels are ink"
    assert share.max() <= 0.10, f"{name}: a kept tile is {share.max():.0%} ink"
    assert len(plan.dropped["ink"]) > 0  # and the ink was seen, not merely missed by the grid
    # without the ink check the same grid keeps inked tiles: the check is what removes them
    loose = _plan_without_ink(name, mpp, tile_um)
    assert max(truth[y : y + size, x : x + size].mean() for x, y in loose) > 0.3


def _plan_without_ink(name: str, mpp: float, tile_um: float) -> np.ndarray:
    from dataclasses import replace

    import slidepredict.tiling.grid as grid

    with open_slide(QC / name, mpp=mpp) as slide:
        saved = grid.TISSUE
        grid.TISSUE = replace(saved, pen_filter=False)
        try:
            return grid._plan(slide, TilingSettings(tile_um=tile_um, tile_px=64, max_ink=1.0)).coords
        finally:
            grid.TISSUE = saved


def test_ki67_ihc_tissue_is_found() -> None:
    """OS-2: about 75% of the image is tissue (by eye on a 2 um/px copy: the glass is four channels and bays,
    about 22-25% of the area; the data's README says the same). At least 60% of it must be found."""
    with open_slide(QC / "OS-2-ndpi.ome.tif") as slide:
        tm = tissue_mask(slide)
        plan = _plan(slide, TilingSettings(tile_um=128.0, min_tissue=0.1))
    assert tm.modality == "ihc"
    assert 0.60 * 0.75 <= tm.tissue_fraction <= 0.95
    assert tm.ink is not None and not tm.ink.any()  # pale blue counterstain is not blue pen
    assert len(plan.coords) >= 10


def test_forcing_a_method_and_its_message(tmp_path: Path) -> None:
    with open_slide(QC / "OS-2-ndpi.ome.tif") as slide:
        forced = tissue_mask(slide, replace_method("he"))
        auto = tissue_mask(slide)
    assert forced.modality == "he" and auto.tissue_fraction > forced.tissue_fraction  # saturation misses pale IHC


def replace_method(method: str):  # noqa: ANN201
    from dataclasses import replace

    from slidepredict.tiling.grid import TISSUE

    return replace(TISSUE, modality=method)


REAL = [QC / n for n in ("OS-2-ndpi.ome.tif", "slide_with_ink.jpeg", "tcga-red-pen.png")]
MPP = {"OS-2-ndpi.ome.tif": None, "slide_with_ink.jpeg": 2.0, "tcga-red-pen.png": 2.0}


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_tiling_twice_gives_identical_coordinates(path: Path) -> None:
    """OS-2 is 2202 px: no power-of-two downsample divides it, so the last row/column of a read is partial."""
    plans = []
    for _ in range(2):
        with open_slide(path, mpp=MPP[path.name]) as slide:
            plans.append(_plan(slide, TilingSettings(tile_um=128.0, min_tissue=0.1)).coords)
    assert np.array_equal(plans[0], plans[1])


def test_tiling_in_two_processes_gives_identical_files(tmp_path: Path) -> None:
    code = ("import sys; from slidepredict.tiling.grid import tile_slide; from slidepredict.tiling.settings import "
            "TilingSettings; tile_slide(sys.argv[1], sys.argv[2], TilingSettings(tile_um=128.0, min_tissue=0.1))")
    coords = []
    for k in range(2):
        subprocess.run([sys.executable, "-c", code, str(QC / "OS-2-ndpi.ome.tif"), str(tmp_path / str(k))], check=True)
        import h5py

        with h5py.File(tmp_path / str(k) / "OS-2-ndpi.h5") as f:
            coords.append(f["coords"][()])
    assert len(coords[0]) > 0 and np.array_equal(coords[0], coords[1])


def test_low_resolution_reads_have_a_white_last_row_and_column() -> None:
    """At 2202 / 314.3 px per output pixel the read covers 314.3 columns of 315: the last is never written,
    and used to be whatever memory held."""
    with open_slide(QC / "OS-2-ndpi.ome.tif") as slide:
        w0, h0 = slide.dimensions
        rgb, _ = slide.read_at_mpp(slide.mpp * w0 / 314.3)
        again, _ = slide.read_at_mpp(slide.mpp * w0 / 314.3)
    assert rgb.shape[:2] == (315, 315) and np.array_equal(rgb, again)
    assert (rgb[:, -1] == 255).all() and (rgb[-1] == 255).all()
    assert (rgb[:-1, :-1] < 250).any(axis=-1).mean() > 0.5  # the rest is the slide


def test_qc_for_a_slide_with_dropped_tiles_and_for_a_failed_one(tmp_path: Path) -> None:
    out = tmp_path / "tiles"
    tile_slide(QC / "tcga-green-pen.png", out, TilingSettings(tile_um=64.0, tile_px=64), mpp=2.0)
    summary = json.loads((out / "qc" / "tcga-green-pen.json").read_text())
    assert summary["failure"] is None and summary["method"] == "he" and summary["dropped"]["ink"] > 50
    assert summary["kept"] > 200 and 0.5 < summary["tissue_mm2"] < 2.0
    with Image.open(out / "qc" / "tcga-green-pen.png") as im:
        qc = np.asarray(im.convert("RGB"))
    assert ((qc == (255, 0, 255)).all(-1)).sum() > 1000  # dropped-for-ink tiles outlined in magenta
    glass = np.full((600, 800, 3), 240, np.uint8)
    Image.fromarray(glass).save(tmp_path / "glass.png")
    from slidepredict.core.errors import NoTissueError

    with pytest.raises(NoTissueError):
        tile_slide(tmp_path / "glass.png", out, TilingSettings(tile_um=64.0, tile_px=64), mpp=2.0)
    failed = json.loads((out / "qc" / "glass.json").read_text())
    assert failed["failure"].startswith("glass.png: no tissue found") and failed["kept"] == 0
    assert (out / "qc" / "glass.png").is_file() and not (out / "glass.h5").exists()
    from slidepredict.report import build_report

    html = build_report(tmp_path).read_text()  # the report lists both, the failure with its reason
    assert "<td>tcga-green-pen.png</td><td>he</td>" in html and "glass.png: no tissue found" in html


def test_an_implausible_tissue_size_names_the_mpp(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A wrong MPP shows as tissue of an impossible size: too small for a slide, or wider than the glass."""
    with caplog.at_level("WARNING", logger="slidepredict"):
        with open_slide(QC / "tcga-red-pen.png", mpp=2.0) as slide:
            _plan(slide, TilingSettings(tile_um=64.0, tile_px=64))
    assert ("tcga-red-pen.png: the whole image spans 0.94 mm at MPP 2 (--mpp), implausible for a slide; check the "
            "resolution (--mpp, --mpp-override)") in caplog.text
    band = np.full((300, 2000, 3), 240, np.uint8)
    band[100:200, 50:1950] = (200, 110, 170)
    Image.fromarray(band).save(tmp_path / "wide.png")
    caplog.clear()
    with caplog.at_level("WARNING", logger="slidepredict"):
        with open_slide(tmp_path / "wide.png", mpp=45.0) as slide:  # 0.45 um/px mistyped as 45
            _plan(slide, TilingSettings(tile_um=2000.0, tile_px=64, min_sharpness=0))
    assert "wide.png: the tissue spans 86 mm at MPP 45 (--mpp), implausible for a slide" in caplog.text
