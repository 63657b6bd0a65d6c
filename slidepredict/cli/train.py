"""`slidepredict crossval` and `slidepredict train`: patient-level models, one per target."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from slidepredict.cli._app import fail
from slidepredict.cli._settings import settings_command

FEATURES_HELP = "Folder of <slide>.h5 feature files (searched recursively)."
OUT_HELP = "Output folder; each target gets <out>/<target>/."


def _echo_lines(run: Any, **kwargs: Any) -> None:
    from slidepredict.core.errors import SlidePredictError

    try:
        for line in run(**kwargs):
            typer.echo(line)
    except SlidePredictError as exc:
        fail(str(exc))


@settings_command("crossval")
def crossval(
    features: Path = typer.Option(..., "--features", "-f", help=FEATURES_HELP),
    out: Path = typer.Option(..., "--out", "-o", help=OUT_HELP),
    fold: Optional[int] = typer.Option(None, "--fold", help="Run only this fold (0-based), e.g. one cluster job per fold."),
    **settings: Any,
) -> None:
    """Patient-level k-fold cross-validation: a model per fold, test predictions pooled in patient-preds.csv."""
    from slidepredict.pipeline import stages

    _echo_lines(stages.crossval, features=features, out=out, fold=fold, **settings)


@settings_command("train")
def train(
    features: Path = typer.Option(..., "--features", "-f", help=FEATURES_HELP),
    out: Path = typer.Option(..., "--out", "-o", help=OUT_HELP),
    **settings: Any,
) -> None:
    """One model on all patients (with an inner validation split) for deployment: <out>/<target>/model.ckpt."""
    from slidepredict.pipeline import stages

    _echo_lines(stages.train, features=features, out=out, **settings)
