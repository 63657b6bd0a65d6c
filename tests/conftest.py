"""Shared fixtures: paths to the real test data (tests/data, see its README for licences)."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def cmu_slide() -> Path:
    """Aperio SVS, real H&E, MPP 0.499."""
    return DATA / "CMU-1-Small-Region.svs"


@pytest.fixture(scope="session")
def tcga_no_mpp_slide() -> Path:
    """Aperio SVS without MPP in its header."""
    return DATA / "tcga-cr-7395-01a-01-ts1.svs"


@pytest.fixture(scope="session")
def ndpi_slide() -> Path:
    """Hamamatsu NDPI (fluorescence) with spaces and parentheses in its name."""
    return DATA / "test3-DAPI-2-(387).ndpi"


@pytest.fixture(scope="session")
def ome_tiff_slide() -> Path:
    """OME-TIFF that OpenSlide cannot open."""
    return DATA / "OS-1-detail.ome.tif"
