"""Slide reading on the real test slides, MPP resolution order, and unreadable inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from slidepredict.core.errors import MPPError, SlideError
from slidepredict.slide import MPPOverride, find_slides, open_slide, slide_stem


def test_cmu_svs_mpp_from_header(cmu_slide: Path) -> None:
    with open_slide(cmu_slide) as s:
        assert s.mpp == pytest.approx(0.499)
        assert s.mpp_source == "openslide.mpp-x/y"
        assert s.dimensions == (2220, 2967)
        tile = s.read_region_at(800, 1800, 112.0, 224)  # in the tissue strip
    assert tile.shape == (224, 224, 3) and tile.dtype == np.uint8
    assert tile.std() > 5  # real pixels, not a blank fill


def test_tcga_svs_without_mpp_needs_override(tcga_no_mpp_slide: Path) -> None:
    with pytest.raises(MPPError) as err:
        open_slide(tcga_no_mpp_slide)
    assert str(err.value) == (
        "tcga-cr-7395-01a-01-ts1.svs: resolution (microns per pixel) unknown; looked at openslide.mpp-x/y, "
        "TIFF resolution tags. Pass it with --mpp (e.g. --mpp 0.25 for 40x, 0.5 for 20x)."
    )
    with open_slide(tcga_no_mpp_slide, mpp=0.5) as s:
        assert (s.mpp, s.mpp_source) == (0.5, "--mpp")
        assert s.read_region_at(0, 0, 256.0, 224).shape == (224, 224, 3)


def test_invalid_mpp_override(cmu_slide: Path) -> None:
    with pytest.raises(MPPError, match=r"^CMU-1-Small-Region.svs: --mpp must be a positive number, got -1.0$"):
        open_slide(cmu_slide, mpp=MPPOverride(-1.0))


def test_mpp_fills_files_without_one_and_override_replaces_with_a_warning(
        cmu_slide: Path, caplog: pytest.LogCaptureFixture) -> None:
    with open_slide(cmu_slide, mpp=0.25) as s:  # the file says 0.499: --mpp does not apply
        assert (s.mpp, s.mpp_source) == (pytest.approx(0.499), "openslide.mpp-x/y")
    with caplog.at_level("WARNING", logger="slidepredict"):
        with open_slide(cmu_slide, mpp=MPPOverride(0.25)) as s:
            assert (s.mpp, s.mpp_source) == (0.25, "--mpp-override")
    assert "CMU-1-Small-Region.svs: --mpp-override 0.25 replaces the file's own MPP 0.499 (openslide.mpp-x/y)" in caplog.text


def test_ndpi_with_spaces_and_parentheses(ndpi_slide: Path, tmp_path: Path) -> None:
    spaced = tmp_path / "my slides (batch 2)" / ndpi_slide.name.replace("-", " ")
    spaced.parent.mkdir()
    shutil.copy(ndpi_slide, spaced)
    with open_slide(spaced) as s:
        assert s.mpp == pytest.approx(0.228, abs=1e-3)
        assert len(s.level_dimensions) == 7
        assert s.name == "test3 DAPI 2 (387)"
        # 256 um at 0.228 um/px is ~1122 level-0 px; the reader picks a coarser level, same field of view
        assert s.best_level(256.0 / s.mpp / 224) == 2
        assert s.read_region_at(0, 0, 256.0, 224).shape == (224, 224, 3)


def test_ome_tiff_through_tifffile(ome_tiff_slide: Path) -> None:
    with open_slide(ome_tiff_slide) as s:
        assert type(s.backend).__name__ == "TiffBackend"
        assert s.mpp == pytest.approx(0.227, abs=1e-3)
        assert s.dimensions == (1101, 1101)
        rgb = s.read_region_at(0, 0, 100.0, 64)
    assert rgb.shape == (64, 64, 3) and rgb.std() > 5
    assert slide_stem(ome_tiff_slide) == "OS-1-detail"


def test_read_region_past_the_edge_is_white(cmu_slide: Path) -> None:
    with open_slide(cmu_slide) as s:
        w, h = s.dimensions
        rgb = s.read_region_at(w - 10, h - 10, 50.0, 32)
    assert (rgb[-8:, -8:] == 255).all()


def test_read_at_mpp_scale(cmu_slide: Path) -> None:
    with open_slide(cmu_slide) as s:
        rgb, scale = s.read_at_mpp(8.0)
    assert scale * 0.499 == pytest.approx(8.0, rel=0.02)
    assert rgb.shape[:2] == (int(np.ceil(2967 / scale)), int(np.ceil(2220 / scale)))


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.svs"
    empty.touch()
    with pytest.raises(SlideError, match=r"^cannot open slide .*empty\.svs: the file is empty \(0 bytes\)$"):
        open_slide(empty)


def test_non_slide_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.svs"
    text.write_text("not a slide\n")
    with pytest.raises(SlideError) as err:
        open_slide(text)
    assert str(err.value) == (
        f"cannot open slide {text}: not a supported slide, or a truncated or corrupt file "
        "(no reader recognises this format)"
    )


def test_truncated_slide(cmu_slide: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.svs"
    data = cmu_slide.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(SlideError, match=r"^cannot open slide .*cut\.svs: not a supported slide, or a truncated"):
        open_slide(cut)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SlideError, match=r"nope\.svs: no such file$"):
        open_slide(tmp_path / "nope.svs")
    with pytest.raises(SlideError, match=r"is a directory, not a slide$"):
        open_slide(tmp_path)


def test_find_slides(data_dir: Path, tmp_path: Path) -> None:
    slides = find_slides([data_dir])
    names = {p.name for p in slides}
    assert {"CMU-1-Small-Region.svs", "OS-1-detail.ome.tif", "test3-DAPI-2-(387).ndpi"} <= names
    assert "README.md" not in names
    assert find_slides([tmp_path]) == []
    with pytest.raises(SlideError) as err:
        find_slides([tmp_path], required=True)
    assert str(err.value).startswith(f"no slides found in {tmp_path} (looked for .svs .tif")


def test_dicom_files_openslide_cannot_read_say_so(tmp_path: Path) -> None:
    """A DICOM Part 10 file that is no WSI series gets a DICOM message, not 'truncated or corrupt'."""
    import openslide

    path = tmp_path / "scan" / "1.2.826.0.1.3680043.dcm"
    path.parent.mkdir()
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x04\x001.2\0" * 4)
    with pytest.raises(SlideError) as err:
        open_slide(path)
    assert str(err.value).startswith(
        f"cannot open slide {path}: a DICOM file that OpenSlide {openslide.__library_version__} does not read as a "
        "whole-slide image (")
    assert "need converting" in str(err.value) and "corrupt" not in str(err.value)


def test_a_dicom_series_is_one_slide_named_by_its_folder(tmp_path: Path) -> None:
    (tmp_path / "case-7").mkdir()
    for level in range(3):  # one instance per pyramid level, named by UIDs
        (tmp_path / "case-7" / f"1.2.3.{level}.dcm").write_bytes(b"x")
    (tmp_path / "other.svs").write_bytes(b"x")
    found = find_slides([tmp_path])
    assert [p.name for p in found] == ["1.2.3.0.dcm", "other.svs"]
    assert slide_stem(found[0]) == "case-7"
