"""`slidepredict compare`: DeLong's paired test against R's pROC, paired bootstrap, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from slidepredict.cli import app
from slidepredict.stats.compare import delong, delong_test

runner = CliRunner()

# The aSAH data set distributed with R's pROC package (Turck et al., Intensive Care Med 2010;
# 113 patients with aneurysmal subarachnoid haemorrhage, outcome Poor = 1: 41 patients), in the
# package's row order. Reference values from pROC 1.19.1: auc(), var(method = "delong"),
# cov(method = "delong") and roc.test(method = "delong", paired = TRUE) with direction "<".
# pROC's documentation prints the same test: roc.test(s100b, wfns): Z = -2.209, p-value = 0.02718,
# AUCs 0.7314 and 0.8237. wfns is a 5-level score, so ties are exercised.
ASAH_POOR = [
    0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0,
    0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0,
    0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0,
]
ASAH_S100B = [
    0.13, 0.14, 0.1, 0.04, 0.13, 0.1, 0.47, 0.16, 0.18, 0.1, 0.12, 0.1, 0.44, 0.71, 0.04, 0.08, 0.49, 0.04,
    0.07, 0.33, 0.09, 0.09, 0.07, 0.11, 0.07, 0.17, 0.07, 0.11, 0.13, 0.19, 0.05, 0.16, 0.41, 0.14, 0.34,
    0.35, 0.48, 0.09, 0.96, 0.25, 0.5, 0.46, 0.16, 0.07, 0.43, 0.45, 0.11, 0.08, 0.09, 0.86, 0.52, 0.08,
    0.06, 0.13, 2.07, 0.1, 0.14, 0.15, 0.07, 0.06, 0.77, 0.05, 0.09, 0.3, 0.03, 0.09, 0.04, 0.23, 0.7,
    0.09, 0.27, 0.71, 0.08, 0.26, 0.08, 0.16, 0.09, 0.13, 0.1, 0.08, 0.11, 0.33, 0.11, 0.28, 0.07, 0.1,
    0.32, 0.22, 0.07, 0.05, 0.24, 0.38, 0.1, 0.15, 0.08, 0.14, 0.1, 0.07, 0.04, 0.19, 0.56, 0.14, 0.58,
    0.32, 0.82, 0.74, 0.15, 0.47, 0.17, 0.44, 0.15, 0.5, 0.48,
]
ASAH_WFNS = [
    1, 1, 1, 1, 3, 2, 5, 4, 1, 2, 5, 2, 5, 5, 1, 2, 5, 2, 2, 5, 2, 1, 1, 1, 1, 2, 1, 2, 1, 1, 3, 4, 2, 1,
    4, 5, 4, 1, 4, 2, 5, 5, 1, 1, 2, 4, 1, 1, 2, 5, 5, 2, 1, 2, 5, 1, 2, 2, 2, 1, 5, 1, 1, 2, 5, 2, 1, 4,
    5, 2, 4, 4, 1, 4, 1, 2, 1, 4, 2, 1, 2, 3, 2, 4, 2, 1, 4, 5, 1, 1, 5, 4, 2, 2, 1, 1, 1, 3, 1, 2, 5, 2,
    2, 5, 5, 5, 2, 4, 4, 5, 1, 1, 1,
]
PROC_AUC = (0.73136856368563685, 0.82367886178861793)  # s100b, wfns
PROC_VAR = (0.0026686824571724378, 0.0014699147088236264)
PROC_COV = 0.0011961556737675448
PROC_Z, PROC_P = -2.2089835914409077, 0.02717578222918815  # roc.test(s100b, wfns)


def test_delong_reproduces_r_proc_on_the_asah_data() -> None:
    y = np.array(ASAH_POOR)
    assert (len(y), int(y.sum())) == (113, 41)
    aucs, cov = delong(y, np.vstack([ASAH_S100B, ASAH_WFNS]))
    np.testing.assert_allclose(aucs, PROC_AUC, rtol=1e-12)
    np.testing.assert_allclose(np.diag(cov), PROC_VAR, rtol=1e-10)
    assert cov[0, 1] == pytest.approx(PROC_COV, rel=1e-10)
    diff, se, z, p = delong_test(y, np.array(ASAH_S100B), np.array(ASAH_WFNS))
    assert (z, p) == (pytest.approx(PROC_Z, rel=1e-10), pytest.approx(PROC_P, rel=1e-9))
    assert delong_test(y, np.array(ASAH_WFNS), np.array(ASAH_WFNS))[2:] == (0.0, 1.0)  # identical: no difference


def _files(tmp_path: Path, n: int = 80, seed: int = 0) -> tuple[Path, Path, pd.DataFrame]:
    """A good and a weak model's predictions on the same patients, with fold columns as crossval writes them."""
    rng = np.random.default_rng(seed)
    y = np.array(["MSI" if i % 3 == 0 else "MSS" for i in range(n)])
    signal = (y == "MSI").astype(float)
    paths = []
    for name, strength in (("attention", 2.0), ("baseline", 0.5)):
        p = 1 / (1 + np.exp(-(strength * (signal - 0.5) * 2 + rng.normal(0, 1, n))))
        df = pd.DataFrame({"PATIENT": [f"P{i:03d}" for i in range(n)], "MSI": y, "pred": np.where(p >= 0.5, "MSI", "MSS"),
                           "MSI_MSI": p, "MSI_MSS": 1 - p, "fold": np.arange(n) % 4})
        folder = tmp_path / name
        folder.mkdir(parents=True)
        df.sample(frac=1.0, random_state=seed).to_csv(folder / "patient-preds.csv", index=False)  # other row order
        paths.append(folder / "patient-preds.csv")
    return paths[0], paths[1], pd.read_csv(paths[0])


def test_compare_cli_writes_the_table_and_plot(tmp_path: Path) -> None:
    a, b, _ = _files(tmp_path)
    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare", str(a), str(b), "--out", str(out), "--n-bootstrap", "300"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "comparison.csv")
    assert len(table) == 1
    row = table.iloc[0]
    assert (row.model_a, row.model_b, row["class"], row.n) == ("attention", "baseline", "MSI", 80)
    da, db = pd.read_csv(a).sort_values("PATIENT"), pd.read_csv(b).sort_values("PATIENT")
    assert row.auroc_a == pytest.approx(roc_auc_score(da.MSI == "MSI", da.MSI_MSI), abs=1e-5)  # written with 6 digits
    assert row.difference == pytest.approx(row.auroc_a - roc_auc_score(db.MSI == "MSI", db.MSI_MSI), abs=1e-5)
    assert row.bootstrap_ci_low < row.difference < row.bootstrap_ci_high and row.n_bootstrap > 290
    assert row.delong_ci_low < row.difference < row.delong_ci_high and 0 <= row.delong_p <= 1
    assert "attention vs baseline (MSI, n=80): AUROC" in res.output and "DeLong p = " in res.output
    assert {p.name for p in out.iterdir()} == {"comparison.csv", "comparison-MSI.svg", "comparison-MSI.png"}


def _refused(tmp_path: Path, a: Path, b: Path) -> str:
    out = tmp_path / "refused"
    res = runner.invoke(app, ["compare", str(a), str(b), "--out", str(out), "--n-bootstrap", "10"])
    assert res.exit_code == 2, res.output
    assert not out.exists()  # nothing written
    return " ".join(res.output.split())


def test_compare_refuses_other_patients_labels_or_targets(tmp_path: Path) -> None:
    a, b, df = _files(tmp_path)
    other = tmp_path / "other.csv"
    df[df.PATIENT != "P005"].assign(PATIENT=lambda d: d.PATIENT.replace("P007", "X999")).to_csv(other, index=False)
    assert _refused(tmp_path, a, other) == (
        f"Error: '{a}' and '{other}' have different patients (2 only in the first, e.g. P005; 1 only in the second, "
        "e.g. X999); compare models on the same patients.")
    relabelled = df.copy()
    relabelled.loc[relabelled.PATIENT == "P000", "MSI"] = "MSS"
    relabelled.to_csv(other, index=False)
    assert _refused(tmp_path, a, other) == (
        f"Error: patient 'P000' is 'MSI' in '{a}' but 'MSS' in '{other}' (1 patients differ); compare models on "
        "the same labels.")
    df.rename(columns={"MSI": "BRAF", "MSI_MSI": "BRAF_MSI", "MSI_MSS": "BRAF_MSS"}).to_csv(other, index=False)
    assert _refused(tmp_path, a, other) == (
        f"Error: '{a}' predicts MSI (MSI, MSS) but '{other}' predicts BRAF (MSI, MSS); compare models of one target "
        "and classes.")
    res = runner.invoke(app, ["compare", str(a), "--out", str(tmp_path / "one")])
    assert res.exit_code == 2 and "compare needs at least two predictions files (one per model)." in res.output


def _values(tmp_path: Path, n: int = 60) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two continuous models of the same patients: B noisy everywhere, A memorised its 30 training patients."""
    rng = np.random.default_rng(4)
    truth = rng.normal(size=n)
    patients = [f"P{i:03d}" for i in range(n)]
    trained = np.arange(n) < n // 2
    a = pd.DataFrame({"PATIENT": patients, "TMB": truth, "pred": np.where(trained, truth, truth + rng.normal(0, 0.6, n)),
                      "in_training": trained})
    b = pd.DataFrame({"PATIENT": patients, "TMB": truth, "pred": truth + rng.normal(0, 0.6, n)})
    return a, b


def test_compare_of_values_leaves_out_the_patients_a_model_trained_on(tmp_path: Path) -> None:
    a, b = _values(tmp_path)
    a.to_csv(tmp_path / "a.csv", index=False)
    b.loc[3, "TMB"] = np.nan  # unlabelled: counted and left out
    a.loc[3, "TMB"] = np.nan
    b.to_csv(tmp_path / "b.csv", index=False)
    res = runner.invoke(app, ["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--out", str(tmp_path / "c"),
                              "--n-bootstrap", "200"])
    assert res.exit_code == 0, res.output
    row = pd.read_csv(tmp_path / "c" / "comparison.csv").iloc[0]
    held = ~a.in_training.to_numpy()
    assert row.n == 30  # the memorised half is no evidence (it read n=60, r 0.93 vs 0.87 before)
    assert row.score_a == pytest.approx(np.corrcoef(a.TMB[held], a.pred[held])[0, 1], abs=1e-5)
    assert row.score_b == pytest.approx(np.corrcoef(b.TMB[held], b.pred[held])[0, 1], abs=1e-5)
    assert "30 patients were used to train one of the compared models" in " ".join(res.output.split())


def test_compare_refuses_a_patient_listed_twice(tmp_path: Path) -> None:
    a, b = _values(tmp_path)
    a = a.drop(columns="in_training")
    a.to_csv(tmp_path / "a.csv", index=False)
    twice = pd.concat([b, b.iloc[[5]].assign(pred=9.0)], ignore_index=True)
    twice.to_csv(tmp_path / "b.csv", index=False)
    assert _refused(tmp_path, tmp_path / "a.csv", tmp_path / "b.csv") == (
        f"Error: Predictions file '{tmp_path / 'b.csv'}' lists patient 'P005' 2 times; write one row per patient.")
    x, y, df = _files(tmp_path)  # categorical: one patient in two folds of a crossval file
    folds = pd.concat([df.assign(fold=np.arange(len(df)) % 4), df.iloc[[0]].assign(fold=1)], ignore_index=True)
    folds.to_csv(tmp_path / "folds.csv", index=False)
    assert _refused(tmp_path, x, tmp_path / "folds.csv") == (
        f"Error: Predictions file '{tmp_path / 'folds.csv'}' lists patient '{df.PATIENT[0]}' 2 times; write one row "
        "per patient.")


def test_delong_with_one_positive_says_why(tmp_path: Path) -> None:
    x, _, df = _files(tmp_path)
    one = df[(df.MSI == "MSS") | (df.PATIENT == df[df.MSI == "MSI"].PATIENT.iloc[0])]
    one.to_csv(tmp_path / "a.csv", index=False)
    one.assign(MSI_MSI=1 - one.MSI_MSS.to_numpy()[::-1], MSI_MSS=one.MSI_MSS.to_numpy()[::-1]).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(ValueError, match="at least two positive and two negative"):
        delong(np.array([1, 0, 0]), np.array([[0.9, 0.1, 0.2]]))
    n = len(one)
    assert _refused(tmp_path, tmp_path / "a.csv", tmp_path / "b.csv") == (
        f"Error: MSI: 1 of the {n} compared patients is 'MSI'; DeLong's test needs at least two patients of each "
        "class (its variance is undefined with one)")


def test_compare_refuses_when_every_patient_was_trained_on_by_one_model(tmp_path: Path) -> None:
    a, b = _values(tmp_path)
    a.to_csv(tmp_path / "a.csv", index=False)
    b.assign(in_training=~a.in_training).to_csv(tmp_path / "b.csv", index=False)  # B trained on the other half
    assert _refused(tmp_path, tmp_path / "a.csv", tmp_path / "b.csv") == (
        "WARNING 60 patients were used to train one of the compared models (column 'in_training') and are left out "
        f"of the comparison of every model Error: Predictions file '{tmp_path / 'a.csv'}' has no labelled patient "
        "that the compared models did not train on; there is nothing to compare on.")
