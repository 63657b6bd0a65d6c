"""`slidepredict report`: one self-contained HTML page for a run folder."""

from __future__ import annotations

from pathlib import Path

import typer

from slidepredict.cli._app import app, config_option


@app.command()
def report(
    config: Path = config_option(),
    run_dir: Path = typer.Argument(..., help="Run folder (from `run`, `crossval`, `deploy`, `stats`, `heatmaps`)."),
    out: Path = typer.Option(None, "--out", help="Where to write the page (default RUN_DIR/report.html)."),
    title: str = typer.Option(None, "--title", help="Page title."),
) -> None:
    """Write an HTML report: cohort, metrics with CIs, plots, predictions, heatmap thumbnails."""
    from slidepredict.report import build_report

    path = build_report(run_dir, out=out, title=title)
    typer.echo(f"Report: {path}")
