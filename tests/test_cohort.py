"""Cohort building: table formats, file matching, drop accounting, and the errors a user can cause."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fakecohort import make_feature_cohort, set_attrs
from slidepredict.cohort import build_cohort
from slidepredict.core.errors import CohortError
from slidepredict.featurefile import FeatureSpec, write_h5_atomic


@pytest.fixture()
def small(tmp_path: Path) -> tuple[Path, Path, Path]:
    clini, slides, feats, _ = make_feature_cohort(tmp_path, n_patients=8, n_tiles=10, dim=8)
    return clini, slides, feats


def test_xlsx_nested_folders_and_several_slides(tmp_path: Path) -> None:
    clini, slides, feats, truth = make_feature_cohort(
        tmp_path, n_patients=6, n_tiles=10, dim=8, nested=True, xlsx=True, slides_per_patient=2
    )
    cohort = build_cohort(feats, slides, clini, target="TARGET")
    assert cohort.patients == sorted(truth.labels)
    assert cohort.categories == ["neg", "pos"]
    assert [cohort.categories[i] for i in cohort.labels] == [truth.labels[p] for p in cohort.patients]
    assert cohort.spec == FeatureSpec("fake-encoder", "fakehash0", 8, 256.0, 224, "none")
    p = cohort.patients[1]
    feats_all, coords_all = cohort.load_bag(p)
    assert feats_all.shape == (20, 8) and coords_all.shape == (20, 2) and feats_all.dtype == np.float32
    sample, sample_coords = cohort.load_bag(p, max_tiles=7, rng=np.random.default_rng(0))
    assert sample.shape == (7, 8)
    rows = [np.flatnonzero((feats_all == r).all(1))[0] for r in sample]  # drawn rows exist, no repeats
    assert len(set(rows)) == 7 and (coords_all[rows] == sample_coords).all()
    assert cohort.summary()["tiles"] == 120 and cohort.summary()["slides"] == 12


def test_filename_with_or_without_extension_and_dotted_names(tmp_path: Path) -> None:
    feats = tmp_path / "features"
    for stem in ("TCGA-AA-0001.5f5c3b3c-uuid", "slide-b", "slide-c"):
        write_h5_atomic(feats / f"{stem}.h5", {"features": np.ones((3, 4), np.float32), "coords": np.zeros((3, 2), np.int64)}, {})
    pd.DataFrame({"PATIENT": ["A", "B", "C"], "FILENAME": ["TCGA-AA-0001.5f5c3b3c-uuid", "slide-b.ome.tif", "sub/slide-c.svs"]}).to_csv(tmp_path / "s.csv", index=False)
    cohort = build_cohort(feats, tmp_path / "s.csv")
    assert cohort.patients == ["A", "B", "C"] and cohort.labels is None and cohort.drops.total == 0


def test_every_drop_is_reported_with_reason_and_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clini, slides, feats, truth = make_feature_cohort(tmp_path, n_patients=10, n_tiles=10, dim=8)
    patients = sorted(truth.labels)
    ct = pd.read_csv(clini, dtype=str)
    ct.loc[ct.PATIENT == patients[0], "TARGET"] = np.nan  # missing label
    ct.loc[ct.PATIENT == patients[1], "TARGET"] = "maybe"  # outside the categories
    ct = pd.concat([ct, pd.DataFrame({"PATIENT": ["NO-SLIDES"], "TARGET": ["pos"]}),
                    ct[ct.PATIENT == patients[2]]])  # identical duplicate: fine
    ct.to_csv(clini, index=False)
    st = pd.read_csv(slides, dtype=str)
    st = pd.concat([st, pd.DataFrame({"PATIENT": [patients[3]], "FILENAME": ["never-extracted.svs"]})])
    st.to_csv(slides, index=False)
    (feats / f"{truth.slides[patients[4]][0]}.h5").unlink()  # its only slide has no features
    with caplog.at_level(logging.WARNING):
        cohort = build_cohort(feats, slides, clini, target="TARGET", categories=["neg", "pos"])
    drops = {d.reason: d.count for d in cohort.drops.drops}
    assert drops == {
        "slides without a feature file": 2,
        "patients in the slide table with no feature file at all": 1,
        "patients in the clinical table but not in the slide table": 1,
        "patients without a value for 'TARGET'": 1,
        "patients whose 'TARGET' is not one of neg, pos": 1,
    }
    assert len(cohort) == 7 and patients[0] not in cohort.patients
    assert "dropped 2: slides without a feature file" in caplog.text
    assert cohort.summary()["dropped"][0] == {"reason": "slides without a feature file", "count": 2,
                                              "examples": ["PAT-00-0004-S0.svs", "never-extracted.svs"]}


def test_categories_are_sorted_or_taken_from_config(tmp_path: Path) -> None:
    clini, slides, feats, _ = make_feature_cohort(tmp_path, n_patients=9, n_tiles=5, dim=4, categories=("10", "9", "2"))
    assert build_cohort(feats, slides, clini, target="TARGET").categories == ["2", "9", "10"]
    cohort = build_cohort(feats, slides, clini, target="TARGET", categories=["9", "10"])
    assert cohort.categories == ["9", "10"] and len(cohort) == 6


def test_missing_target_column(small: tuple[Path, Path, Path]) -> None:
    clini, slides, feats = small
    with pytest.raises(CohortError) as e:
        build_cohort(feats, slides, clini, target="isMSIH")
    assert str(e.value) == (
        "target column 'isMSIH' not in clini.csv (columns: PATIENT, TARGET); check the spelling or set the column name option"
    )


def test_configurable_column_names(small: tuple[Path, Path, Path]) -> None:
    clini, slides, feats = small
    pd.read_csv(slides).rename(columns={"PATIENT": "case_id", "FILENAME": "slide"}).to_csv(slides, index=False)
    pd.read_csv(clini).rename(columns={"PATIENT": "case_id"}).to_csv(clini, index=False)
    with pytest.raises(CohortError, match="slide table column 'PATIENT' not in slides.csv"):
        build_cohort(feats, slides, clini, target="TARGET")
    cohort = build_cohort(feats, slides, clini, target="TARGET", patient_col="case_id", filename_col="slide")
    assert len(cohort) == 8


def test_conflicting_duplicate_patients(small: tuple[Path, Path, Path]) -> None:
    clini, slides, feats = small
    ct = pd.read_csv(clini, dtype=str)
    dup = ct.iloc[[2]].assign(TARGET="pos" if ct.TARGET.iloc[2] == "neg" else "neg")
    pd.concat([ct, dup]).to_csv(clini, index=False)
    with pytest.raises(CohortError) as e:
        build_cohort(feats, slides, clini, target="TARGET")
    assert str(e.value) == (
        "patient 'PAT-00-0002' has conflicting values for 'TARGET' in clini.csv: 'neg', 'pos' "
        "(1 patient affected); fix or remove the duplicate rows"
    )


def test_slide_listed_for_two_patients(small: tuple[Path, Path, Path]) -> None:
    clini, slides, feats = small
    st = pd.read_csv(slides, dtype=str)
    pd.concat([st, st.iloc[[0]].assign(PATIENT="OTHER")]).to_csv(slides, index=False)
    with pytest.raises(CohortError) as e:
        build_cohort(feats, slides, clini, target="TARGET")
    assert str(e.value) == (
        "slide 'PAT-00-0000-S0.svs' belongs to several patients (OTHER, PAT-00-0000) in slides.csv; a slide has one patient"
    )


def test_two_encoders_in_one_cohort(tmp_path: Path) -> None:
    clini, slides, feats, _ = make_feature_cohort(tmp_path / "a", n_patients=6, n_tiles=5, dim=8)
    _, _, other, _ = make_feature_cohort(tmp_path / "b", n_patients=6, n_tiles=5, dim=8, encoder="uni")
    shutil.copy(other / "PAT-00-0005-S0.h5", feats / "PAT-00-0005-S0.h5")
    with pytest.raises(CohortError) as e:
        build_cohort(feats, slides, clini, target="TARGET")
    assert str(e.value) == (
        f"feature files of two encoders in one cohort: 'fake-encoder' ({feats / 'PAT-00-0000-S0.h5'}) and "
        f"'uni' ({feats / 'PAT-00-0005-S0.h5'}); re-extract all slides with one encoder and tile size"
    )


def test_files_without_attributes_join_a_known_encoder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clini, slides, feats, _ = make_feature_cohort(tmp_path / "a", n_patients=6, n_tiles=5, dim=8)
    _, _, stamp, _ = make_feature_cohort(tmp_path / "b", n_patients=6, n_tiles=5, dim=8, encoder=None)
    shutil.copy(stamp / "PAT-00-0005-S0.h5", feats / "PAT-00-0005-S0.h5")
    with caplog.at_level(logging.WARNING):
        cohort = build_cohort(feats, slides, clini, target="TARGET")
    assert cohort.spec.encoder == "fake-encoder" and cohort.spec.stain_norm == "none"
    assert "1 of 6 feature files record no encoder; assuming they match 'fake-encoder'" in caplog.text


@pytest.mark.parametrize(
    ("attr", "value", "message"),
    [
        ("stain_norm", "macenko", "features in {a} use stain_norm='none' but {b} use 'macenko'; "
                                  "re-extract one of them with the same --stain-norm"),
        ("tile_size_px", 256, "features in {a} use tile_size_px=224 but {b} use 256; "
                              "re-extract one of them with the same --tile-px"),
    ],
)
def test_features_extracted_with_other_settings_in_one_cohort(small: tuple[Path, Path, Path], attr: str, value: object,
                                                              message: str) -> None:
    clini, slides, feats = small
    set_attrs([feats / "PAT-00-0005-S0.h5"], **{attr: value})
    with pytest.raises(CohortError) as e:
        build_cohort(feats, slides, clini, target="TARGET")
    assert str(e.value) == message.format(a=feats / "PAT-00-0000-S0.h5", b=feats / "PAT-00-0005-S0.h5")


def test_settings_a_file_does_not_record_are_not_compared(small: tuple[Path, Path, Path]) -> None:
    """Files of other tools record no stain normalisation or tile pixels; the cohort keeps what the others record."""
    clini, slides, feats = small
    set_attrs([feats / "PAT-00-0000-S0.h5"], stain_norm=None, tile_size_px=None, tile_size_um=None)
    set_attrs([feats / "PAT-00-0001-S0.h5"], stain_norm=None)
    cohort = build_cohort(feats, slides, clini, target="TARGET")
    assert len(cohort) == 8 and cohort.spec == FeatureSpec("fake-encoder", "fakehash0", 8, 256.0, 224, "none")
    assert cohort.slides["PAT-00-0000"][0].spec == FeatureSpec("fake-encoder", "fakehash0", 8)


def test_two_feature_files_for_one_slide(small: tuple[Path, Path, Path]) -> None:
    clini, slides, feats = small
    (feats / "again").mkdir()
    shutil.copy(feats / "PAT-00-0003-S0.h5", feats / "again" / "PAT-00-0003-S0.h5")
    with pytest.raises(CohortError, match=r"slide 'PAT-00-0003-S0.svs' matches 2 feature files"):
        build_cohort(feats, slides, clini, target="TARGET")


def test_nothing_usable_and_missing_paths(small: tuple[Path, Path, Path], tmp_path: Path) -> None:
    clini, slides, feats = small
    with pytest.raises(CohortError) as e:
        build_cohort(tmp_path / "nope", slides, clini, target="TARGET")
    assert str(e.value) == f"features folder not found: {tmp_path / 'nope'}"
    with pytest.raises(CohortError) as e:
        build_cohort(feats, slides, tmp_path / "clini.tsv.gz", target="TARGET")
    assert str(e.value) == f"table not found: {tmp_path / 'clini.tsv.gz'}"
    pd.DataFrame({"PATIENT": ["X"], "TARGET": ["pos"]}).to_csv(clini, index=False)
    with pytest.raises(CohortError, match=r"^no patient has both features and a label"):
        build_cohort(feats, slides, clini, target="TARGET")


def test_real_stamp_bags_without_tables(data_dir: Path) -> None:
    """One file has `feats` + `coords`, the other `features` + tile names; both are `<slide>/features.h5`."""
    cohort = build_cohort(data_dir / "features")
    assert cohort.patients == ["TCGA-3X-AAVA-01Z-00-DX1", "TCGA-AD-6964-01Z-00-DX1"]
    assert cohort.spec.dim == 512 and cohort.spec.encoder == "unknown"
    a, a_coords = cohort.load_bag("TCGA-3X-AAVA-01Z-00-DX1")
    b, b_coords = cohort.load_bag("TCGA-AD-6964-01Z-00-DX1", max_tiles=100, rng=np.random.default_rng(0))
    assert a.shape == (180, 512) and b.shape == (100, 512) and b_coords.shape == (100, 2)
    assert a_coords is None and np.isfinite(a).all()


def test_feature_files_without_tiles_are_dropped(small: tuple[Path, Path, Path]) -> None:
    clini, slides, feats = small
    write_h5_atomic(feats / "PAT-00-0001-S0.h5", {"features": np.zeros((0, 8), np.float32), "coords": np.zeros((0, 2), np.int64)},
                    {"encoder": "fake-encoder", "encoder_hash": "fakehash0"})
    cohort = build_cohort(feats, slides, clini, target="TARGET")
    assert {d.reason: d.count for d in cohort.drops.drops} == {
        "feature files with no tiles": 1, "patients whose slides have no tiles": 1}
    assert "PAT-00-0001" not in cohort.patients and len(cohort) == 7
