"""`slidepredict stats`: metrics, bootstrap CIs and plots from patient-preds.csv files."""

from __future__ import annotations

from pathlib import Path

import typer

from slidepredict.cli._app import app, config_option, fail


@app.command()
def stats(
    config: Path = config_option(),
    preds: list[Path] = typer.Argument(
        ..., help="patient-preds.csv files: one per fold or model; several are also pooled."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for metrics.csv, confusion matrices and plots."),
    n_bootstrap: int = typer.Option(1000, help="Patient-level bootstrap resamples for CIs (0: no CIs)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap, for reproducible CIs."),
    ci: float = typer.Option(0.95, help="Confidence level of the intervals."),
    positive: str | None = typer.Option(
        None, help="Class plotted and headlined for binary targets (default: the rarer class)."
    ),
) -> None:
    """AUROC/AUPRC with bootstrap CIs, thresholded metrics, calibration and ROC/PR plots."""
    from slidepredict.errors import SlidePredictError
    from slidepredict.stats import compute_stats

    try:
        result = compute_stats(preds, out, n_bootstrap=n_bootstrap, seed=seed, ci=ci, positive=positive)
    except SlidePredictError as exc:
        fail(str(exc))
        return
    for h in result.headlines.values():
        typer.echo(f"{h['target']} ({h['class']}, pooled, n={h['n']}): {h['text']}")
    typer.echo(f"Wrote {result.metrics_csv}, {len(result.confusion)} confusion matrices "
               f"and {len(result.plots)} plots to {out}")
