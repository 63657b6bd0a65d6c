"""`slidepredict deploy`: apply one model or a fold ensemble to an external cohort."""

from __future__ import annotations

from pathlib import Path

import typer

from slidepredict.cli._app import app, config_option, fail


@app.command()
def deploy(
    config: Path = config_option(),
    model: list[Path] = typer.Option(
        ..., "--model", "-m",
        help="Checkpoint (.ckpt), or a crossval/train output folder (all its fold models). Repeat to ensemble.",
    ),
    features: Path = typer.Option(..., "--features", "-f", help="Folder of the cohort's <slide>.h5 feature files."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: patient-preds.csv, one folder per model, stats/."),
    clini: Path | None = typer.Option(
        None, "--clini", help="Clinical table with true labels (CSV/XLSX); without it: predictions only."
    ),
    slides_table: Path | None = typer.Option(
        None, "--slides-table", help="Slide table (PATIENT, FILENAME); without it each feature file is a patient."
    ),
    target: str | None = typer.Option(
        None, "--target", help="Clinical-table column with the true labels (default: the model's target)."
    ),
    patient_col: str = typer.Option("PATIENT", "--patient-col", help="Patient column of both tables."),
    filename_col: str = typer.Option("FILENAME", "--filename-col", help="Slide file column of the slide table."),
    device: str = typer.Option("auto", help="auto | cpu | cuda (auto: a GPU when there is one)."),
    n_bootstrap: int = typer.Option(1000, help="Patient-level bootstrap resamples for the statistics' CIs."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
    positive: str | None = typer.Option(
        None, help="Class the statistics headline for binary targets (default: the rarer class)."
    ),
) -> None:
    """Predict every patient with each model and their mean (ensemble); statistics follow when labels are given."""
    from slidepredict.deploy import deploy as run_deploy
    from slidepredict.errors import SlidePredictError

    try:
        result = run_deploy(
            model, features, out, clini=clini, slide_table=slides_table, target=target, patient_col=patient_col,
            filename_col=filename_col, device=device, n_bootstrap=n_bootstrap, seed=seed,
            positive=positive,
        )
    except SlidePredictError as exc:
        fail(str(exc))
        return
    typer.echo(f"Predicted {result.n_patients} patients with {len(result.member_preds)} model(s): {result.preds}")
    for name, shared in result.overlap.items():
        typer.secho(f"Warning: {len(shared)} patients were in the training data of {name}", fg=typer.colors.YELLOW, err=True)
    if result.headline is not None:
        h = result.headline
        typer.echo(f"{h['target']} ({h['class']}, n={h['n']}): {h['text']}  [{result.stats_dir}]")
    elif result.stats_skipped:
        typer.secho(f"Statistics skipped: {result.stats_skipped}", fg=typer.colors.YELLOW, err=True)
