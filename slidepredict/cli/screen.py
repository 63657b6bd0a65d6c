"""`slidepredict screen`: per-well scores, hits and dose-response curves of a plate screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from slidepredict.cli._app import fail
from slidepredict.cli._settings import settings_command


@settings_command("screen")
def screen(
    preds: Path = typer.Argument(..., help="patient-preds.csv of crossval or deploy on an image cohort (one row per bag)."),
    bags: Path = typer.Option(..., "--bags", help="bags.csv written by `slidepredict cells` (the plate map)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for wells.csv, hits.csv, dose-response and plate maps."),
    **settings: Any,
) -> None:
    """Score every well, normalise each plate to its negative controls (robust z, SSMD), list hits, fit EC50s."""
    from slidepredict.core.errors import SlidePredictError
    from slidepredict.pipeline import stages

    try:
        res = stages.screen(preds, bags, out, **settings)
    except SlidePredictError as exc:
        fail(str(exc))
    found = f": {', '.join(res['compounds_hit'])}" if res["hits"] else ""
    typer.echo(f"{res['wells']} wells ({res['controls']} controls), {res['hits']} hit(s){found}; tables in {out}")
