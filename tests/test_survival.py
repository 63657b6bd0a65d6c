"""Survival targets: Cox training, C-index, carried risk groups, log-rank, bad input (features-only, fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from slidepredict.cli import app
from slidepredict.featurefile import write_h5_atomic

runner = CliRunner()
DIM, TILES = 16, 48


def make_survival_cohort(root: Path, n: int, seed: int) -> tuple[Path, Path, Path]:
    """The hazard rises with the share of tiles carrying a planted pattern; uniform censoring (~30%)."""
    rng = np.random.default_rng(seed)
    direction = np.random.default_rng(99).normal(size=DIM)
    direction /= np.linalg.norm(direction)
    side = int(np.ceil(np.sqrt(TILES)))
    coords = (np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:TILES] * 224).astype(np.int64)
    rows, slides = [], []
    for i in range(n):
        patient = f"V{seed}-{i:03d}"
        extent = rng.uniform(0.0, 0.5)
        feats = rng.normal(size=(TILES, DIM))
        feats[: int(round(extent * TILES))] += 2.5 * direction
        attrs = {"encoder": "fake", "encoder_hash": "h", "tile_size_um": 256.0, "tile_size_px": 224,
                 "tile_size_level0": 224, "mpp": 0.5}
        write_h5_atomic(root / "features" / f"{patient}.h5", {"features": feats.astype(np.float32), "coords": coords}, attrs)
        time = rng.exponential(60.0 * np.exp(-12.0 * (extent - 0.25)))  # the true order gives C ~0.84
        censor = rng.uniform(20.0, 200.0)
        rows.append({"PATIENT": patient, "OS_MONTHS": round(min(time, censor), 2), "OS_EVENT": int(time <= censor)})
        slides.append({"PATIENT": patient, "FILENAME": f"{patient}.svs"})
    pd.DataFrame(rows).to_csv(root / "clini.csv", index=False)
    pd.DataFrame(slides).to_csv(root / "slides.csv", index=False)
    return root / "clini.csv", root / "slides.csv", root / "features"


SURV = ["-t", "OS", "--target-type", "survival", "--time", "OS_MONTHS", "--event", "OS_EVENT"]
FAST = ["--steps", "300", "--min-steps", "200", "--val-every", "25", "--restarts", "1", "--bag-size", "48",
        "--batch-size", "16"]


def _cli(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("surv")
    clini, slides, feats = make_survival_cohort(root / "train", 100, seed=1)
    res = _cli("crossval", "--clini", clini, "--slides-table", slides, "--features", feats, *SURV, "--folds", "3",
               "--out", root / "cv", *FAST)
    assert res.exit_code == 0, res.output
    return {"root": root, "cv": root / "cv" / "OS", "output": res.output}  # type: ignore[dict-item]


def test_crossval_orders_patients_by_risk(trained: dict) -> None:
    from lifelines.utils import concordance_index

    preds = pd.read_csv(trained["cv"] / "patient-preds.csv")
    assert list(preds.columns) == ["PATIENT", "OS_time", "OS_event", "risk", "fold"]
    c = concordance_index(preds.OS_time, -preds.risk, preds.OS_event)
    assert c >= 0.75, c
    assert "3-fold cross-validation of 100 patients, pooled C-index" in trained["output"]
    assert "mean-pool + ridge Cox regression, same folds: C-index" in " ".join(trained["output"].split())
    ref = pd.read_csv(trained["cv"] / "baseline-mean-pool" / "patient-preds.csv")
    assert set(ref.PATIENT) == set(preds.PATIENT) and (ref.model == "mean-pool + ridge Cox regression").all()
    point = json.loads((trained["cv"] / "operating-point.json").read_text())
    assert point["rule"] == "median risk" and point["thresholds"]["risk"] == pytest.approx(preds.risk.median())


def _training_cohort(trained: dict) -> object:
    from slidepredict.cohort import build_cohort

    root = trained["root"] / "train"
    return build_cohort(root / "features", root / "slides.csv", root / "clini.csv", target="OS", kind="survival",
                        time_col="OS_MONTHS", event_col="OS_EVENT")


def test_every_fold_model_gives_risks_on_one_scale(trained: dict) -> None:
    """The Cox loss ignores shifts and each fold ends with its own risk spread (raw SDs of 1.7 and 0.1 were seen):
    every model's risks are standardised to its own training patients before they are pooled or cut."""
    from slidepredict.training import load_model
    from slidepredict.training.predict import predict_cohort

    cohort = _training_cohort(trained)
    for k in range(3):
        loaded = load_model(trained["cv"] / f"fold-{k}" / "model.ckpt")
        own = predict_cohort(loaded, cohort.subset(loaded.meta.train_patients))["risk"]
        assert own.mean() == pytest.approx(0.0, abs=1e-6) and own.std() == pytest.approx(1.0, abs=1e-6)
    preds = pd.read_csv(trained["cv"] / "patient-preds.csv")
    spread = preds.groupby("fold").risk.std()
    assert spread.max() / spread.min() < 2.5, spread.to_dict()
    ref = pd.read_csv(trained["cv"] / "baseline-mean-pool" / "patient-preds.csv").groupby("fold").risk.std()
    assert ref.max() / ref.min() < 2.5, ref.to_dict()


def test_external_risk_groups_split_at_the_carried_median(trained: dict, tmp_path: Path) -> None:
    clini, slides, feats = make_survival_cohort(tmp_path / "ext", 50, seed=5)
    res = _cli("deploy", "--model", trained["cv"], "--features", feats, "--clini", clini, "--slides-table", slides,
               "--out", tmp_path / "dep", "--n-bootstrap", "100")
    assert res.exit_code == 0, res.output
    metrics = pd.read_csv(tmp_path / "dep" / "stats" / "metrics.csv", dtype={"threshold": str})
    pooled = metrics[metrics.group == "pooled"].set_index("metric")
    cut = json.loads((trained["cv"] / "operating-point.json").read_text())["thresholds"]["risk"]
    assert pooled.loc["threshold", "value"] == pytest.approx(cut, rel=1e-4) and pooled.loc["threshold", "threshold"] == "carried"
    assert pooled.loc["c_index", "value"] >= 0.75
    assert pooled.loc["logrank_p", "value"] < 0.01
    assert pooled.loc["hr_high_vs_low", "value"] > 1.0
    assert 0.3 <= pooled.loc["n_high", "value"] / 50 <= 0.7  # the training median splits a like cohort near half
    members = [pd.read_csv(tmp_path / "dep" / f"fold-{k}" / "patient-preds.csv").risk for k in range(3)]
    ensemble = pd.read_csv(tmp_path / "dep" / "patient-preds.csv").risk
    assert np.allclose(ensemble, np.mean(members, axis=0))  # members on one scale: fold 0 no longer dominates
    assert max(m.std() for m in members) / min(m.std() for m in members) < 2.5
    assert (tmp_path / "dep" / "stats" / "km-OS.png").is_file()
    assert "OS (risk, n=50): C-index" in res.output and "log-rank p" in res.output


def test_statistics_match_lifelines(trained: dict, tmp_path: Path) -> None:
    from lifelines import CoxPHFitter
    from lifelines.statistics import logrank_test
    from lifelines.utils import concordance_index

    preds = trained["cv"] / "patient-preds.csv"
    res = _cli("stats", preds, "--out", tmp_path / "st", "--n-bootstrap", "50")
    assert res.exit_code == 0, res.output
    m = pd.read_csv(tmp_path / "st" / "metrics.csv", dtype={"threshold": str})
    pooled = m[m.group == "pooled"].set_index("metric")
    df = pd.read_csv(preds)
    t, e, r = df.OS_time.to_numpy(), df.OS_event.to_numpy(), df.risk.to_numpy()
    assert pooled.loc["c_index", "value"] == pytest.approx(concordance_index(t, -r, e), abs=1e-5)
    high = r > np.median(r)
    assert pooled.loc["threshold", "threshold"] == "median-in-sample"  # no carried cut-off given
    assert pooled.loc["logrank_p", "value"] == pytest.approx(logrank_test(t[high], t[~high], e[high], e[~high]).p_value, rel=1e-4)
    z = (r - r.mean()) / r.std()
    hr = CoxPHFitter().fit(pd.DataFrame({"t": t, "e": e, "z": z}), "t", "e").summary.loc["z", "exp(coef)"]
    assert pooled.loc["hr_per_sd", "value"] == pytest.approx(hr, rel=1e-4)
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    tau = np.quantile(t, 0.9)
    y = Surv.from_arrays(e.astype(bool), t)
    assert pooled.loc["c_index_uno", "threshold"] == f"tau={tau:.4g}"
    assert pooled.loc["c_index_uno", "value"] == pytest.approx(concordance_index_ipcw(y, y, r, tau=tau)[0], abs=1e-5)
    assert pooled.loc["c_index_uno", "ci_low"] < pooled.loc["c_index_uno", "value"] < pooled.loc["c_index_uno", "ci_high"]
    assert set(m.group) == {"pooled", "fold-0", "fold-1", "fold-2"}


def test_uno_c_matches_its_definition_with_a_lifelines_censoring_estimate() -> None:
    """Uno's C (scikit-survival) against its formula written out: events before tau, each comparable pair
    weighted by 1 / G(T_i)^2, G the Kaplan-Meier estimate of the censoring distribution (lifelines)."""
    from lifelines import KaplanMeierFitter

    from slidepredict.stats.survival import _uno, uno_tau

    rng = np.random.default_rng(0)
    t = np.round(rng.exponential(50.0, 80), 1)
    e = (rng.random(80) < 0.4).astype(int)  # 60% censored
    r = -t + rng.normal(0.0, 30.0, 80)
    tau = uno_tau(t)
    g = KaplanMeierFitter().fit(t, 1 - e).survival_function_at_times(t).to_numpy()
    num = den = 0.0
    for i in np.flatnonzero((e == 1) & (t < tau)):
        later = t > t[i]
        den += later.sum() / g[i] ** 2
        num += ((r[i] > r[later]) + 0.5 * (r[i] == r[later])).sum() / g[i] ** 2
    assert _uno(t, e, r, tau) == pytest.approx(num / den, abs=1e-9)
    assert tau == pytest.approx(np.quantile(t, 0.9))


def test_headline_adds_uno_c_when_censoring_is_heavy() -> None:
    from slidepredict.stats.survival import evaluate_risk, risk_headline

    rng = np.random.default_rng(1)
    t = rng.exponential(50.0, 60)
    df = pd.DataFrame({"OS_time": t, "OS_risk": 0.0, "risk": -t + rng.normal(0.0, 20.0, 60)})
    for share, expect in ((0.3, False), (0.7, True)):
        df["OS_event"] = (np.arange(60) >= share * 60).astype(int)
        text = risk_headline(evaluate_risk(df, "OS", "pooled", 20, 0, 0.95, None), "OS", 0.95)["text"]
        assert ("Uno's C" in text) is expect, text
        assert (f"{share:.0%} censored" in text) is expect


def _bad(tmp_path: Path, clini: Path, slides: Path, feats: Path, *extra: object) -> str:
    out = tmp_path / "bad"
    res = _cli("crossval", "--clini", clini, "--slides-table", slides, "--features", feats, "--out", out, *FAST, *extra)
    assert res.exit_code == 2, res.output
    assert not out.exists()
    return " ".join(res.output.split()).split("Error: ")[-1]


def test_bad_survival_input(tmp_path: Path) -> None:
    clini, slides, feats = make_survival_cohort(tmp_path, 12, seed=2)
    ct = pd.read_csv(clini, dtype=str)
    assert _bad(tmp_path, clini, slides, feats, "-t", "OS", "--target-type", "survival", "--time", "OS_MONTHS") == (
        "survival target 'OS_MONTHS' needs an event column (--event, 1 = event, 0 = censored)")
    for column, value, message in (
        ("OS_MONTHS", "-3", "'OS_MONTHS' in clini.csv has 1 negative survival time, e.g. patient 'V2-004'; "
                            "times count from diagnosis"),
        ("OS_MONTHS", "", "1 patient in clini.csv has no 'OS_MONTHS', e.g. 'V2-004'; give every patient a time "
                          "(the follow-up time when censored) or remove the row"),
        ("OS_EVENT", "2", "event values must be 1 (event) or 0 (censored); clini.csv has '2' (patient 'V2-004')"),
    ):
        bad = ct.copy()
        bad.loc[4, column] = value
        bad.to_csv(clini, index=False)
        assert _bad(tmp_path, clini, slides, feats, *SURV) == message
    ct.assign(OS_EVENT="0").to_csv(clini, index=False)
    assert _bad(tmp_path, clini, slides, feats, *SURV) == (
        "survival target 'OS' has 0 events among 12 patients (12 censored); at least 2 are needed for the inner "
        "validation split")


def test_heatmap_of_a_survival_model_draws_tile_risk(trained: dict, tmp_path: Path) -> None:
    from slidepredict.heatmaps.overlay import map_title
    from slidepredict.heatmaps.scores import TileScores
    from slidepredict.training import load_model

    from slidepredict.training import predict_bag

    loaded = load_model(trained["cv"] / "fold-0" / "model.ckpt")
    cohort = _training_cohort(trained)
    held_out = pd.read_csv(trained["cv"] / "patient-preds.csv").query("fold == 0").iloc[0]
    risk, att, tiles = predict_bag(loaded, *cohort.load_bag(held_out.PATIENT))
    assert risk[0] == pytest.approx(held_out.risk, abs=1e-5)  # the heatmap's patient risk is the prediction's
    assert risk[0] == pytest.approx(float(att @ tiles[:, 0]), abs=1e-5)  # and is made of the tiles' own risks
    assert tiles.shape[1] == 1 and tiles.std() > 0.05
    meta = loaded.meta
    assert meta.target_kind == "survival" and len(meta.target_scale) == 2 and meta.survival_columns == ["OS_MONTHS", "OS_EVENT"]
    scores = TileScores(coords=np.zeros((1, 2), np.int64), size0=8, attention=np.ones(1), attention_raw=np.ones(1),
                        class_scores=np.array([[0.3]]), categories=["OS"], target="OS", probs=np.array([0.25]),
                        value_range=(-1.0, 1.0), measure="risk")
    assert map_title("S", "OS", scores) == ("S: each tile's own OS risk\nprediction OS risk = 0.25",
                                            "tile risk of OS (-1 to 1)")


def test_report_shows_the_survival_figures(trained: dict) -> None:
    from slidepredict.report import build_report

    res = _cli("stats", trained["cv"] / "patient-preds.csv", "--out", trained["root"] / "stats", "--n-bootstrap", "30")
    assert res.exit_code == 0, res.output
    html = build_report(trained["root"]).read_text()
    assert "C-index (95% CI)" in html and "log-rank p" in html and "km-OS" in html


def test_compare_c_index_of_two_models(trained: dict, tmp_path: Path) -> None:
    preds = pd.read_csv(trained["cv"] / "patient-preds.csv")
    noisy = preds.assign(risk=preds.risk + np.random.default_rng(0).normal(0, 3 * preds.risk.std(), len(preds)))
    noisy.to_csv(tmp_path / "noisy.csv", index=False)
    res = _cli("compare", trained["cv"] / "patient-preds.csv", tmp_path / "noisy.csv", "--out", tmp_path / "cmp",
               "--n-bootstrap", "200")
    assert res.exit_code == 0, res.output
    row = pd.read_csv(tmp_path / "cmp" / "comparison.csv").iloc[0]
    assert row.metric == "c_index" and row.difference > 0 and row.bootstrap_ci_low > 0  # noise makes the order worse
    relabelled = preds.assign(OS_event=1 - preds.OS_event)
    relabelled.to_csv(tmp_path / "other.csv", index=False)
    res = _cli("compare", trained["cv"] / "patient-preds.csv", tmp_path / "other.csv", "--out", tmp_path / "bad")
    assert res.exit_code == 2 and "has other true values in" in res.output and not (tmp_path / "bad").exists()


def test_cox_loss_is_the_partial_likelihood_lifelines_maximises() -> None:
    """Without tied times Breslow's partial likelihood is lifelines' (Efron's); patients no longer at risk add
    nothing even when their risk is far above the others' (a log(1e-38) mask leaked exp(risk - 87))."""
    import torch
    from lifelines import CoxPHFitter

    from slidepredict.training.module import cox_loss

    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    t = rng.exponential(np.exp(-x)) + np.arange(40) * 1e-6  # no ties
    e = (rng.random(40) < 0.7).astype(float)
    cox = CoxPHFitter().fit(pd.DataFrame({"t": t, "e": e, "x": x}), "t", "e")
    beta = float(cox.params_["x"])
    loss = cox_loss(torch.tensor(beta * x), torch.tensor(t), torch.tensor(e))
    assert float(loss) * e.sum() == pytest.approx(-cox.log_likelihood_, rel=1e-5)
    # the event patient at t=2 is alone at risk: loss 0, whatever the risk of one who left at t=1
    far = cox_loss(torch.tensor([0.0, 100.0]), torch.tensor([2.0, 1.0]), torch.tensor([1.0, 0.0]))
    assert float(far) == pytest.approx(0.0, abs=1e-6)
