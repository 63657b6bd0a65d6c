"""`slidepredict tile`: tissue detection and tile coordinates for slides or folders of slides."""

from __future__ import annotations

from pathlib import Path

import typer

from slidepredict.cli._app import app, config_option, fail


@app.command()
def tile(
    config: Path = config_option(),
    slides: list[Path] = typer.Argument(..., help="Slide files or folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: <stem>.h5 per slide, qc/<stem>.png."),
    tile_um: float = typer.Option(256.0, "--tile-um", help="Tile edge in microns."),
    tile_px: int = typer.Option(224, "--tile-px", help="Tile edge in pixels after resizing (for the encoder)."),
    min_tissue: float = typer.Option(0.5, "--min-tissue", help="Keep tiles with at least this tissue fraction."),
    mpp: float = typer.Option(
        None, "--mpp", help="Microns per pixel for slides whose file does not record it (e.g. 0.25 at 40x)."
    ),
    no_qc: bool = typer.Option(False, "--no-qc", help="Do not write QC thumbnails."),
    shard: str = typer.Option(None, "--shard", help="Only every N-th slide starting at i (i/N), for job arrays."),
) -> None:
    """Find tissue and write the level-0 coordinates of the kept tiles, one h5 per slide."""
    from slidepredict.batch import select_shard
    from slidepredict.errors import SlidePredictError
    from slidepredict.slide import find_slides
    from slidepredict.tiling import TilingParams, tile_many

    try:
        params = TilingParams(tile_um=tile_um, tile_px=tile_px, min_tissue=min_tissue)
        paths = select_shard(find_slides(slides, required=True), shard)
        result = tile_many(paths, out, params, mpp=mpp, qc=not no_qc)
    except SlidePredictError as exc:
        fail(str(exc))
    for slide, reason in result.failed:
        typer.secho(f"FAILED {slide}: {reason}", fg=typer.colors.RED, err=True)
    typer.echo(f"Tiling into {out}: {result.summary()}")
    raise typer.Exit(result.exit_code)
