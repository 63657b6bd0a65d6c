"""`slidepredict tile`: tissue detection and tile coordinates for slides or folders of slides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from slidepredict.cli._app import fail, report_batch
from slidepredict.cli._settings import settings_command


@settings_command("tile")
def tile(
    slides: list[Path] = typer.Argument(..., help="Slide files or folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: <stem>.h5 per slide, qc/<stem>.png."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Only every N-th slide starting at i (i/N), for job arrays."),
    **settings: Any,
) -> None:
    """Find tissue and write the level-0 coordinates of the kept tiles, one h5 per slide."""
    from slidepredict.core.errors import SlidePredictError
    from slidepredict.pipeline import stages

    try:
        result = stages.tile(slides, out, shard=shard, **settings)
    except SlidePredictError as exc:
        fail(str(exc))
    report_batch(result, f"Tiling into {out}")
