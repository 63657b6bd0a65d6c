"""`slidepredict clusters`: sub-populations of cells (or tiles) and the groups they are enriched in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from slidepredict.cli._app import fail
from slidepredict.cli._settings import settings_command


@settings_command("clusters")
def clusters(
    features: Path = typer.Option(..., "--features", help="features/ folder written by `slidepredict cells`."),
    bags: Path = typer.Option(..., "--bags", help="bags.csv written by `slidepredict cells`."),
    images: Path = typer.Option(..., "--images", help="The image folder (for the montage of example cells)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for clusters.csv, fractions.csv, units.csv.gz, montage.png."),
    **settings: Any,
) -> None:
    """Cluster unit embeddings, compare each cluster's share between two groups, flag rare enriched clusters."""
    from slidepredict.core.errors import SlidePredictError
    from slidepredict.pipeline import stages

    try:
        res = stages.clusters(features, bags, images, out, **settings)
    except SlidePredictError as exc:
        fail(str(exc))
    rare = "; ".join(f"cluster {c} ({share:.1%} of units) enriched in {g}, FDR {fdr:.2g}" for c, share, g, fdr in res["rare"])
    typer.echo(f"{res['units']} units in {res['k']} clusters; rare enriched: {rare or 'none'}; tables in {out}")
