"""Statistics of patient predictions: equal to scikit-learn, honest bootstrap CIs, plots, bad input."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)
from typer.testing import CliRunner

from slidepredict.stats import PredictionsError, compute_stats
from slidepredict.stats.metrics import _resample_rows, bootstrap
from slidepredict.stats.predictions import Predictions, file_labels, infer_target

BINARY = ("MSI H", "non_MSI")  # a space and an underscore: class names are taken verbatim
MULTI = ("CIN_high", "GS", "MSI H")


def _preds(n: int, seed: int, classes: tuple[str, ...] = BINARY, target: str = "isMSIH",
           prefix: str = "P", signal: float = 1.5) -> pd.DataFrame:
    """Noisy but informative class probabilities for `n` patients, every class present."""
    rng = np.random.default_rng(seed)
    k = np.arange(n) % len(classes)
    rng.shuffle(k)
    logits = rng.normal(size=(n, len(classes))) + signal * np.eye(len(classes))[k]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    df = pd.DataFrame({"PATIENT": [f"{prefix}{i:03d}" for i in range(n)],
                       target: np.asarray(classes)[k],
                       "pred": np.asarray(classes)[probs.argmax(axis=1)]})
    for j, c in enumerate(classes):
        df[f"{target}_{c}"] = probs[:, j]
    return df


def _write(df: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def _folds(root: Path, n_folds: int = 3, n: int = 40, classes: tuple[str, ...] = BINARY) -> list[Path]:
    return [_write(_preds(n, seed=f, classes=classes, prefix=f"F{f}-"), root / f"fold-{f}" / "patient-preds.csv")
            for f in range(n_folds)]


def _value(table: pd.DataFrame, group: str, cls: str, metric: str, threshold: str = "") -> pd.Series:
    rows = table[(table["group"] == group) & (table["class"] == cls)
                 & (table["metric"] == metric) & (table["threshold"] == threshold)]
    assert len(rows) == 1, (group, cls, metric, threshold)
    return rows.iloc[0]


def test_point_metrics_equal_scikit_learn(tmp_path: Path) -> None:
    files = _folds(tmp_path / "in")
    result = compute_stats(files, tmp_path / "out", n_bootstrap=0)
    pooled = pd.concat([pd.read_csv(f) for f in files])
    cls = "MSI H"
    y = (pooled["isMSIH"] == cls).to_numpy().astype(int)
    p = pooled[f"isMSIH_{cls}"].to_numpy()
    t = result.table
    assert _value(t, "pooled", cls, "auroc")["value"] == pytest.approx(roc_auc_score(y, p))
    assert _value(t, "pooled", cls, "auprc")["value"] == pytest.approx(average_precision_score(y, p))
    assert _value(t, "pooled", cls, "brier")["value"] == pytest.approx(brier_score_loss(y, p))
    assert _value(t, "pooled", cls, "f1", "0.5")["value"] == pytest.approx(f1_score(y, p >= 0.5))
    tn, fp, fn, tp = confusion_matrix(y, p >= 0.5).ravel()
    assert _value(t, "pooled", cls, "sensitivity", "0.5")["value"] == pytest.approx(tp / (tp + fn))
    assert _value(t, "pooled", cls, "specificity", "0.5")["value"] == pytest.approx(tn / (tn + fp))
    fpr, tpr, thr = roc_curve(y, p)
    best = np.argmax(tpr - fpr)
    mid_gap = (thr[best] + p[p < thr[best]].max()) / 2  # between the lowest score called positive and the next
    assert _value(t, "pooled", cls, "threshold", "youden-in-sample")["value"] == pytest.approx(mid_gap)
    assert _value(t, "pooled", cls, "sensitivity", "youden-in-sample")["value"] == pytest.approx(tpr[best])
    assert _value(t, "pooled", cls, "specificity", "youden-in-sample")["value"] == pytest.approx(1 - fpr[best])
    fold0 = pd.read_csv(files[0])
    assert _value(t, "fold-0", cls, "auroc")["value"] == pytest.approx(
        roc_auc_score(fold0["isMSIH"] == cls, fold0[f"isMSIH_{cls}"]))
    assert _value(t, "pooled", cls, "auroc")["n"] == 120
    assert _value(t, "pooled", cls, "auroc")["n_pos"] == y.sum()
    # confusion matrix of the `pred` column, rows true, columns predicted
    saved = pd.read_csv(result.confusion[("isMSIH", "pooled")], index_col=0)
    expected = confusion_matrix(pooled["isMSIH"], pooled["pred"], labels=list(BINARY))
    assert saved.to_numpy().tolist() == expected.tolist()
    assert list(saved.columns) == ["pred MSI H", "pred non_MSI"]
    on_disk = pd.read_csv(result.metrics_csv, keep_default_na=False, na_values=[""])
    assert len(on_disk) == len(t) and set(on_disk["group"]) == {"fold-0", "fold-1", "fold-2", "pooled"}


def _width(n: int, n_bootstrap: int = 200, seed: int = 0) -> tuple[float, float, float, int]:
    df = _preds(n, seed=7)
    g = Predictions(Path("x.csv"), "pooled", "isMSIH", BINARY, df["PATIENT"].to_numpy(str),
                    df["isMSIH"].to_numpy(str), df["pred"].to_numpy(str),
                    df[[f"isMSIH_{c}" for c in BINARY]].to_numpy())
    iv = bootstrap(g, n_bootstrap, seed=seed, ci=0.95)[("MSI H", "auroc")]
    point = roc_auc_score(df["isMSIH"] == "MSI H", df["isMSIH_MSI H"])
    return point, iv.low, iv.high, iv.n_used


def test_bootstrap_ci_contains_estimate_narrows_with_n_and_is_seeded() -> None:
    widths = []
    for n in (30, 120, 480):
        point, low, high, used = _width(n)
        assert low < point < high
        assert used == 200
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    assert _width(60, seed=3) == _width(60, seed=3)
    assert _width(60, seed=3) != _width(60, seed=4)


def test_bootstrap_skips_resamples_with_one_class_and_says_how_many(tmp_path: Path) -> None:
    df = _preds(8, seed=1)
    df["isMSIH"] = ["MSI H"] + ["non_MSI"] * 7  # one positive: many resamples miss it
    result = compute_stats([_write(df, tmp_path / "p.csv")], tmp_path / "out", n_bootstrap=200)
    used = _value(result.table, "pooled", "MSI H", "auroc")["n_bootstrap"]
    assert 0 < used < 200


def test_no_ci_when_most_resamples_lack_a_class() -> None:
    """Four classes of one patient each: a macro AUROC needs all four in a resample (9% of them): no CI."""
    classes = ("a", "b", "c", "d")
    probs = np.eye(4) * 0.6 + 0.1
    g = Predictions(Path("x.csv"), "fold-0", "T", classes, np.array(["p1", "p2", "p3", "p4"]), np.array(classes),
                    np.array(classes), probs)
    iv = bootstrap(g, 400, seed=0, ci=0.95)
    macro = iv[("macro", "auroc")]
    assert np.isnan(macro.low) and np.isnan(macro.high) and 0 < macro.n_used < 200
    assert iv[("a", "auroc")].n_used >= 200 and not np.isnan(iv[("a", "auroc")].low)  # 68% usable: a CI


def test_resampling_keeps_a_patients_rows_together() -> None:
    codes = np.array([0, 0, 1, 2, 2, 2])  # patient 0 has two rows (e.g. two models), patient 2 three
    rows = _resample_rows(codes, np.random.default_rng(0))
    counts = np.bincount(rows, minlength=6)
    assert counts[0] == counts[1] and counts[3] == counts[4] == counts[5]
    assert counts[[0, 2, 3]].sum() == 3  # three patients drawn


def test_multiclass_one_vs_rest_and_macro_averages(tmp_path: Path) -> None:
    df = _preds(90, seed=2, classes=MULTI, target="subtype")
    result = compute_stats([_write(df, tmp_path / "p.csv")], tmp_path / "out", n_bootstrap=50)
    probs = df[[f"subtype_{c}" for c in MULTI]].to_numpy()
    onehot = (df["subtype"].to_numpy()[:, None] == np.asarray(MULTI)).astype(int)
    t = result.table
    macro = _value(t, "pooled", "macro", "auroc")
    assert macro["value"] == pytest.approx(roc_auc_score(df["subtype"], probs, multi_class="ovr", labels=list(MULTI)))
    assert _value(t, "pooled", "macro", "auprc")["value"] == pytest.approx(
        average_precision_score(onehot, probs, average="macro"))
    assert macro["ci_low"] < macro["value"] < macro["ci_high"]
    for j, c in enumerate(MULTI):
        assert _value(t, "pooled", c, "auroc")["value"] == pytest.approx(roc_auc_score(onehot[:, j], probs[:, j]))
    assert result.headline["class"] == "macro"
    assert result.headline["text"].startswith(f"AUROC {macro['value']:.2f} (95% CI ")
    svg = (tmp_path / "out" / "roc-subtype.svg").read_text()
    for c in MULTI:  # one panel per class
        assert f"subtype: {c} vs rest" in svg
    assert _value(t, "pooled", "overall", "accuracy", "pred")["value"] == pytest.approx(
        (df["subtype"] == df["pred"]).mean())
    # standard definitions: macro F1 of the argmax decision, Brier summed over classes
    assert _value(t, "pooled", "overall", "f1_macro", "pred")["value"] == pytest.approx(
        f1_score(df["subtype"], df["pred"], average="macro"))
    assert _value(t, "pooled", "overall", "brier")["value"] == pytest.approx(((probs - onehot) ** 2).sum(1).mean())
    assert not len(t[(t["class"] == "macro") & t["metric"].isin(["f1", "brier", "sensitivity"])])
    assert _value(t, "pooled", "mean-ovr", "f1", "0.5")["value"] == pytest.approx(
        np.mean([f1_score(onehot[:, j], probs[:, j] >= 0.5) for j in range(len(MULTI))]))


def test_plots_are_written_valid_and_labelled(tmp_path: Path) -> None:
    result = compute_stats(_folds(tmp_path / "in"), tmp_path / "out", n_bootstrap=50, seed=1)
    names = sorted(p.name for p in result.plots)
    assert names == sorted(f"{k}-isMSIH.{f}" for k in ("roc", "pr", "calibration") for f in ("svg", "png"))
    for path in result.plots:
        assert path.parent == tmp_path / "out" and path.stat().st_size > 10_000
        if path.suffix == ".png":
            with Image.open(path) as im:
                im.verify()
            with Image.open(path) as im:
                assert im.width > 600 and im.height > 600
                assert len(np.unique(np.asarray(im.convert("L")))) > 10  # not blank
        else:
            assert ET.parse(path).getroot().tag.endswith("svg")
    roc = (tmp_path / "out" / "roc-isMSIH.svg").read_text()
    h = result.headline
    auroc_text = h["text"].split(";")[0]
    assert f"pooled (n=120, {_value(result.table, 'pooled', 'MSI H', 'auroc')['n_pos']:.0f} pos): {auroc_text}" in roc
    brier = _value(result.table, "pooled", "MSI H", "brier")["value"]
    ece = _value(result.table, "pooled", "MSI H", "ece")["value"]
    assert h["text"] == f"{auroc_text}; Brier {brier:.3f}, calibration error {ece:.3f}"
    assert "fold-2 (n=40" in roc
    assert h["n_bootstrap"] == 50 and h["ci_low"] < h["value"] < h["ci_high"]
    assert not list((tmp_path / "out").glob(".stats-*"))


def test_fold_column_and_unlabelled_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    df = pd.concat([_preds(30, seed=s, prefix=f"S{s}-").assign(fold=s) for s in range(2)], ignore_index=True)
    df.loc[[3, 40], "isMSIH"] = np.nan  # prediction-only patients
    with caplog.at_level(logging.INFO, logger="slidepredict"):
        result = compute_stats([_write(df, tmp_path / "p.csv")], tmp_path / "out", n_bootstrap=0)
    assert "2 of 60 rows have no label for 'isMSIH'" in caplog.text
    assert set(result.table["group"]) == {"fold-0", "fold-1", "pooled"}
    assert _value(result.table, "pooled", "MSI H", "auroc")["n"] == 58
    assert np.isnan(_value(result.table, "pooled", "MSI H", "auroc")["ci_low"])
    assert result.headline["text"].startswith("AUROC ") and "CI" not in result.headline["text"]


def test_target_and_class_inference_with_underscores() -> None:
    cols = ["PATIENT", "MSI", "pred", "MSI_H", "MSI_H_low", "fold"]
    assert infer_target(cols, Path("p.csv")) == ("MSI", ["H", "H_low"])
    assert infer_target(["PATIENT", "BRAF_mut", "pred", "BRAF_mut_WT", "BRAF_mut_MUT"], Path("p.csv")) == (
        "BRAF_mut", ["WT", "MUT"])
    extra = ["PATIENT", "isMSIH", "pred", "n_tiles", "n_tiles_kept", "isMSIH_MSI H", "isMSIH_non_MSI"]
    assert infer_target(extra, Path("p.csv"), {"MSI H"}) == ("isMSIH", ["MSI H", "non_MSI"])
    assert file_labels([Path("/r/fold-0/patient-preds.csv"), Path("/r/fold-1/patient-preds.csv")]) == [
        "fold-0", "fold-1"]
    assert file_labels([Path("/r/a.csv"), Path("/r/b.csv")]) == ["a", "b"]


def _bad_one_class(tmp: Path) -> list[Path]:
    df = _preds(10, 0)
    df["isMSIH"] = "non_MSI"
    return [_write(df, tmp / "one.csv")]


def _bad_mismatch(tmp: Path) -> list[Path]:
    return [_write(_preds(10, 0), tmp / "a.csv"),
            _write(_preds(10, 1, classes=("MSI-H", "MSS")), tmp / "b.csv")]


def _bad_zero_bytes(tmp: Path) -> list[Path]:
    (tmp / "empty.csv").write_bytes(b"")
    return [tmp / "empty.csv"]


def _bad_header_only(tmp: Path) -> list[Path]:
    (tmp / "header.csv").write_text("PATIENT,isMSIH,pred,isMSIH_MSI H,isMSIH_non_MSI\n")
    return [tmp / "header.csv"]


def _bad_no_probs(tmp: Path) -> list[Path]:
    return [_write(_preds(10, 0)[["PATIENT", "isMSIH", "pred"]], tmp / "noprob.csv")]


def _bad_prob_range(tmp: Path) -> list[Path]:
    df = _preds(10, 0)
    df.loc[2, "isMSIH_MSI H"] = 3.5
    return [_write(df, tmp / "logits.csv")]


def _bad_prediction_only(tmp: Path) -> list[Path]:
    return [_write(_preds(10, 0).drop(columns="isMSIH"), tmp / "deployed.csv")]


BAD = {
    "prediction_only": (_bad_prediction_only, "Predictions file '{t}/deployed.csv' has no true labels (no 'isMSIH' "
                        "column next to its probability columns); statistics need labelled patients (deploy with a "
                        "clinical table)."),
    "one_class": (_bad_one_class, "Predictions file '{t}/one.csv' has no patients of class 'MSI H' for target "
                  "'isMSIH' (labels seen: non_MSI); AUROC and AUPRC need positive and negative patients for every class."),
    "mismatch": (_bad_mismatch, "Predictions files disagree on the classes of target 'isMSIH': '{t}/a.csv' has "
                 "MSI H, non_MSI but '{t}/b.csv' has MSI-H, MSS; evaluate models with the same classes together."),
    "zero_bytes": (_bad_zero_bytes, "Predictions file '{t}/empty.csv' is empty (0 bytes); expected a "
                   "patient-preds.csv from `slidepredict crossval` or `slidepredict deploy`."),
    "header_only": (_bad_header_only, "Predictions file '{t}/header.csv' has a header but no rows; nothing to evaluate."),
    "no_probs": (_bad_no_probs, "Predictions file '{t}/noprob.csv' has no probability columns: expected "
                 "'<target>_<class>' columns next to a '<target>' label column (columns found: PATIENT, isMSIH, pred)."),
    "prob_range": (_bad_prob_range, "Predictions file '{t}/logits.csv' has probabilities outside [0, 1] in columns "
                   "isMSIH_MSI H, isMSIH_non_MSI; these must be class probabilities, not logits."),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exact_error_and_no_partial_output(tmp_path: Path, case: str) -> None:
    make, message = BAD[case]
    files = make(tmp_path)
    fresh, kept = tmp_path / "new-out", tmp_path / "old-out"
    kept.mkdir()
    (kept / "metrics.csv").write_text("previous results\n")
    for out in (fresh, kept):
        with pytest.raises(PredictionsError) as err:
            compute_stats(files, out, n_bootstrap=10)
        assert str(err.value) == message.format(t=tmp_path)
    assert not fresh.exists()
    assert [p.name for p in kept.iterdir()] == ["metrics.csv"]
    assert (kept / "metrics.csv").read_text() == "previous results\n"


def test_cli_prints_headline_and_one_line_errors(tmp_path: Path) -> None:
    from slidepredict.cli import app

    files = _folds(tmp_path / "in", n_folds=2)
    runner = CliRunner()
    ok = runner.invoke(app, ["stats", *map(str, files), "--out", str(tmp_path / "out"), "--n-bootstrap", "30",
                             "--positive", "non_MSI"])
    assert ok.exit_code == 0, ok.output
    assert "isMSIH (non_MSI, pooled, n=80): AUROC " in ok.output
    assert (tmp_path / "out" / "metrics.csv").is_file()
    bad = runner.invoke(app, ["stats", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o2")])
    assert bad.exit_code == 2
    assert f"Error: Predictions file '{tmp_path / 'missing.csv'}' not found." in bad.output
    wrong = runner.invoke(app, ["stats", str(files[0]), "--out", str(tmp_path / "o3"), "--positive", "MSS"])
    assert wrong.exit_code == 2
    assert "Error: --positive 'MSS' is not a class of target 'isMSIH' (classes: MSI H, non_MSI)." in wrong.output
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


@pytest.mark.parametrize(("options", "message"), [
    ({"ci": 1.5}, "--ci must be between 0 and 1 (e.g. 0.95), got 1.5."),
    ({"n_bootstrap": -1}, "--n-bootstrap must be 0 (no CIs) or more, got -1."),
    ({"positive": "MSS"}, "--positive 'MSS' is not a class of target 'isMSIH' (classes: MSI H, non_MSI)."),
])
def test_bad_options_fail_before_any_output(tmp_path: Path, options: dict, message: str) -> None:
    files = [_write(_preds(10, 0), tmp_path / "p.csv")]
    with pytest.raises(PredictionsError) as err:
        compute_stats(files, tmp_path / "out", **options)
    assert str(err.value) == message
    assert not (tmp_path / "out").exists()


def test_calibration_error_matches_torchmetrics_and_sees_overconfidence() -> None:
    """ECE against an independent implementation (torchmetrics' binary_calibration_error, 10 bins, L1); an
    overconfident model with the same ranking has the same AUROC and a far larger ECE."""
    import torch
    from torchmetrics.functional.classification import binary_calibration_error

    from slidepredict.stats.metrics import calibration_error

    rng = np.random.default_rng(0)
    p = rng.random(300)
    y = (rng.random(300) < p).astype(int)  # calibrated by construction
    ref = float(binary_calibration_error(torch.tensor(p), torch.tensor(y), n_bins=10, norm="l1"))
    assert calibration_error(y, p) == pytest.approx(ref, abs=1e-9)
    sharp = 1 / (1 + np.exp(-12 * (p - 0.5)))  # same order, pushed towards 0 and 1
    assert roc_auc_score(y, sharp) == pytest.approx(roc_auc_score(y, p))
    assert calibration_error(y, sharp) > 2 * calibration_error(y, p)
    ref = float(binary_calibration_error(torch.tensor(sharp), torch.tensor(y), n_bins=10, norm="l1"))
    assert calibration_error(y, sharp) == pytest.approx(ref, abs=1e-9)
