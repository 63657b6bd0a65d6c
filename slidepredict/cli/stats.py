"""`slidepredict stats`: metrics, bootstrap CIs and plots from patient-preds.csv files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from slidepredict.cli._app import fail
from slidepredict.cli._settings import settings_command


@settings_command("stats")
def stats(
    preds: list[Path] = typer.Argument(
        ..., help="patient-preds.csv files: one per fold or model; several are also pooled."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for metrics.csv, confusion matrices and plots."),
    **settings: Any,
) -> None:
    """AUROC/AUPRC with bootstrap CIs, thresholded metrics, calibration and ROC/PR plots."""
    from slidepredict.core.errors import SlidePredictError
    from slidepredict.pipeline import stages

    try:
        result = stages.stats(preds, out, **settings)
    except SlidePredictError as exc:
        fail(str(exc))
        return
    for h in result.headlines.values():
        typer.echo(f"{h['target']} ({h['class']}, pooled, n={h['n']}): {h['text']}")
    typer.echo(f"Wrote {result.metrics_csv}, {len(result.confusion)} confusion matrices "
               f"and {len(result.plots)} plots to {out}")
