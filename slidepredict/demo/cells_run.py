"""`slidepredict demo --cells`: a small drug screen end to end, offline, with a known answer.

A reference plate (living and apoptotic wells) and a screen plate (DMSO, a compound with a planted
EC50, an inert one) are generated; nuclei are cut by the detector and embedded with the
weight-free ``stain-texture`` encoder (the screen with the reference's intensity range); a
``tile-vote`` head (a well's score = the mean of its cells' probabilities, i.e. the apoptotic
share) is trained on the reference wells and deployed on the screen; the screen is scored against
its DMSO wells, and its cells are clustered to find the populations the treatment enriches; one report shows it
all. The same stage functions the commands call do the work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slidepredict.config import RunConfig, parse_config

log = logging.getLogger("slidepredict")
TARGET, SCORE = "MODE", "apoptotic"


@dataclass
class CellsDemo:
    """What the demo wrote and its headline lines."""

    out: Path
    headlines: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)


def cells_demo_config(out: Path, reference: Path, images: Path) -> RunConfig:
    """The demo's settings, as a user's config would give them."""
    raw = {
        "output_dir": str(out / "run"),
        "cohort": {"slides_dir": str(images), "patient_col": "BAG"},
        "extract": {"encoder": "stain-texture", "workers": 0},
        "cells": {"images": str(images), "table": str(reference), "unit": "nuclei", "unit_size": 48, "bag": "well"},
        "training": {"targets": [TARGET], "model": "tile-vote"},
        "screen": {"score_class": SCORE, "control": "DMSO"},
        "clusters": {"sample": "WELL", "group": "CONTROL"},
    }
    return parse_config(raw, "cells demo configuration")


def run_cells_demo(out: str | Path = "demo-cells") -> CellsDemo:
    """Generate both plates, then cells -> train -> deploy -> screen -> clusters; returns the headlines."""
    import json

    import pandas as pd

    from slidepredict.cells.extract import NORM_FILE
    from slidepredict.demo.screen import ScreenSpec, make_screen
    from slidepredict.pipeline import stages

    out = Path(out).resolve()
    spec = ScreenSpec()
    data = out / "data"
    made = make_screen(data, spec) if not (data / "screen.csv").is_file() else None
    cfg = cells_demo_config(out, data / "reference.csv", data / "reference")
    assert cfg.cells and cfg.training and cfg.screen and cfg.clusters  # set above
    run = out / "run"
    stages.cells(run / "reference", cfg.cells, cfg.extract)
    ranges = json.loads((run / "reference" / NORM_FILE).read_text())["ranges"]
    screen_cells = cfg.cells.model_copy(update={"images": data / "screen", "table": data / "screen.csv",
                                                "intensity_range": [v for pair in ranges for v in pair]})
    stages.cells(run / "screen", screen_cells, cfg.extract)
    ref_bags, scr_bags = run / "reference" / "bags.csv", run / "screen" / "bags.csv"
    train_cohort = cfg.cohort.model_copy(update={"clini_table": ref_bags, "slide_table": ref_bags})
    stages.train(run / "reference" / "features", run / "model", train_cohort, cfg.training)
    deploy_cfg = parse_config({"output_dir": str(run), "cohort": {"slides_dir": str(data)},
                               "deploy": {"slides_dir": str(data / "screen"), "slide_table": str(scr_bags)}},
                              "cells demo deployment").deploy
    assert deploy_cfg is not None
    dep = stages.deploy([run / "model" / TARGET / "model.ckpt"], run / "screen" / "features", run / "deploy",
                        cfg.cohort, deploy_cfg, cfg.training, cfg.stats)
    res = stages.screen(dep.preds, scr_bags, run / "hits", cfg.screen, screen_cells)
    clus = stages.clusters(run / "screen" / "features", scr_bags, data / "screen", run / "clusters", cfg.clusters)
    report = stages.report(run, cfg.report)
    fits = pd.read_csv(run / "hits" / "dose-response.csv").set_index("COMPOUND")
    demo = CellsDemo(out, results={"screen": res, "clusters": clus, "report": report, "generated": made is not None})
    demo.headlines.append(f"Screen: {res['wells']} wells ({res['controls']} DMSO), {res['hits']} hit(s) among compound-doses: {', '.join(res['compounds_hit']) or 'none'}")
    for compound, row in fits.iterrows():
        fitted = (f"EC50 {row['ec50']:.2g} uM (95% CI {row['ec50_ci_low']:.2g}-{row['ec50_ci_high']:.2g})"
                  if row["fit"] == "ok" else str(row["fit"]))
        planted = f"planted {spec.ec50:g} uM" if compound == "HIT" else "planted: inert"
        demo.headlines.append(f"  {compound}: {fitted}; {planted}")
    enriched = pd.read_csv(run / "clusters" / "clusters.csv")
    enriched = enriched[enriched.fdr < cfg.clusters.alpha]
    demo.headlines.append(f"Clusters: {clus['k']} over {clus['units']} cells; enriched: " + (", ".join(
        f"cluster {int(r.cluster)} ({r.share_of_units:.0%} of cells) in {r.enriched_in}, FDR {r.fdr:.2g}"
        for r in enriched.itertuples()) or "none"))
    demo.headlines.append(f"Outputs: {run} (hits/, clusters/, deploy/patient-preds.csv)")
    return demo
