"""`slidepredict heatmaps`: overlays, top tiles and QuPath files per slide from a trained model."""

from __future__ import annotations

from pathlib import Path

import typer

from slidepredict.cli._app import app, config_option, fail


@app.command()
def heatmaps(
    config: Path = config_option(),
    model: Path = typer.Option(..., "--model", "-m", help="Model checkpoint (model.ckpt from `train` or a crossval fold)."),
    slides: Path = typer.Option(..., "--slides", help="Folder of slides (searched recursively)."),
    features: Path = typer.Option(..., "--features", help="Folder of <slide>.h5 feature files made with the model's encoder."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder; one sub-folder per slide."),
    slide: list[str] = typer.Option([], "--slide", help="Only this slide (name with or without extension); repeatable."),
    topk: int = typer.Option(8, help="Top and bottom tiles saved per class (0: none)."),
    mpp: float | None = typer.Option(None, help="Microns per pixel for slides whose files lack it (default: the feature file's)."),
    thumb_px: int = typer.Option(2048, help="Long side of the overlay thumbnails in pixels."),
    device: str = typer.Option("cpu", help="cpu | cuda."),
    slides_table: Path | None = typer.Option(
        None, "--slides-table", help="Slide table (PATIENT, FILENAME): titles then show the patient's prediction over all its slides."
    ),
    patient_col: str = typer.Option("PATIENT", "--patient-col", help="Patient column of the slide table."),
    filename_col: str = typer.Option("FILENAME", "--filename-col", help="Slide file column of the slide table."),
) -> None:
    """Per-tile attention and class scores: tile-scores.csv, overlays, top tiles, GeoJSON and OME-TIFF for QuPath."""
    from slidepredict.errors import SlidePredictError
    from slidepredict.heatmaps import HeatmapParams, run_heatmaps

    try:
        params = HeatmapParams(topk=topk, thumb_px=thumb_px, mpp=mpp)
        run = run_heatmaps(model, slides, features, out, slides=slide or None, params=params, device=device,
                           slide_table=slides_table, patient_col=patient_col, filename_col=filename_col)
    except SlidePredictError as exc:
        fail(str(exc))
        return
    typer.echo(f"Heatmaps in {out}: {run.result.summary()}")
    raise typer.Exit(run.result.exit_code)
