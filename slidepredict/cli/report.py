"""`slidepredict report`: one self-contained HTML page for a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from slidepredict.cli._app import fail
from slidepredict.cli._settings import settings_command


@settings_command("report")
def report(
    run_dir: Path = typer.Argument(..., help="Run folder (from `run`, `crossval`, `deploy`, `stats`, `heatmaps`)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write the page (default RUN_DIR/report.html)."),
    **settings: Any,
) -> None:
    """Write an HTML report: cohort, metrics with CIs, plots, predictions, heatmap thumbnails."""
    from slidepredict.core.errors import SlidePredictError
    from slidepredict.pipeline import stages

    try:
        path = stages.report(run_dir, out=out, **settings)
    except SlidePredictError as exc:
        fail(str(exc))
    typer.echo(f"Report: {path}")
