"""`slidepredict extract` and `slidepredict encoders`: feature files per slide, and the encoder list."""

from __future__ import annotations

from pathlib import Path

import typer

from slidepredict.cli._app import app, config_option, fail


@app.command()
def extract(
    config: Path = config_option(),
    slides: list[Path] = typer.Argument(..., help="Slide files or folders of slides."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for <slide>.h5 feature files."),
    encoder: str = typer.Option("resnet50-trunc", "--encoder", "-e", help="Encoder name (see `slidepredict encoders`)."),
    weights: str | None = typer.Option(
        None, help="Weights: a .safetensors/.bin/.pth FILE, local-dir:FOLDER, or `random` (tests only). "
        "Default: the Hugging Face cache (honours HF_HUB_OFFLINE).",
    ),
    coords: Path | None = typer.Option(
        None, help="Folder of tiling files (<slide>.h5 with coords); slides without one are tiled there. "
        "Default: OUT/coords.",
    ),
    tile_um: float = typer.Option(256.0, help="Tile edge in microns."),
    tile_px: int | None = typer.Option(None, help="Tile edge in pixels fed to the encoder (default: its input size)."),
    min_tissue: float = typer.Option(0.5, help="Minimum tissue fraction of a kept tile (when tiling)."),
    batch_size: int = typer.Option(64, help="Tiles per forward pass."),
    workers: int | None = typer.Option(
        None, help="DataLoader processes decoding tiles (0: decode in the main process; default: auto by device and cores)."
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    precision: str = typer.Option("auto", help="auto | fp32 | bf16 | fp16 (auto: bf16 where the hardware has it)."),
    dtype: str = typer.Option("float32", help="Stored feature type: float32 | float16."),
    stain_norm: str = typer.Option("none", help="none | macenko."),
    stain_ref: Path | None = typer.Option(None, help="Reference H&E image for --stain-norm macenko (default: standard vectors)."),
    shard: str | None = typer.Option(None, help="i/N: process every N-th slide starting at i (SLURM arrays)."),
    mpp: float | None = typer.Option(None, help="Microns per pixel for slides whose files lack it."),
) -> None:
    """Embed every tile of each slide with an encoder; tiles the slide first if needed."""
    from slidepredict.errors import SlidePredictError
    from slidepredict.features import ExtractParams, get_encoder
    from slidepredict.features import extract as run_extract
    from slidepredict.tiling import TilingParams

    try:
        px = tile_px if tile_px is not None else get_encoder(encoder).input_px
        result = run_extract(
            slides, out, encoder, weights=weights, coords_dir=coords, shard=shard, mpp=mpp,
            tiling=TilingParams(tile_um=tile_um, tile_px=px, min_tissue=min_tissue),
            params=ExtractParams(batch_size=batch_size, workers=workers, device=device, precision=precision, features_dtype=dtype),
            stain_norm=stain_norm, stain_ref=stain_ref,
        )
    except SlidePredictError as exc:
        fail(str(exc))
        return
    for slide, reason in result.failed:
        typer.secho(f"FAILED {slide}: {reason}", fg=typer.colors.RED, err=True)
    typer.echo(f"Features in {out}: {result.summary()}")
    raise typer.Exit(result.exit_code)


@app.command()
def encoders() -> None:
    """List the registered encoders, their embedding size, weights source and whether weights are here."""
    from rich.console import Console
    from rich.table import Table

    from slidepredict.features import get_encoder, list_encoders, weight_status
    from slidepredict.features._weights import hf_cache_dir

    table = Table(title=f"Encoders (Hugging Face cache: {hf_cache_dir()})")
    for col in ("name", "dim", "status", "weights (pinned revision)", "licence"):
        table.add_column(col, overflow="fold")
    for name in list_encoders():
        cfg = get_encoder(name)
        table.add_row(name, str(cfg.dim), weight_status(cfg), cfg.hub_ref, cfg.license)
    Console().print(table)
