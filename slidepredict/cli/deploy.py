"""`slidepredict deploy`: apply one model or a fold ensemble to an external cohort."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from slidepredict.cli._app import fail
from slidepredict.cli._settings import settings_command


@settings_command("deploy")
def deploy(
    model: list[Path] = typer.Option(
        ..., "--model", "-m",
        help="Checkpoint (.ckpt), or a crossval/train output folder (all its fold models). Repeat to ensemble.",
    ),
    features: Path = typer.Option(..., "--features", "-f", help="Folder of the cohort's <slide>.h5 feature files."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: patient-preds.csv, one folder per model, stats/."),
    target: Optional[str] = typer.Option(
        None, "--target", help="Clinical-table column with the true labels (default: the model's target)."
    ),
    **settings: Any,
) -> None:
    """Predict every patient with each model and their mean (ensemble); statistics follow when labels are given."""
    from slidepredict.core.errors import SlidePredictError
    from slidepredict.pipeline import stages

    try:
        result = stages.deploy(model, features, out, target=target, **settings)
    except SlidePredictError as exc:
        fail(str(exc))
        return
    typer.echo(f"Predicted {result.n_patients} patients with {len(result.member_preds)} model(s): {result.preds}")
    for name, shared in result.overlap.items():
        typer.secho(f"Warning: {len(shared)} patients were in the training data of {name}; statistics leave them out", fg=typer.colors.YELLOW, err=True)
    if result.headline is not None:
        h = result.headline
        typer.echo(f"{h['target']} ({h['class']}, n={h['n']}): {h['text']}{h['carried_text']}  [{result.stats_dir}]")
    elif result.stats_skipped:
        typer.secho(f"Statistics skipped: {result.stats_skipped}", fg=typer.colors.YELLOW, err=True)
