"""Slides to external validation: tile + extract, 3-fold crossval, fold-ensemble deploy on a stain-shifted cohort, stats."""

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

SLIDE = {"width": 1536, "height": 1024}  # 768 x 512 um at 0.5 um/px
TILES = TilingSettings(tile_um=128.0, tile_px=64)
TRAIN = TrainSettings(model="attention", steps=300, min_steps=100, bag_size=128)
MIN_EXTERNAL_AUROC = 0.9  # what the demo promises on the shifted external cohort


def _features(cohort_root: Path, slides_dir: Path) -> Path:
    out = cohort_root / "features"  # tiling files land in features/coords, which cohorts must ignore
    result = extract([slides_dir], out, ExtractSettings(encoder="stain-texture", workers=0, device="cpu"), tiling=TILES)
    assert result.exit_code == 0, result.summary()
    return out


@pytest.mark.slow
def test_crossval_then_deploy_fold_ensemble_on_shifted_external_cohort(tmp_path: Path) -> None:
    internal = make_cohort(tmp_path / "internal", n_patients=18, seed=1, **SLIDE)
    external = make_cohort(tmp_path / "external", n_patients=16, seed=2, stain_shift=0.5, prefix="EXT", **SLIDE)
    train_feats = _features(internal.root, internal.slides_dir)
    ext_feats = _features(external.root, external.slides_dir)

    cohort = build_cohort(train_feats, internal.slide_table, internal.clini_table, target="MSI")
    assert len(cohort) == 18 and cohort.spec.encoder == "stain-texture"
    pooled = crossval(cohort, tmp_path / "cv", TRAIN, folds=3)
    assert sorted(pooled["fold"].unique()) == [0, 1, 2] and len(pooled) == 18
    internal_auroc = pooled_auroc(pooled, "MSI", cohort.categories)

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

    print(f"internal crossval AUROC {internal_auroc:.3f}; external fold-ensemble {head['text']}; "
          f"external per fold {per_fold['value'].round(3).tolist()}")
    assert head["ci_low"] <= head["value"] <= head["ci_high"]
    assert head["value"] >= MIN_EXTERNAL_AUROC
