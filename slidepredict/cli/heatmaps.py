"""`slidepredict heatmaps`: overlays, top tiles and QuPath files per slide from a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from slidepredict.cli._app import fail, report_batch
from slidepredict.cli._settings import settings_command


@settings_command("heatmaps")
def heatmaps(
    model: list[Path] = typer.Option(
        ..., "--model", "-m",
        help="Checkpoint, or a crossval folder: each patient is drawn by the fold model that held it out "
             "(patients no fold saw: all folds, averaged). Repeat to give several checkpoints.",
    ),
    features: Path = typer.Option(..., "--features", help="Folder of <slide>.h5 feature files made with the model's encoder."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder; one sub-folder per slide."),
    **settings: Any,
) -> None:
    """Per-tile attention and class scores: tile-scores.csv, overlays, top tiles, GeoJSON and OME-TIFF for QuPath."""
    from slidepredict.core.errors import SlidePredictError
    from slidepredict.pipeline import stages

    try:
        run = stages.heatmaps(model, features, out, **settings)
    except SlidePredictError as exc:
        fail(str(exc))
    report_batch(run.result, f"Heatmaps in {out}")
