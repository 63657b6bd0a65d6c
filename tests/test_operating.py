"""Cut-offs chosen on training out-of-fold predictions and carried unchanged to deployment (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fakecohort import make_feature_cohort
from slidepredict.cli import app
from slidepredict.stats import operating
from slidepredict.stats.metrics import youden_threshold

STEPS = ["--steps", "6", "--val-every", "3", "--min-steps", "0", "--bag-size", "16", "--restarts", "1"]


def _noise(rng: np.random.Generator, n: int) -> pd.DataFrame:
    y = rng.permutation(np.repeat(["neg", "pos"], n // 2))
    p = rng.random(n)
    return pd.DataFrame({"PATIENT": [f"P{i}" for i in range(n)], "T": y, "T_neg": 1 - p, "T_pos": p})


def test_on_noise_the_carried_cut_off_is_honest_and_the_in_sample_one_is_not() -> None:
    """n=40 pure noise: Youden chosen in sample averages sens+spec ~1.17; carried to fresh noise, ~1.0."""
    rng = np.random.default_rng(0)
    in_sample, carried = [], []
    for _ in range(300):
        train, test = _noise(rng, 40), _noise(rng, 40)
        point = operating.choose(train, "T", ["neg", "pos"], "noise")
        in_sample.append(sum(point.in_sample["pos"].values()))  # type: ignore[index]
        y = (test["T"] == "pos").to_numpy().astype(int)
        carried.append(sum(operating.at_threshold(y, test["T_pos"].to_numpy(), point.thresholds["pos"])))
    assert np.mean(in_sample) > 1.12
    assert np.mean(carried) == pytest.approx(1.0, abs=0.02)


def test_choose_is_youden_per_class() -> None:
    df = _noise(np.random.default_rng(1), 30)
    point = operating.choose(df, "T", ["neg", "pos"], "here")
    y = (df["T"] == "pos").to_numpy().astype(int)
    assert point.thresholds["pos"] == youden_threshold(y, df["T_pos"].to_numpy())
    assert point.thresholds["neg"] == youden_threshold(1 - y, df["T_neg"].to_numpy())
    assert point.rule == "youden" and point.n_patients == 30


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("op")
    clini, slides, feats, _ = make_feature_cohort(root / "train", n_patients=12, n_tiles=10, dim=8)
    ext_clini, ext_slides, ext_feats, _ = make_feature_cohort(root / "ext", n_patients=10, n_tiles=10, dim=8, seed=5)
    res = CliRunner().invoke(app, [str(a) for a in [
        "crossval", "--features", feats, "--clini", clini, "--slides-table", slides, "-t", "TARGET", "--folds", "2",
        "--out", root / "cv", *STEPS]])
    assert res.exit_code == 0, res.output
    return {"cv": root / "cv" / "TARGET", "clini": ext_clini, "slides": ext_slides, "feats": ext_feats, "root": root}


def test_crossval_stores_the_cut_offs_of_its_pooled_out_of_fold_predictions(trained: dict[str, Path]) -> None:
    stored = json.loads((trained["cv"] / "operating-point.json").read_text())
    pooled = pd.read_csv(trained["cv"] / "patient-preds.csv")
    y = (pooled["TARGET"] == "pos").to_numpy().astype(int)
    assert stored["thresholds"]["pos"] == youden_threshold(y, pooled["TARGET_pos"].to_numpy())
    assert stored["chosen_on"] == "the pooled out-of-fold predictions of 12 training patients (2-fold cross-validation)"


@pytest.fixture(scope="module")
def deployed(trained: dict[str, Path]) -> tuple[Path, str]:
    """The fold ensemble deployed on the external cohort: its folder and what the CLI printed."""
    out = trained["root"] / "deploy"
    res = CliRunner().invoke(app, [str(a) for a in [
        "deploy", "--model", trained["cv"], "--features", trained["feats"], "--clini", trained["clini"],
        "--slides-table", trained["slides"], "--out", out, "--n-bootstrap", "0"]])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_deploy_applies_them_unchanged(trained: dict[str, Path], deployed: tuple[Path, str]) -> None:
    out, output = deployed
    stored = json.loads((trained["cv"] / "operating-point.json").read_text())
    summary = json.loads((out / "deploy-summary.json").read_text())
    assert summary["operating_point"]["thresholds"] == stored["thresholds"]
    table = pd.read_csv(out / "stats" / "metrics.csv", dtype={"threshold": str})
    preds = pd.read_csv(out / "patient-preds.csv")
    for cls, cut in stored["thresholds"].items():
        rows = table[(table["class"] == cls) & (table["threshold"] == "carried") & (table["group"] == "pooled")]
        assert rows.loc[rows.metric == "threshold", "value"].iloc[0] == pytest.approx(cut)
        y, p = (preds["TARGET"] == cls).to_numpy(), preds[f"TARGET_{cls}"].to_numpy()
        assert rows.loc[rows.metric == "sensitivity", "value"].iloc[0] == pytest.approx((p[y] >= cut).mean())
        assert rows.loc[rows.metric == "specificity", "value"].iloc[0] == pytest.approx((p[~y] < cut).mean())
    assert "at the carried cut-off" in output


def test_models_with_different_operating_points_carry_none(trained: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "operating-point.json").write_text((trained["cv"] / "operating-point.json").read_text())
    (other / "model.ckpt").write_bytes(b"")
    assert operating.for_models([trained["cv"] / "fold-0" / "model.ckpt"], "TARGET") is not None
    assert operating.for_models([trained["cv"] / "fold-0" / "model.ckpt", other / "model.ckpt"], "TARGET") is None
    assert operating.for_models([trained["cv"] / "fold-0" / "model.ckpt"], "OTHER") is None


def test_the_report_shows_the_carried_figures(deployed: tuple[Path, str], tmp_path: Path) -> None:
    from slidepredict.report import build_report

    html = build_report(deployed[0], out=tmp_path / "report.html").read_text()
    assert "sens@carried" in html and "carried cut-off" in html and "youden-in-sample" in html


def test_a_target_sensitivity_sets_the_cut_off_that_reaches_it_calling_fewest() -> None:
    """0.75 needs the positive at 0.3; the cut sits halfway to the next lower score (0.2), not on 0.3."""
    df = pd.DataFrame({"T": ["pos"] * 4 + ["neg"] * 4, "T_pos": [0.9, 0.8, 0.3, 0.2, 0.7, 0.4, 0.1, 0.05]})
    df["T_neg"] = 1 - df["T_pos"]
    point = operating.choose(df, "T", ["neg", "pos"], "here", sensitivity=0.75)
    assert point.thresholds["pos"] == pytest.approx(0.25) and point.rule == "sensitivity>=0.75"
    assert point.in_sample["pos"] == {"sensitivity": 0.75, "specificity": 0.5}  # type: ignore[index]
    assert operating.choose(df, "T", ["neg", "pos"], "here", sensitivity=1.0).thresholds["pos"] == pytest.approx(0.15)


def test_the_final_model_gets_the_cross_validation_cut_off(tmp_path: Path) -> None:
    """It has no held-out predictions of its own; run copies the out-of-fold cut-off, saying so."""
    cv, final = tmp_path / "crossval" / "MSI", tmp_path / "train" / "MSI"
    cv.mkdir(parents=True)
    assert operating.carry_to_final(cv, final) is None  # nothing chosen, nothing carried
    point = operating.OperatingPoint("MSI", {"MSI": 0.31}, chosen_on="the pooled out-of-fold predictions of 40 patients")
    operating.write(cv, point)
    final.mkdir(parents=True)
    carried = operating.read(operating.carry_to_final(cv, final))
    assert carried.thresholds == {"MSI": 0.31}
    assert carried.chosen_on == ("the pooled out-of-fold predictions of 40 patients; carried to the final model "
                                 "trained on all of them")
    assert operating.for_models([final / "model.ckpt"], "MSI") == carried


def test_a_fixed_cutoff_is_carried_with_or_without_cross_validation(trained: dict[str, Path], tmp_path: Path) -> None:
    """`--cutoff 0.5`: the cut-off a cell classifier uses, recorded as set by the user, carried to deploy."""
    df = _noise(np.random.default_rng(2), 20)
    point = operating.choose(df, "T", ["neg", "pos"], "here", cutoff=0.5)
    assert point.thresholds == {"neg": 0.5, "pos": 0.5} and point.rule == "fixed 0.5"
    y, p = (df["T"] == "pos").to_numpy(), df["T_pos"].to_numpy()
    assert point.in_sample["pos"] == {"sensitivity": (p[y] >= 0.5).mean(), "specificity": (p[~y] < 0.5).mean()}  # type: ignore[index]
    root = trained["root"]
    clini, slides, feats, _ = make_feature_cohort(tmp_path / "c", n_patients=12, n_tiles=10, dim=8)
    res = CliRunner().invoke(app, [str(a) for a in ["train", "--features", feats, "--clini", clini, "--slides-table", slides,
                                                    "-t", "TARGET", "--cutoff", "0.5", "--out", tmp_path / "final", *STEPS]])
    assert res.exit_code == 0, res.output
    stored = json.loads((tmp_path / "final" / "TARGET" / "operating-point.json").read_text())
    assert stored["rule"] == "fixed 0.5" and set(stored["thresholds"].values()) == {0.5}
    assert stored["chosen_on"] == "set in the configuration (training.cutoff)"
    dep = CliRunner().invoke(app, [str(a) for a in [
        "deploy", "--model", tmp_path / "final" / "TARGET" / "model.ckpt", "--features", trained["feats"],
        "--clini", trained["clini"], "--slides-table", trained["slides"], "--out", tmp_path / "dep"]])
    assert dep.exit_code == 0, dep.output
    assert "at the carried cut-off 0.500" in " ".join(dep.output.split())
    both = CliRunner().invoke(app, [str(a) for a in ["crossval", "--features", feats, "--clini", clini, "--slides-table", slides,
                                                     "-t", "TARGET", "--cutoff", "0.5", "--target-sensitivity", "0.9",
                                                     "--out", tmp_path / "bad"]])
    assert both.exit_code == 2 and "give cutoff (--cutoff) or target_sensitivity (--target-sensitivity), not both" \
        in " ".join(both.output.split())
    assert not (tmp_path / "bad").exists() and root.is_dir()


def test_the_youden_cut_lies_mid_gap_so_both_classes_of_a_binary_target_agree() -> None:
    """Separated scores: the cut sits between them (not on the lowest positive), and p / 1 - p split alike.

    At the gap's edge the two classes' cut-offs of one binary target disagreed (0.909 vs 1 - 0.725) and
    a final model a little less confident than its fold models called no deployed positive.
    """
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.05, 0.2, 0.275, 0.909, 0.95, 0.99])
    cut = youden_threshold(y, p)
    assert cut == pytest.approx((0.275 + 0.909) / 2)
    assert youden_threshold(1 - y, 1 - p) == pytest.approx(1 - cut)
    assert operating.at_threshold(y, p, cut) == (1.0, 1.0)  # the in-sample figures are unchanged
    assert operating.at_threshold(np.array([1, 0]), np.array([0.8, 0.3]), cut) == (1.0, 1.0)  # a slightly lower positive is called
