"""`run` end to end with a categorical, a continuous and a survival target in one config.

Twelve patients learn little, so the learned figures are judged on planted cohorts elsewhere (test_survival,
test_continuous, benchmarks/validity.py). Here every figure the run reports is recomputed from its files with
an independent implementation (scikit-learn, NumPy, lifelines), the truth columns are the planted ones, and
each heatmap shows its patient's held-out prediction.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from slidepredict.config import parse_config
from slidepredict.demo.synthetic import make_cohort
from slidepredict.pipeline.run import run_workflow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("types")
    for name, n, seed in (("train", 12, 11), ("external", 8, 12)):
        make_cohort(root / name, n_patients=n, seed=seed, width=768, height=512, mpp=1.0,
                    prefix="EXT" if name == "external" else "TRN")
    tables = {k: v for k, v in (("clini_table", "clini.csv"), ("slide_table", "slide.csv"))}
    cfg = parse_config({
        "output_dir": str(root / "run"),
        "cohort": {"slides_dir": str(root / "train" / "slides"), **{k: str(root / "train" / v) for k, v in tables.items()}},
        "tiling": {"tile_um": 128, "tile_px": 64, "qc": False},
        "extract": {"encoder": "stain-texture", "workers": 0},
        "training": {"targets": ["MSI", "SIGNAL_SCORE", "OS"], "folds": 2, "steps": 12, "min_steps": 4, "restarts": 1,
                     "val_every": 4, "target_type": {"SIGNAL_SCORE": "continuous", "OS": "survival"},
                     "time": {"OS": "OS_MONTHS"}, "event": {"OS": "OS_EVENT"}},
        "deploy": {"slides_dir": str(root / "external" / "slides"),
                   **{k: str(root / "external" / v) for k, v in tables.items()}},
        "stats": {"n_bootstrap": 50},
        "heatmaps": {"max_slides": 0, "topk": 0, "thumb_px": 128},
    }, "test configuration")
    ctx = run_workflow(cfg)
    (root / "headlines.txt").write_text("\n".join(ctx.headlines))
    return root / "run"


def test_every_target_type_runs_every_stage(run_dir: Path) -> None:
    columns = {"MSI": ["PATIENT", "MSI", "pred", "MSI_MSI", "MSI_MSS", "fold"],
               "SIGNAL_SCORE": ["PATIENT", "SIGNAL_SCORE", "pred", "fold"],
               "OS": ["PATIENT", "OS_time", "OS_event", "risk", "fold"]}
    for target, cols in columns.items():
        assert list(pd.read_csv(run_dir / "crossval" / target / "patient-preds.csv").columns) == cols
        assert (run_dir / "train" / target / "model.ckpt").is_file()
        assert (run_dir / "deploy" / target / "stats" / "metrics.csv").is_file()
        assert any((run_dir / "heatmaps" / target).glob("*/tile-scores.csv"))
        assert any((run_dir / "external" / "heatmaps" / target).glob("*/tile-scores.csv"))
    headlines = (run_dir.parent / "headlines.txt").read_text()
    assert "MSI cross-validation (held-out folds, pooled): AUROC" in headlines
    assert "SIGNAL_SCORE cross-validation (held-out folds, pooled): Pearson r" in headlines
    assert "OS cross-validation (held-out folds, pooled): C-index" in headlines
    assert "OS external validation: C-index" in headlines and "carried cut-off" in headlines


def test_the_report_shows_all_three(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text()
    for text in ("AUROC (95% CI)", "Pearson r (95% CI)", "C-index (95% CI)", "km-OS", "scatter-SIGNAL_SCORE"):
        assert text in html, text


def _headline_figure(headlines: str, target: str, what: str, name: str) -> float:
    import re

    line = next(h for h in headlines.splitlines() if h.startswith(f"{target} {what}"))
    return float(re.search(rf"{name} (-?[0-9.]+)", line).group(1))


def test_reported_figures_are_those_of_the_prediction_files(run_dir: Path) -> None:
    import numpy as np
    from lifelines.utils import concordance_index
    from sklearn.metrics import roc_auc_score

    headlines = (run_dir.parent / "headlines.txt").read_text()
    figure = {
        "MSI": ("AUROC", lambda d: roc_auc_score(d.MSI == "MSI", d.MSI_MSI)),
        "SIGNAL_SCORE": ("Pearson r", lambda d: np.corrcoef(d.SIGNAL_SCORE, d.pred)[0, 1]),
        "OS": ("C-index", lambda d: concordance_index(d.OS_time, -d.risk, d.OS_event)),
    }
    for target, (name, score) in figure.items():
        for what, folder in (("cross-validation", run_dir / "crossval" / target), ("external", run_dir / "deploy" / target)):
            preds = pd.read_csv(folder / "patient-preds.csv")
            assert _headline_figure(headlines, target, what, name) == pytest.approx(score(preds), abs=0.006), (target, what)


def test_truth_columns_are_the_planted_ones(run_dir: Path) -> None:
    for cohort, folder in (("train", "crossval"), ("external", "deploy")):
        clini = pd.read_csv(run_dir.parent / cohort / "clini.csv").set_index("PATIENT")
        for target, columns in (("MSI", {"MSI": "MSI"}), ("SIGNAL_SCORE", {"SIGNAL_SCORE": "SIGNAL_SCORE"}),
                                ("OS", {"OS_time": "OS_MONTHS", "OS_event": "OS_EVENT"})):
            preds = pd.read_csv(run_dir / folder / target / "patient-preds.csv").set_index("PATIENT")
            assert sorted(preds.index) == sorted(clini.index)
            for ours, theirs in columns.items():
                assert (preds[ours] == clini.loc[preds.index, theirs]).all(), (cohort, target, ours)


def test_survival_cut_off_is_the_median_of_risks_on_one_scale(run_dir: Path) -> None:
    import json

    oof = pd.read_csv(run_dir / "crossval" / "OS" / "patient-preds.csv")
    for folder in ("crossval", "train"):
        point = json.loads((run_dir / folder / "OS" / "operating-point.json").read_text())
        assert point["rule"] == "median risk" and point["thresholds"]["risk"] == pytest.approx(oof.risk.median())
    deployed = pd.read_csv(run_dir / "deploy" / "OS" / "patient-preds.csv")
    members = [pd.read_csv(run_dir / "deploy" / "OS" / f"fold-{k}" / "patient-preds.csv").risk for k in range(2)]
    assert deployed.risk.to_numpy() == pytest.approx(sum(m.to_numpy() for m in members) / 2)


def test_each_heatmap_shows_its_patient_held_out_prediction(run_dir: Path) -> None:
    """All three target types: the patient value a training slide's map is titled with is the out-of-fold
    prediction in patient-preds.csv, drawn by the fold that held the patient out."""
    import json

    for target, column in (("MSI", "MSI_MSI"), ("SIGNAL_SCORE", "pred"), ("OS", "risk")):
        preds = pd.read_csv(run_dir / "crossval" / target / "patient-preds.csv").set_index("PATIENT")
        drawn = [json.loads(f.read_text()) for f in sorted((run_dir / "heatmaps" / target).glob("*/heatmaps.json"))]
        assert len(drawn) == 12
        for info in drawn:
            row = preds.loc[info["patient"]]
            value = info["probabilities"]["MSI"] if target == "MSI" else info["value"]
            assert value == pytest.approx(row[column], abs=1e-5), (target, info["patient"])
            assert [m["name"] for m in info["drawn_by"]["models"]] == [f"fold-{int(row.fold)}"]
