"""Site-aware splits: a group (site) never on both sides of an outer fold or of the inner validation split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fakecohort import make_feature_cohort
from slidepredict.cli import app
from slidepredict.cohort.build import build_cohort
from slidepredict.cohort.groups import tcga_site, with_groups
from slidepredict.core.errors import CohortError
from slidepredict.training.splits import inner_split, make_splits

runner = CliRunner()
SITES = ["A1", "B2", "C3", "D4", "E5", "F6"]
FAST = ["--steps", "4", "--val-every", "2", "--min-steps", "0", "--bag-size", "8", "--batch-size", "4", "--restarts", "1",
        "--baseline", "none"]


@pytest.fixture
def sited(tmp_path: Path) -> tuple[Path, Path, Path]:
    """24 patients over 6 sites of 4 (each site with both classes), the site in the clinical table."""
    clini, slides, feats, _ = make_feature_cohort(tmp_path, n_patients=24, n_tiles=6, dim=8)
    ct = pd.read_csv(clini)
    ct["SITE"] = [SITES[i // 4] for i in range(len(ct))]
    ct.to_csv(clini, index=False)
    return clini, slides, feats


def _cli(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


def test_grouped_folds_keep_every_site_on_one_side(sited: tuple[Path, Path, Path], tmp_path: Path) -> None:
    clini, slides, feats = sited
    out = tmp_path / "cv"
    res = _cli("crossval", "--clini", clini, "--slides-table", slides, "--features", feats, "--target", "TARGET",
               "--out", out, "--folds", "3", "--group", "SITE", *FAST)
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "TARGET" / "splits.json").read_text())
    site_of = saved["groups"]
    assert saved["group"] == "SITE" and len(site_of) == 24
    tested = [{site_of[p] for p in s["test"]} for s in saved["splits"]]
    for k, split in enumerate(saved["splits"]):
        assert tested[k] == set(split["test_groups"])
        assert not tested[k] & {site_of[p] for p in split["train"]}  # no site on both sides
    assert sorted(s for t in tested for s in t) == SITES  # every site tested exactly once
    preds = pd.read_csv(out / "TARGET" / "patient-preds.csv")
    assert dict(zip(preds.PATIENT, preds.SITE)) == site_of
    # statistics broken down per site
    res = _cli("stats", out / "TARGET" / "patient-preds.csv", "--out", tmp_path / "st", "--by", "SITE", "--n-bootstrap", "20")
    assert res.exit_code == 0, res.output
    metrics = pd.read_csv(tmp_path / "st" / "metrics.csv")
    assert {f"SITE-{s}" for s in SITES} <= set(metrics.group)


def test_leave_one_site_out(sited: tuple[Path, Path, Path], tmp_path: Path) -> None:
    clini, slides, feats = sited
    out = tmp_path / "logo"
    res = _cli("crossval", "--clini", clini, "--slides-table", slides, "--features", feats, "--target", "TARGET",
               "--out", out, "--group", "SITE", "--leave-group-out", *FAST)
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "TARGET" / "splits.json").read_text())
    assert saved["folds"] == 6 and [s["test_groups"] for s in saved["splits"]] == [[s] for s in SITES]
    assert len(list((out / "TARGET").glob("fold-*/model.ckpt"))) == 6
    text = " ".join(res.output.split())
    assert "TARGET: leave-one-SITE-out (6 folds) cross-validation of 24 patients" in text and "5-fold" not in text
    point = json.loads((out / "TARGET" / "operating-point.json").read_text())
    assert point["chosen_on"].endswith("(leave-one-SITE-out (6 folds) cross-validation)")


def test_inner_validation_split_takes_whole_sites(sited: tuple[Path, Path, Path]) -> None:
    clini, slides, feats = sited
    cohort = with_groups(build_cohort(feats, slides, clini, target="TARGET"), "SITE", clini)
    for seed in range(5):
        train, val = inner_split(cohort, 0.2, seed)
        site = dict(zip(cohort.patients, cohort.groups))
        assert not {site[p] for p in train} & {site[p] for p in val}
        assert len(set(cohort.subset(val).labels)) == 2


def test_ungrouped_folds_unchanged(sited: tuple[Path, Path, Path]) -> None:
    clini, slides, feats = sited
    cohort = build_cohort(feats, slides, clini, target="TARGET")
    splits = make_splits(cohort, 3, 0)
    assert "test_groups" not in splits[0] and sum(len(s["test"]) for s in splits) == 24


def test_tcga_site_from_patient_ids(tmp_path: Path) -> None:
    assert tcga_site("TCGA-AA-3511") == "AA" and tcga_site("tcga-a6-2671-01Z") == "A6" and tcga_site("PAT-1") is None
    clini, slides, feats, _ = make_feature_cohort(tmp_path, n_patients=6, n_tiles=5, dim=8)
    cohort = build_cohort(feats, slides, clini, target="TARGET")
    with pytest.raises(CohortError) as e:
        with_groups(cohort, "tcga-site", clini)
    assert str(e.value) == ("--group tcga-site: no patient ID is a TCGA barcode (TCGA-XX-XXXX), e.g. 'PAT-00-0000'; "
                            "name a clinical-table column with the site instead")


def _bad(tmp_path: Path, sited: tuple[Path, Path, Path], *extra: object) -> str:
    clini, slides, feats = sited
    out = tmp_path / "bad"
    res = _cli("crossval", "--clini", clini, "--slides-table", slides, "--features", feats, "--target", "TARGET",
               "--out", out, *FAST, *extra)
    assert res.exit_code == 2, res.output
    assert not out.exists()  # nothing half-written
    return res.output.strip().splitlines()[-1]


def test_bad_group_inputs(sited: tuple[Path, Path, Path], tmp_path: Path) -> None:
    clini = sited[0]
    assert _bad(tmp_path, sited, "--group", "CENTRE") == (
        "Error: group column 'CENTRE' not in clini.csv (columns: PATIENT, TARGET, SITE); check the spelling or set "
        "the column name option")
    assert _bad(tmp_path, sited, "--group", "SITE", "--folds", "8") == (
        "Error: 8 folds grouped by 'SITE' need at least 8 groups; target 'TARGET' has 6; use --folds 6 or fewer, "
        "or --leave-group-out")
    assert _bad(tmp_path, sited, "--leave-group-out") == (
        "Error: leave-one-group-out needs a group column (--group SITE, or --group tcga-site)")
    ct = pd.read_csv(clini)
    ct["SITE"] = np.where(ct.TARGET == "pos", "POS-ONLY", ct.SITE)  # one site holds every positive patient
    ct.to_csv(clini, index=False)
    assert _bad(tmp_path, sited, "--group", "SITE") == (
        "Error: group 'POS-ONLY' of 'SITE' holds all 12 patients of class 'pos' (target 'TARGET'); the fold testing "
        "it would train without that class. Merge groups, or cross-validate without --group")
