"""The one-command paths a newcomer uses: `demo`, `run` and the Snakemake workflow (slow)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slidepredict.demo.run import DemoSize, demo_config, run_demo

ROOT = Path(__file__).resolve().parents[1]
SMALL = DemoSize(train_patients=12, external_patients=10, folds=3, steps=60)


@pytest.mark.slow
def test_demo_runs_every_stage_and_says_what_its_numbers_are(tmp_path: Path) -> None:
    """Every stage on the demo's realistic cohort; learning itself is judged in test_end_to_end (more patients)."""
    ctx = run_demo(tmp_path / "demo", SMALL)
    assert set(ctx.results) == {"tile", "extract", "crossval", "train", "deploy", "screen", "clusters", "heatmaps", "report"}
    assert ctx.results["screen"] is None and ctx.results["clusters"] is None  # image-cohort stages: not configured
    crossval = [h for h in ctx.headlines if "cross-validation (held-out folds, pooled)" in h]
    assert len(crossval) == 1
    assert "95% CI" in crossval[0] and "per fold" in crossval[0] and " +- " in crossval[0]
    assert "mean-pool + logistic regression, same folds: AUROC" in crossval[0]
    assert "; Brier 0." in crossval[0] and ", calibration error 0." in crossval[0]  # probabilities, not only ranks
    external = [h for h in ctx.headlines if "external validation" in h]
    assert len(external) == 1 and "95% CI" in external[0] and "; Brier 0." in external[0]
    report = ctx.results["report"]
    html = Path(report).read_text()
    assert "Heatmaps" in html and "Performance" in html and "Cohort" in html
    # a rerun finds everything complete
    again = run_demo(tmp_path / "demo", SMALL)
    assert again.results["tile"] == "0 done, 12 already complete, 0 failed"
    assert again.results["extract"] == "0 done, 12 already complete, 0 failed"


@pytest.mark.slow
def test_snakemake_workflow_runs_the_demo_cohort(tmp_path: Path) -> None:
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    if not Path(snakemake).exists():
        pytest.skip("snakemake is not installed (pip install -e '.[workflows]')")
    cfg = demo_config(tmp_path / "demo", DemoSize(train_patients=8, external_patients=6, folds=2, steps=20))
    data = cfg.model_dump(mode="json")
    data["heatmaps"]["max_slides"] = 1
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    cmd = [snakemake, "-s", str(ROOT / "workflows" / "Snakefile"), "--cores", "2", "--config", f"cfg={cfg_path}",
           "--directory", str(tmp_path), "--quiet", "all"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    run = Path(data["output_dir"])
    assert len(list((run / "features").glob("*.h5"))) == 8
    assert len(list((run / "tiles").glob("*.h5"))) == 8
    assert len(list((run / "crossval" / "MSI").glob("fold-*/model.ckpt"))) == 2
    assert (run / "crossval" / "MSI" / "patient-preds.csv").is_file()
    assert (run / "deploy" / "MSI" / "patient-preds.csv").is_file()
    assert (run / "report.html").is_file()


@pytest.mark.slow
def test_snakemake_workflow_embeds_an_image_cohort_plate_by_plate(tmp_path: Path) -> None:
    """A cells: config: one job per training plate and per deploy: plate, then `run` trains, deploys and reports."""
    import pandas as pd

    from slidepredict.demo.cells import CellImageSpec, make_cell_images

    snakemake = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    if not Path(snakemake).exists():
        pytest.skip("snakemake is not installed (pip install -e '.[workflows]')")
    ref = make_cell_images(tmp_path / "ref", CellImageSpec(wells=("A01", "A02", "B01", "B02", "C01", "C02")))
    table = pd.read_csv(ref.table)
    table.assign(PLATE=["R1"] * 6 + ["R2"] * 6).to_csv(ref.table, index=False)
    scr = make_cell_images(tmp_path / "scr", CellImageSpec(wells=("D01", "D02", "E01", "E02"), seed=4))
    pd.read_csv(scr.table).assign(PLATE="S1").to_csv(scr.table, index=False)
    run = tmp_path / "run"
    config = {"output_dir": str(run), "extract": {"encoder": "stain-texture"},
              "cells": {"images": str(ref.root / "images"), "table": str(ref.table), "unit": "tiles", "unit_size": 128},
              "training": {"targets": ["LABEL"], "model": "tile-vote", "crossval": False, "steps": 40, "min_steps": 20,
                           "restarts": 1, "bag_size": 64},
              "deploy": {"slides_dir": str(scr.root / "images"), "slide_table": str(scr.table)}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [snakemake, "-s", str(ROOT / "workflows" / "Snakefile"), "--cores", "2", "--config",
           f"cfg={tmp_path / 'config.yaml'}", "--directory", str(tmp_path), "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert sorted(p.name for p in (run / "cells" / "plates").iterdir()) == ["R1.done", "R2.done"]
    assert sorted(p.name for p in (run / "external" / "cells" / "plates").iterdir()) == ["S1.done"]
    assert len(list((run / "cells" / "features").glob("*.h5"))) == 12
    assert len(list((run / "external" / "cells" / "features").glob("*.h5"))) == 8
    assert (run / "external" / "cells" / "normalisation.json").read_text().split('"ranges"')[1] == \
        (run / "cells" / "normalisation.json").read_text().split('"ranges"')[1]  # the screen embedded like training
    assert len(pd.read_csv(run / "deploy" / "LABEL" / "patient-preds.csv")) == 8
    assert (run / "report.html").is_file()
    log = (run / "run.log").read_text()
    assert "stage extract: 0 done, 12 already complete" in log  # run re-embedded nothing the plate jobs made
