"""`slidepredict demo --cells`: a small drug screen end to end, offline, with a known answer.

A reference plate (living and apoptotic wells) and a screen plate (DMSO, a compound with a planted
EC50, an inert one; giant nuclei in 2.5% of a treated well's cells) are generated; then the same
``run_workflow`` a user's image-cohort config drives: nuclei are cut by the detector and embedded
with the weight-free ``stain-texture`` encoder, a ``tile-vote`` head (a well's score = the mean of
its cells' probabilities, i.e. the apoptotic share) is trained on the reference wells, the screen
plate is embedded with the reference's intensity range and scored against its DMSO wells, its
cells are clustered, and one report shows it all.
"""

from __future__ import annotations

from pathlib import Path

from slidepredict.config import RunConfig, parse_config
from slidepredict.pipeline.run import RunContext, run_workflow

TARGET, SCORE = "MODE", "apoptotic"


def cells_demo_config(out: Path, data: Path) -> RunConfig:
    """The demo's settings, as a user's config would give them (``out/config.yaml`` holds a copy)."""
    raw = {
        "output_dir": str(out / "run"),
        "extract": {"encoder": "stain-texture", "workers": 0},
        "cells": {"images": str(data / "reference"), "table": str(data / "reference.csv"), "unit": "nuclei",
                  "unit_size": 48, "bag": "well"},
        # the screen needs the final model only; `crossval: true` adds a held-out check of the reference wells
        "training": {"targets": [TARGET], "model": "tile-vote", "crossval": False},
        "deploy": {"slides_dir": str(data / "screen"), "slide_table": str(data / "screen.csv")},
        "screen": {"score_class": SCORE, "control": "DMSO"},
        "clusters": {"sample": "WELL", "group": "CONTROL"},
        "report": {"title": "slidepredict demo: a generated drug screen"},
    }
    return parse_config(raw, "cells demo configuration")


def run_cells_demo(out: str | Path = "demo-cells") -> RunContext:
    """Generate both plates (once), run the workflow and add the planted truth to the headlines."""
    import pandas as pd

    from slidepredict.config.loader import to_yaml
    from slidepredict.core.atomic import write_text_atomic
    from slidepredict.demo.screen import ScreenSpec, make_screen
    from slidepredict.layout import RunLayout

    out = Path(out).resolve()
    spec, data = ScreenSpec(), out / "data"
    if not (data / "screen.csv").is_file():  # written last by make_screen
        make_screen(data, spec)
    cfg = cells_demo_config(out, data)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", to_yaml(cfg))
    ctx = run_workflow(cfg)
    layout = RunLayout(cfg.output_dir)
    fits = pd.read_csv(layout.screen() / "dose-response.csv").set_index("COMPOUND")
    for compound, row in fits.iterrows():
        fitted = (f"EC50 {row['ec50']:.2g} uM (95% CI {row['ec50_ci_low']:.2g}-{row['ec50_ci_high']:.2g})"
                  if row["fit"] == "ok" else str(row["fit"]))
        planted = f"planted {spec.ec50:g} uM" if compound == "HIT" else "planted: inert"
        ctx.headlines.append(f"  {compound}: {fitted}; {planted}")
    table = pd.read_csv(layout.clusters() / "clusters.csv")
    enriched = table[table.fdr < cfg.clusters.alpha] if cfg.clusters else table.iloc[:0]
    clus = ctx.results["clusters_result"]
    ctx.headlines.append(f"Clusters: {clus['k']} over {clus['units']} cells; enriched: " + (", ".join(
        f"cluster {int(r.cluster)} ({r.share_of_units:.0%} of cells) in {r.enriched_in}, FDR {r.fdr:.2g}"
        for r in enriched.itertuples()) or "none") + f"; planted: giant nuclei in {spec.rare_share:.1%} of treated cells")
    ctx.headlines.append(f"Rerun or edit: slidepredict run {out / 'config.yaml'}")
    return ctx
