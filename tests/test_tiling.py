"""Tiling: h5 contract, skip/lock behaviour, tile checks, the CLI, and every bad input a user can give."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from slidepredict.core import batch
from slidepredict.cli import app
from slidepredict.core.errors import NoTissueError, SlidePredictError
from slidepredict.slide import open_slide
from slidepredict.demo.synthetic import make_slide, render_he, write_pyramid
from slidepredict.featurefile import LOCK_SUFFIX, load_coords, slide_h5_path
from slidepredict.tiling import TilingSettings, plan_tiles, tile_many, tile_slide

runner = CliRunner()


def _only(folder: Path) -> set[str]:
    """Every file left in a folder (recursively), to prove nothing partial remains."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def test_cmu_tiles_and_h5_contract(cmu_slide: Path, tmp_path: Path) -> None:
    assert tile_slide(cmu_slide, tmp_path) == batch.DONE
    coords, attrs = load_coords(tmp_path / "CMU-1-Small-Region.h5")
    assert coords.dtype == np.int64 and coords.ndim == 2 and len(coords) > 3
    size0 = round(256 / 0.499)
    assert attrs["tile_size_level0"] == size0 and attrs["tile_size_um"] == 256.0 and attrs["tile_size_px"] == 224
    assert attrs["mpp"] == pytest.approx(0.499)
    assert (attrs["slide_width"], attrs["slide_height"]) == (2220, 2967)
    assert "slidepredict_version" in attrs and "stain_norm" not in attrs
    assert (coords % size0 == 0).all() and (coords[:, 0] < 2220).all() and (coords[:, 1] < 2967).all()
    with h5py.File(tmp_path / "CMU-1-Small-Region.h5") as f:  # what CLAM/TRIDENT read
        assert f["coords"].attrs["patch_size"] == size0 and f["coords"].attrs["patch_level"] == 0
    assert _only(tmp_path) == {"CMU-1-Small-Region.h5", "qc/CMU-1-Small-Region.png", "qc/CMU-1-Small-Region.json"}
    with open_slide(cmu_slide) as s:  # kept tiles really are tissue
        tiles = np.stack([s.read_region_at(x, y, 256.0, 64) for x, y in coords])
    assert (tiles.mean(axis=(1, 2, 3)) < 225).all()


def test_rerun_skips_and_changed_settings_redo(cmu_slide: Path, tmp_path: Path) -> None:
    assert tile_slide(cmu_slide, tmp_path, TilingSettings(qc=False)) == batch.DONE
    mtime = slide_h5_path(tmp_path, cmu_slide).stat().st_mtime_ns
    assert tile_slide(cmu_slide, tmp_path, TilingSettings(qc=False)) == batch.SKIPPED
    assert slide_h5_path(tmp_path, cmu_slide).stat().st_mtime_ns == mtime
    assert tile_slide(cmu_slide, tmp_path, TilingSettings(tile_um=128.0, qc=False)) == batch.DONE
    coords, attrs = load_coords(slide_h5_path(tmp_path, cmu_slide))
    assert attrs["tile_size_um"] == 128.0 and len(coords) > 0


def test_locked_slide_is_busy(cmu_slide: Path, tmp_path: Path) -> None:
    lock = Path(f"{slide_h5_path(tmp_path, cmu_slide)}{LOCK_SUFFIX}")
    lock.write_text(f"{os.uname().nodename} {os.getppid()}")  # a live process on this host holds it
    assert tile_slide(cmu_slide, tmp_path) == batch.BUSY
    assert _only(tmp_path) == {lock.name}


def test_tcga_with_mpp_override(tcga_no_mpp_slide: Path, tmp_path: Path) -> None:
    assert tile_slide(tcga_no_mpp_slide, tmp_path, mpp=0.5) == batch.DONE
    coords, attrs = load_coords(slide_h5_path(tmp_path, tcga_no_mpp_slide))
    assert attrs["mpp"] == 0.5 and attrs["tile_size_level0"] == 512 and len(coords) >= 20


def test_ndpi_and_ome_tiff(ndpi_slide: Path, ome_tiff_slide: Path, tmp_path: Path) -> None:
    assert tile_slide(ndpi_slide, tmp_path) == batch.DONE
    assert (tmp_path / "test3-DAPI-2-(387).h5").is_file() and (tmp_path / "qc" / "test3-DAPI-2-(387).png").is_file()
    assert len(load_coords(tmp_path / "test3-DAPI-2-(387).h5")[0]) >= 4
    # 1101 px at 0.227 um/px is 250 um: one 256 um tile overhanging the edge by 6 um
    assert tile_slide(ome_tiff_slide, tmp_path) == batch.DONE
    coords, _ = load_coords(tmp_path / "OS-1-detail.h5")
    assert coords.tolist() == [[0, 0]]


def test_synthetic_tiles_follow_the_mask(tmp_path: Path) -> None:
    syn = make_slide(tmp_path / "s.tif", seed=2, width=2048, height=1536, signal=True)
    with open_slide(syn.path) as s:
        coords = plan_tiles(s, TilingSettings(tile_um=128.0))
    from slidepredict.tiling import tile_means

    truth = tile_means(syn.tissue_mask, syn.signal_scale, coords, 256, full_area=True)
    assert (truth > 0.3).all()
    assert syn.in_signal(coords, 256).any()


def test_blurred_tiles_are_dropped(tmp_path: Path) -> None:
    rgb, tissue, _ = render_he(np.random.default_rng(0), 4096, 3072, 0.5)
    rgb[:, 2048:] = ndimage.gaussian_filter(rgb[:, 2048:], (16, 16, 0))  # right half out of focus (8 um)
    path = write_pyramid(tmp_path / "blur.tif", rgb, 0.5)
    with open_slide(path) as s:
        kept = plan_tiles(s, TilingSettings())
        unfiltered = plan_tiles(s, TilingSettings(min_sharpness=0.0))
    assert (kept[:, 0] < 2048).all() and (kept[:, 0] < 2048).sum() == (unfiltered[:, 0] < 2048).sum()
    assert (unfiltered[:, 0] >= 2048).sum() >= 5


def test_tile_fraction_threshold(cmu_slide: Path) -> None:
    with open_slide(cmu_slide) as s:
        loose = plan_tiles(s, TilingSettings(min_tissue=0.1))
        strict = plan_tiles(s, TilingSettings(min_tissue=0.9))
    assert len(loose) > len(strict)
    assert {tuple(c) for c in strict} <= {tuple(c) for c in loose}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tile-um", "0"], "'--tile-um': Input should be greater than 0 (got 0.0)"),
        (["--tile-px", "0"], "'--tile-px': Input should be greater than 0 (got 0)"),
        (["--min-tissue", "1.5"], "'--min-tissue': Input should be less than or equal to 1 (got 1.5)"),
    ],
)
def test_invalid_parameters(cmu_slide: Path, tmp_path: Path, flags: list[str], message: str) -> None:
    """Bounds live on the settings model; the flag that broke one is named, and nothing is written."""
    from typer.testing import CliRunner

    from slidepredict.cli import app

    res = CliRunner().invoke(app, ["tile", str(cmu_slide), "--out", str(tmp_path / "out"), *flags])
    assert res.exit_code == 2
    assert res.output.strip() == f"Error: {message}"
    assert not (tmp_path / "out").exists()


# ---- bad inputs: each gives one clear line and leaves no partial output ----


def test_slide_with_no_tissue(tmp_path: Path) -> None:
    blank = make_slide(tmp_path / "in" / "blank.tif", seed=0, tissue=False, width=1024, height=768)
    out = tmp_path / "out"
    with pytest.raises(NoTissueError) as err:
        tile_slide(blank.path, out)
    assert str(err.value) == (
        "blank.tif: no tissue found (the slide looks like empty glass at MPP 0.5); check the file and its "
        "resolution, or force a detection method with --tissue-method (he, ihc, fluorescence)"
    )
    assert _only(out) == {"qc/blank.png", "qc/blank.json"}  # no tiling file, but a QC image saying why
    summary = json.loads((out / "qc" / "blank.json").read_text())
    assert summary["failure"] == str(err.value) and summary["kept"] == 0


def test_image_smaller_than_a_tile(data_dir: Path, tmp_path: Path) -> None:
    tile_png = data_dir / "tiles" / "crc-val-he-7k" / "TUM-TCGA-DRHQMTQA.png"
    with pytest.raises(NoTissueError) as err:
        tile_slide(tile_png, tmp_path, mpp=0.5)
    assert str(err.value) == (
        "TUM-TCGA-DRHQMTQA.png: the image (112 x 112 um) is smaller than one 256 um tile; lower --tile-um"
    )
    assert tile_slide(tile_png, tmp_path, TilingSettings(tile_um=64.0), mpp=0.5) == batch.DONE


def _bad_inputs(folder: Path, cmu_slide: Path) -> dict[str, str]:
    """Each bad file and the start of its one-line reason."""
    folder.mkdir()
    (folder / "notes.svs").write_text("just text\n")
    (folder / "empty.ndpi").touch()
    data = cmu_slide.read_bytes()
    (folder / "cut.svs").write_bytes(data[: int(len(data) * 0.6)])
    make_slide(folder / "glass.tif", seed=0, tissue=False, width=1024, height=768)
    return {
        "notes.svs": f"cannot open slide {folder / 'notes.svs'}: not a supported slide, or a truncated or corrupt file",
        "empty.ndpi": f"cannot open slide {folder / 'empty.ndpi'}: the file is empty (0 bytes)",
        "cut.svs": f"cannot open slide {folder / 'cut.svs'}: not a supported slide, or a truncated or corrupt file",
        "glass.tif": "glass.tif: no tissue found (the slide looks like empty glass at MPP 0.5)",
    }


def test_batch_goes_on_after_failures(cmu_slide: Path, tmp_path: Path) -> None:
    bad = _bad_inputs(tmp_path / "in", cmu_slide)
    shutil.copy(cmu_slide, tmp_path / "in" / "good.svs")
    out = tmp_path / "out"
    slides = sorted((tmp_path / "in").iterdir())
    result = tile_many(slides, out, TilingSettings())
    assert [p.name for p in result.done] == ["good.svs"]
    reasons = {p.name: r for p, r in result.failed}
    assert set(reasons) == set(bad)
    for name, start in bad.items():
        assert reasons[name].startswith(start)
    qc = {f"qc/{Path(n).stem}.{ext}" for n in [*bad, "good.svs"] for ext in ("png", "json")}
    assert _only(out) == {"good.h5"} | qc  # every slide has a QC image, failed ones with the reason
    assert result.exit_code == 1


def test_cli_tile(cmu_slide: Path, tmp_path: Path) -> None:
    bad = _bad_inputs(tmp_path / "in", cmu_slide)
    shutil.copy(cmu_slide, tmp_path / "in" / "good.svs")
    out = tmp_path / "out"
    res = runner.invoke(app, ["tile", str(tmp_path / "in"), "--out", str(out), "--tile-um", "128"])
    assert res.exit_code == 1
    for name, start in bad.items():
        assert f"FAILED {tmp_path / 'in' / name}: {start}" in res.output
    assert res.output.rstrip().endswith(f"Tiling into {out}: 1 done, 0 already complete, 4 failed")
    assert {p for p in _only(out) if not p.startswith("qc/")} == {"good.h5"}
    assert load_coords(out / "good.h5")[1]["tile_size_um"] == 128.0
    again = runner.invoke(app, ["tile", str(tmp_path / "in" / "good.svs"), "--out", str(out), "--tile-um", "128"])
    assert again.exit_code == 0 and "0 done, 1 already complete, 0 failed" in again.output


def test_cli_tcga_needs_mpp(tcga_no_mpp_slide: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["tile", str(tcga_no_mpp_slide), "--out", str(tmp_path), "--no-qc"])
    assert res.exit_code == 1 and "Pass it with --mpp" in res.output
    assert _only(tmp_path) == set()
    res = runner.invoke(app, ["tile", str(tcga_no_mpp_slide), "--out", str(tmp_path), "--no-qc", "--mpp", "0.5"])
    assert res.exit_code == 0
    assert _only(tmp_path) == {"tcga-cr-7395-01a-01-ts1.h5"}


def test_cli_directory_without_slides(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "readme.txt").write_text("no slides here")
    res = runner.invoke(app, ["tile", str(tmp_path / "in"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert f"Error: no slides found in {tmp_path / 'in'} (looked for .svs .tif" in res.output
    assert not (tmp_path / "out").exists()


def test_output_under_a_file_is_unwritable(cmu_slide: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    res = runner.invoke(app, ["tile", str(cmu_slide), "--out", str(tmp_path / "afile" / "out")])
    assert res.exit_code == 2
    assert f"Error: cannot create output folder {tmp_path / 'afile' / 'out'}: Not a directory" in res.output


def test_read_only_output_dir(cmu_slide: Path, tmp_path: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("running as root: permission bits do not stop writes (the 'under a file' test covers this)")
        res = runner.invoke(app, ["tile", str(cmu_slide), "--out", str(out)])
        assert res.exit_code == 2
        assert f"Error: output folder {out} is not writable" in res.output
        assert _only(out) == set()
    finally:
        out.chmod(0o700)


def test_load_coords_errors(tmp_path: Path) -> None:
    from slidepredict.core.errors import FeatureFileError

    with pytest.raises(FeatureFileError) as err:
        load_coords(tmp_path / "missing.h5")
    assert str(err.value) == f"{tmp_path / 'missing.h5'}: missing or incomplete tiling file; run `slidepredict tile` again"


def test_cli_mpp_override(cmu_slide: Path, tmp_path: Path) -> None:
    """--mpp fills files without an MPP only; --mpp-override replaces the file's own, and needs --mpp."""
    out = tmp_path / "out"
    res = runner.invoke(app, ["tile", str(cmu_slide), "--out", str(out), "--no-qc", "--mpp-override"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1] == (
        "Error: --mpp-override needs --mpp VALUE (the resolution to use for every slide)")
    assert not out.exists()
    for flags, mpp in ((["--mpp", "0.25"], 0.499), (["--mpp", "0.25", "--mpp-override"], 0.25)):
        res = runner.invoke(app, ["tile", str(cmu_slide), "--out", str(out / flags[-1]), "--no-qc", *flags])
        assert res.exit_code == 0, res.output
        with h5py.File(out / flags[-1] / "CMU-1-Small-Region.h5") as f:
            assert f.attrs["mpp"] == pytest.approx(mpp)
