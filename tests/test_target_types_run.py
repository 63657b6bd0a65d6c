"""`run` end to end with a categorical, a continuous and a survival target in one config (learning not judged)."""

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
        "heatmaps": {"max_slides": 1, "topk": 0, "thumb_px": 256},
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
