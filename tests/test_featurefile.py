"""The feature-file contract itself: one reader for every layout, its errors, and what FeatureSpec compares."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from slidepredict.core.errors import FeatureFileError
from slidepredict.featurefile import (
    FeatureSpec,
    probe_feature_file,
    read_bag_rows,
    read_features,
    slide_h5_path,
    write_h5_atomic,
)

SPEC = FeatureSpec("uni", "abc", 8, 256.0, 224, "none")


def _raw(path: Path, **datasets: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        for name, data in datasets.items():
            f[name] = data
    return path


@pytest.mark.parametrize("key", ["features", "feats"])
def test_every_layout_reads_the_same_rows(tmp_path: Path, key: str) -> None:
    feats = np.arange(40, dtype=np.float32).reshape(1, 5, 8)  # CLAM/TRIDENT's (1, N, D)
    coords = np.arange(10).reshape(5, 2) * 100
    path = _raw(tmp_path / "a.h5", **{key: feats, "coords": coords})
    rows = np.array([1, 3])
    got, got_coords = read_bag_rows(path, rows)
    np.testing.assert_array_equal(got, feats[0, rows])
    np.testing.assert_array_equal(got_coords, coords[rows])
    assert probe_feature_file(path).n_tiles == 5 and probe_feature_file(path).spec == FeatureSpec("unknown", "unknown", 8)
    assert read_features(path).layout == ("clam" if key == "features" else "stamp")


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    cases = {
        _raw(tmp_path / "coords.h5", coords=np.zeros((3, 2))):
            "no 'features' or 'feats' dataset (found: coords); is this a coordinates-only file from `slidepredict tile`?",
        _raw(tmp_path / "cube.h5", features=np.zeros((2, 3, 4))): "'features' has shape (2, 3, 4); expected (N, D)",
        _raw(tmp_path / "short.h5", feats=np.zeros((3, 4)), coords=np.zeros((2, 2))): "3 feature rows but 2 coordinates",
    }
    (tmp_path / "text.h5").write_text("not hdf5")
    cases[tmp_path / "text.h5"] = "not a readable HDF5 feature file (OSError)"
    for path, message in cases.items():
        with pytest.raises(FeatureFileError) as err:
            read_features(path)
        assert str(err.value) == f"{path}: {message}"
    with pytest.raises(FeatureFileError) as err:
        probe_feature_file(tmp_path / "missing.h5")
    assert str(err.value) == f"feature file not found: {tmp_path / 'missing.h5'}"


def test_spec_from_our_attributes(tmp_path: Path) -> None:
    attrs = {"encoder": "uni", "encoder_hash": "abc", "tile_size_um": 256.0, "tile_size_px": 224, "stain_norm": "none"}
    path = write_h5_atomic(slide_h5_path(tmp_path, "slides/a.ome.tif"), {"features": np.zeros((2, 8), np.float32)}, attrs)
    assert path == tmp_path / "a.h5"
    assert FeatureSpec.from_file(path) == SPEC and read_features(path).spec == SPEC


def test_unknown_settings_match_anything_known_ones_must_agree() -> None:
    unknown = FeatureSpec("unknown", "unknown", 8)
    assert SPEC.conflict(unknown) is None and unknown.conflict(SPEC) is None
    assert SPEC.conflict(FeatureSpec("uni", "abc", 8, 256.0 + 1e-9, 224, "none")) is None
    for name, value in [("encoder_hash", "xyz"), ("dim", 16), ("tile_size_um", 128.0), ("tile_size_px", 112),
                        ("stain_norm", "macenko")]:
        assert SPEC.conflict(FeatureSpec(**{**SPEC.to_dict(), name: value})) == name
    assert unknown.describe() == "'unknown' (hash unknown, 8 dims, unknown um / unknown px tiles, stain_norm unknown)"


def test_checkpoint_specs_of_older_and_newer_versions_load() -> None:
    older = {"encoder": "uni", "encoder_hash": "abc", "dim": 8, "tile_size_um": 256.0}
    assert FeatureSpec.from_dict(older) == FeatureSpec("uni", "abc", 8, 256.0)
    assert FeatureSpec.from_dict({**SPEC.to_dict(), "added_later": 1}) == SPEC
