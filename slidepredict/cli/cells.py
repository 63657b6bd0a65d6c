"""`slidepredict cells`: feature files for a cohort of microscopy images (whole images, tiles or single cells)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from slidepredict.cli._app import fail, report_batch
from slidepredict.cli._settings import settings_command


@settings_command("cells")
def cells(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: features/<image>.h5 and bags.csv."),
    **settings: Any,
) -> None:
    """Embed every unit of each image with an encoder; bags.csv then feeds crossval (--patient-col BAG)."""
    from slidepredict.core.errors import SlidePredictError
    from slidepredict.pipeline import stages

    try:
        result = stages.cells(out, **settings)
    except SlidePredictError as exc:
        fail(str(exc))
    report_batch(result, f"Features in {out / 'features'}, bags in {out / 'bags.csv'}")
