"""`slidepredict finetune`: fine-tune a timm encoder's last blocks on an image cohort (one per target or per fold)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from slidepredict.cli._settings import settings_command
from slidepredict.cli.train import _echo_lines


@settings_command("finetune")
def finetune(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder; each target gets <out>/<target>/."),
    crossval: bool = typer.Option(
        False, "--crossval", help="Cross-validate instead: an encoder tuned on each fold's training images only, "
        "the fold's MIL head on its features, and the frozen encoder on the same folds as the reference."),
    **settings: Any,
) -> None:
    """Fine-tune the last blocks of the encoder on each unit (labelled by its image) with augmentation."""
    from slidepredict.pipeline import stages

    _echo_lines(stages.finetune, out=out, crossval=crossval, **settings)
