"""Slides to external validation: tile + extract, 3-fold crossval, fold-ensemble deploy on a stain-shifted cohort, stats.

The cohorts are the realistic kind (demo/synthetic.py): the signal is nuclear morphology in about
7% of a positive patient's tiles, and slide-mean colour does not give it away, so mean pooling
fails where the MIL head must not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from slidepredict.cli import app
from slidepredict.cohort import build_cohort
from slidepredict.features import ExtractSettings, extract
from slidepredict.demo.synthetic import make_cohort
from slidepredict.tiling import TilingSettings
from slidepredict.training import TrainSettings, crossval, pooled_auroc
from slidepredict.training.folds import baseline_auroc

TILES = TilingSettings(tile_um=128.0, tile_px=128)  # 1 um/px: nuclear size is visible
TRAIN = TrainSettings(model="attention")  # the default recipe
MIN_AUROC = 0.85
MIN_MARGIN = 0.2  # over the mean-pool baseline on the same folds


def _features(cohort_root: Path, slides_dir: Path) -> Path:
    out = cohort_root / "features"  # tiling files land in features/coords, which cohorts must ignore
    result = extract([slides_dir], out, ExtractSettings(encoder="stain-texture", workers=0, device="cpu"), tiling=TILES)
    assert result.exit_code == 0, result.summary()
    return out


@pytest.mark.slow
def test_crossval_then_deploy_fold_ensemble_on_shifted_external_cohort(tmp_path: Path) -> None:
    internal = make_cohort(tmp_path / "internal", n_patients=30, seed=1)
    external = make_cohort(tmp_path / "external", n_patients=16, seed=2, stain_shift=0.3, prefix="EXT")
    train_feats = _features(internal.root, internal.slides_dir)
    ext_feats = _features(external.root, external.slides_dir)

    cohort = build_cohort(train_feats, internal.slide_table, internal.clini_table, target="MSI")
    assert len(cohort) == 30 and cohort.spec.encoder == "stain-texture"
    pooled = crossval(cohort, tmp_path / "cv", TRAIN, folds=3, baseline="mean-pool")
    assert sorted(pooled["fold"].unique()) == [0, 1, 2] and len(pooled) == 30
    internal_auroc = pooled_auroc(pooled, "MSI", cohort.categories)
    reference = baseline_auroc(tmp_path / "cv", "mean-pool", "MSI")

    out = tmp_path / "deploy"
    runner = CliRunner()
    res = runner.invoke(app, [
        "deploy", "--model", str(tmp_path / "cv"), "--features", str(ext_feats), "--clini", str(external.clini_table),
        "--slides-table", str(external.slide_table), "--out", str(out), "--n-bootstrap", "200", "--positive", "MSI",
    ])
    assert res.exit_code == 0, res.output
    for k in range(3):
        assert (out / f"fold-{k}" / "patient-preds.csv").is_file()
    preds = pd.read_csv(out / "patient-preds.csv")
    assert len(preds) == 16 and set(preds["model"]) == {"ensemble"}
    summary = json.loads((out / "deploy-summary.json").read_text())
    assert summary["training_overlap"] == {} and [m["name"] for m in summary["models"]] == ["fold-0", "fold-1", "fold-2"]
    head = summary["stats"]["headline"]
    assert (out / "stats" / "metrics.csv").is_file() and any((out / "stats").glob("*.png"))
    assert f"MSI (MSI, n=16): {head['text']}" in res.output

    folds = runner.invoke(app, ["stats", *[str(out / f"fold-{k}" / "patient-preds.csv") for k in range(3)],
                                "--out", str(tmp_path / "fold-stats"), "--n-bootstrap", "0"])
    assert folds.exit_code == 0, folds.output
    table = pd.read_csv(tmp_path / "fold-stats" / "metrics.csv")
    per_fold = table[(table["metric"] == "auroc") & (table["class"] == "MSI") & (table["group"] != "pooled")]
    assert len(per_fold) == 3

    print(f"internal crossval AUROC {internal_auroc:.3f} (mean-pool baseline {reference:.3f}); external fold-ensemble "
          f"{head['text']}; external per fold {per_fold['value'].round(3).tolist()}")
    assert head["ci_low"] <= head["value"] <= head["ci_high"]
    assert internal_auroc >= MIN_AUROC and internal_auroc >= reference + MIN_MARGIN
    assert head["value"] >= MIN_AUROC
