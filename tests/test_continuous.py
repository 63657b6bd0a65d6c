"""Continuous targets (a score, TMB, a stromal fraction): cross-validation, statistics, deploy, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from slidepredict.cli import app
from slidepredict.featurefile import write_h5_atomic

runner = CliRunner()
DIM, TILES = 16, 48


def make_scored_cohort(root: Path, n: int, seed: int, shift: float = 0.0) -> tuple[Path, Path, Path, dict[str, float]]:
    """Feature bags whose target is the share of tiles carrying a planted pattern (its extent), plus noise."""
    rng = np.random.default_rng(seed)
    direction = np.random.default_rng(99).normal(size=DIM)
    direction /= np.linalg.norm(direction)
    side = int(np.ceil(np.sqrt(TILES)))
    coords = (np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:TILES] * 224).astype(np.int64)
    truth, rows = {}, []
    for i in range(n):
        patient = f"S{seed}-{i:03d}"
        extent = rng.uniform(0.0, 0.5)
        feats = rng.normal(size=(TILES, DIM)) + shift
        feats[: int(round(extent * TILES))] += 2.5 * direction
        attrs = {"encoder": "fake", "encoder_hash": "h", "tile_size_um": 256.0, "tile_size_px": 224,
                 "tile_size_level0": 224, "mpp": 0.5}
        write_h5_atomic(root / "features" / f"{patient}.h5", {"features": feats.astype(np.float32), "coords": coords}, attrs)
        truth[patient] = 10.0 * extent + rng.normal(0, 0.4)
        rows.append({"PATIENT": patient, "FILENAME": f"{patient}.svs"})
    pd.DataFrame({"PATIENT": list(truth), "SCORE": [f"{v:.4f}" for v in truth.values()]}).to_csv(root / "clini.csv", index=False)
    pd.DataFrame(rows).to_csv(root / "slides.csv", index=False)
    return root / "clini.csv", root / "slides.csv", root / "features", truth


FAST = ["--steps", "200", "--min-steps", "100", "--val-every", "25", "--restarts", "1", "--bag-size", "48",
        "--batch-size", "8"]


@pytest.fixture(scope="module")
def crossval(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cont")
    clini, slides, feats, _ = make_scored_cohort(root, 40, seed=1)
    res = runner.invoke(app, [str(a) for a in ["crossval", "--clini", clini, "--slides-table", slides, "--features", feats,
                                                 "-t", "SCORE", "--target-type", "continuous", "--folds", "3",
                                                 "--out", root / "cv", *FAST]])
    assert res.exit_code == 0, res.output
    return {"root": root, "cv": root / "cv" / "SCORE", "output": res.output}  # type: ignore[dict-item]


def test_crossval_learns_a_continuous_target(crossval: dict) -> None:
    preds = pd.read_csv(crossval["cv"] / "patient-preds.csv")
    assert list(preds.columns) == ["PATIENT", "SCORE", "pred", "fold"] and len(preds) == 40
    r = np.corrcoef(preds.SCORE, preds.pred)[0, 1]
    assert r >= 0.7, r
    assert "3-fold cross-validation of 40 patients, pooled Pearson r" in crossval["output"]
    assert "mean-pool + ridge regression, same folds: Pearson r" in crossval["output"]
    assert not (crossval["cv"] / "operating-point.json").exists()  # no cut-off for a number
    assert abs(preds.pred.mean() - preds.SCORE.mean()) < 1.0  # in the target's units, not standardised


def _bad(tmp_path: Path, clini: Path, slides: Path, feats: Path, *extra: str) -> str:
    out = tmp_path / "bad"
    res = runner.invoke(app, [str(a) for a in ["crossval", "--clini", clini, "--slides-table", slides, "--features",
                                                 feats, "-t", "SCORE", "--target-type", "continuous", "--out", out,
                                                 *FAST, *extra]])
    assert res.exit_code == 2, res.output
    assert not out.exists()
    return res.output.strip().splitlines()[-1]


def test_bad_continuous_targets(tmp_path: Path) -> None:
    clini, slides, feats, _ = make_scored_cohort(tmp_path, 12, seed=2)
    ct = pd.read_csv(clini, dtype=str)
    ct.loc[3, "SCORE"] = "high"
    ct.loc[5, "SCORE"] = "?"
    ct.to_csv(clini, index=False)
    assert _bad(tmp_path, clini, slides, feats) == (
        "Error: 'SCORE' in clini.csv is a continuous target but 2 patients have a value that is not a number, "
        "e.g. 'high' (patient 'S2-003'); write numbers, or leave the cell empty to drop the patient")
    ct["SCORE"] = "4.2"
    ct.to_csv(clini, index=False)
    assert _bad(tmp_path, clini, slides, feats) == (
        "Error: continuous target 'SCORE' does not vary (all 12 patients have 4.2); a regression needs different "
        "values for the inner validation split")


def test_statistics_of_a_continuous_target(crossval: dict, tmp_path: Path) -> None:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, r2_score

    res = runner.invoke(app, ["stats", str(crossval["cv"] / "patient-preds.csv"), "--out", str(tmp_path / "st"),
                              "--n-bootstrap", "200"])
    assert res.exit_code == 0, res.output
    metrics = pd.read_csv(tmp_path / "st" / "metrics.csv")
    preds = pd.read_csv(crossval["cv"] / "patient-preds.csv")
    pooled = metrics[metrics.group == "pooled"].set_index("metric")
    y, p = preds.SCORE.to_numpy(), preds.pred.to_numpy()
    expected = {"pearson_r": pearsonr(y, p)[0], "spearman_rho": spearmanr(y, p)[0], "r2": r2_score(y, p),
                "mae": mean_absolute_error(y, p)}
    for metric, value in expected.items():
        assert pooled.loc[metric, "value"] == pytest.approx(value, abs=1e-5)
        assert pooled.loc[metric, "ci_low"] <= pooled.loc[metric, "value"] <= pooled.loc[metric, "ci_high"]
    assert set(metrics.group) == {"pooled", "fold-0", "fold-1", "fold-2"}
    assert {p.name for p in (tmp_path / "st").iterdir()} == {"metrics.csv", "scatter-SCORE.png", "scatter-SCORE.svg"}
    assert "SCORE (value, pooled, n=40): Pearson r" in res.output


def test_deploy_averages_the_folds_values_and_scores_them(crossval: dict, tmp_path: Path) -> None:
    clini, slides, feats, truth = make_scored_cohort(tmp_path / "ext", 24, seed=3)
    res = runner.invoke(app, ["deploy", "--model", str(crossval["cv"]), "--features", str(feats), "--clini", str(clini),
                              "--slides-table", str(slides), "--out", str(tmp_path / "dep"), "--n-bootstrap", "100"])
    assert res.exit_code == 0, res.output
    ens = pd.read_csv(tmp_path / "dep" / "patient-preds.csv")
    members = [pd.read_csv(tmp_path / "dep" / f"fold-{k}" / "patient-preds.csv") for k in range(3)]
    assert list(ens.columns) == ["PATIENT", "SCORE", "pred", "model", "in_training"]
    assert np.allclose(ens.pred, np.mean([m.pred for m in members], axis=0))
    assert np.corrcoef(ens.SCORE, ens.pred)[0, 1] >= 0.6  # 24 new patients; cross-validation is held to 0.7
    assert "SCORE (value, n=24): Pearson r" in res.output


def test_report_shows_the_continuous_figures(crossval: dict, tmp_path: Path) -> None:
    from slidepredict.report import build_report

    res = runner.invoke(app, ["stats", str(crossval["cv"] / "patient-preds.csv"), "--out",
                              str(crossval["root"] / "stats"), "--n-bootstrap", "50"])
    assert res.exit_code == 0, res.output
    html = build_report(crossval["root"]).read_text()
    assert "Pearson r (95% CI)" in html and "MAE (95% CI)" in html and "scatter-SCORE" in html


def test_compare_two_models_of_a_continuous_target(crossval: dict, tmp_path: Path) -> None:
    """The head against its own mean-pool + ridge baseline on the same folds: paired bootstrap of the r difference."""
    head, base = crossval["cv"] / "patient-preds.csv", crossval["cv"] / "baseline-mean-pool" / "patient-preds.csv"
    res = runner.invoke(app, ["compare", str(head), str(base), "--out", str(tmp_path / "cmp"), "--n-bootstrap", "200"])
    assert res.exit_code == 0, res.output
    row = pd.read_csv(tmp_path / "cmp" / "comparison.csv").iloc[0]
    a = pd.read_csv(head).set_index("PATIENT")
    b = pd.read_csv(base).set_index("PATIENT").loc[a.index]
    assert row.metric == "pearson_r" and row.n == 40
    assert row.score_a == pytest.approx(np.corrcoef(a.SCORE, a.pred)[0, 1], abs=1e-5)
    assert row.difference == pytest.approx(row.score_a - np.corrcoef(b.SCORE, b.pred)[0, 1], abs=1e-5)
    assert row.bootstrap_ci_low <= row.difference <= row.bootstrap_ci_high and 0 <= row.bootstrap_p <= 1
    assert (tmp_path / "cmp" / "comparison-SCORE.png").is_file()
    mixed = tmp_path / "cat.csv"
    pd.DataFrame({"PATIENT": ["a", "b"], "T": ["x", "y"], "pred": ["x", "y"], "T_x": [0.6, 0.2], "T_y": [0.4, 0.8]}
                 ).to_csv(mixed, index=False)
    res = runner.invoke(app, ["compare", str(head), str(mixed), "--out", str(tmp_path / "mixed")])
    assert res.exit_code == 2 and not (tmp_path / "mixed").exists()
    assert " ".join(res.output.split()).endswith(
        f"Error: '{head}' holds a continuous target's predictions and '{mixed}' a categorical one's; compare models "
        "of one target.")
