"""`slidepredict demo --cells` (slow): generated plates end to end, judged against what was planted.

`run` on an image-cohort config: cells -> train on the reference wells -> deploy on the screen -> screen
-> clusters -> report. The screen is embedded with the reference cohort's intensity range
(normalisation.json), so a cell looks the same on both plates; the well score then follows the planted apoptotic share, the planted compound is
the hit with its EC50 within 2x, and the giant nuclei planted in treated wells (2% of all cells)
come out as a rare cluster enriched in treated wells.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from slidepredict.cli import app
from slidepredict.demo.screen import ScreenSpec, make_screen


@pytest.mark.slow
def test_cells_demo_finds_the_planted_hit_and_rare_population(tmp_path: Path) -> None:
    made = make_screen(tmp_path / "demo" / "data", ScreenSpec())  # the demo reuses generated plates
    res = CliRunner().invoke(app, ["demo", "--cells", "--out", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.output
    run = tmp_path / "demo" / "run"
    assert "Screen: 40 wells (8 controls), " in res.output and "among compound-doses: HIT" in res.output
    assert "planted 0.8 uM" in res.output and "INERT: EC50 undetermined" in res.output
    fits = pd.read_csv(run / "screen" / "dose-response.csv").set_index("COMPOUND")
    assert fits.loc["HIT", "fit"] == "ok" and 0.5 <= fits.loc["HIT", "ec50"] / 0.8 <= 2.0
    hits = pd.read_csv(run / "screen" / "hits.csv")
    assert hits[hits.hit].COMPOUND.eq("HIT").all() and hits[hits.hit].shape[0] >= 3
    wells = pd.read_csv(run / "screen" / "wells.csv").set_index("WELL")
    share = pd.Series(made.share)
    assert np.corrcoef(wells.loc[share.index, "score"], share)[0, 1] > 0.95  # the score follows the planted share
    clusters = pd.read_csv(run / "clusters" / "clusters.csv")
    rare = clusters[clusters.rare_enriched]
    assert len(rare) == 1 and rare.enriched_in.iloc[0] == "treated" and rare.fdr.iloc[0] < 0.05
    assert rare.share_of_units.iloc[0] < 0.05
    assert f"cluster {int(rare.cluster.iloc[0])} (" in res.output
    for name in ("plate-S1-score.png", "plate-S1-robust_z.png", "dose-response.png"):
        assert (run / "screen" / name).is_file(), sorted(p.name for p in (run / "screen").iterdir())
    assert (run / "clusters" / "montage.png").is_file()
    html = (run / "report.html").read_text()
    assert f"Report: {run / 'report.html'}" in res.output
    assert f"slidepredict run {tmp_path / 'demo' / 'config.yaml'}" in res.output  # the config it ran, to edit
    assert '<section id="screen">' in html and '<section id="clusters">' in html
