"""`slidepredict extract` and `slidepredict encoders`: feature files per slide, and the encoder list."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from slidepredict.cli._app import app, fail, report_batch
from slidepredict.cli._settings import settings_command


@settings_command("extract")
def extract(
    slides: list[Path] = typer.Argument(..., help="Slide files or folders of slides."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for <slide>.h5 feature files."),
    coords: Optional[Path] = typer.Option(
        None, help="Folder of tiling files (<slide>.h5 with coords); slides without one are tiled there. "
        "Default: OUT/coords.",
    ),
    shard: Optional[str] = typer.Option(None, help="i/N: process every N-th slide starting at i (SLURM arrays)."),
    **settings: Any,
) -> None:
    """Embed every tile of each slide with an encoder; tiles the slide first if needed."""
    from slidepredict.core.errors import SlidePredictError
    from slidepredict.pipeline import stages

    try:
        result = stages.extract(slides, out, coords=coords, shard=shard, **settings)
    except SlidePredictError as exc:
        fail(str(exc))
    report_batch(result, f"Features in {out}")


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
