"""`slidepredict compare`: paired AUROC comparison of models on the same patients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from slidepredict.cli._app import fail
from slidepredict.cli._settings import settings_command


@settings_command("compare")
def compare(
    preds: list[Path] = typer.Argument(
        ..., help="patient-preds.csv of each model (crossval, deploy or baseline), all on the same patients."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for comparison.csv and the ROC plot."),
    **settings: Any,
) -> None:
    """Is one model better than another? Paired AUROC difference: DeLong's test and a paired bootstrap CI."""
    from slidepredict.core.errors import SlidePredictError
    from slidepredict.pipeline import stages
    from slidepredict.stats.compare import COMPARISON_CSV, describe

    try:
        table = stages.compare(preds, out, **settings)
    except SlidePredictError as exc:
        fail(str(exc))
        return
    for _, row in table.iterrows():
        typer.echo(describe(row))
    typer.echo(f"Wrote {out / COMPARISON_CSV} and the ROC plot to {out}")
