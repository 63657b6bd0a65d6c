"""`init`, `run` and `demo`: the one-config, one-command workflow."""

from __future__ import annotations

from pathlib import Path

import typer

from slidepredict.cli._app import app, fail


@app.command()
def init(
    folder: Path = typer.Argument(Path("."), help="Folder for the new config.yaml."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing config.yaml."),
) -> None:
    """Write a commented config template to FOLDER/config.yaml."""
    from slidepredict.config import template_yaml

    from slidepredict.core.atomic import write_text_atomic
    from slidepredict.core.batch import check_writable
    from slidepredict.core.errors import SlidePredictError

    target = folder / "config.yaml"
    if target.exists() and not force:
        fail(f"{target} already exists; edit it, or pass --force to overwrite it")
    try:
        check_writable(folder)
    except SlidePredictError as exc:
        fail(str(exc))
    write_text_atomic(target, template_yaml())
    typer.echo(f"Wrote {target}. Edit the paths and targets, then: slidepredict run {target}")


@app.command()
def run(
    config: Path = typer.Argument(..., help="YAML config (see `slidepredict init`)."),
    stage: list[str] = typer.Option(None, "--stage", help="Run only these stages (repeatable)."),
) -> None:
    """Run every configured stage in order, skipping work already complete."""
    from slidepredict.config import load_config
    from slidepredict.core.errors import SlidePredictError
    from slidepredict.pipeline.run import run_workflow

    try:
        ctx = run_workflow(load_config(config), only=stage or None)
    except SlidePredictError as exc:
        fail(str(exc))
    _print_outcome(ctx)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-run"), "--out", help="Folder for the generated data and the run."),
    cells: bool = typer.Option(False, "--cells", help="A small drug screen of generated cell images instead of slides."),
) -> None:
    """Generate a synthetic cohort with a planted signal and run the whole workflow offline."""
    from slidepredict.core.batch import check_writable
    from slidepredict.core.errors import SlidePredictError
    from slidepredict.demo.cells_run import run_cells_demo
    from slidepredict.demo.run import run_demo

    try:
        check_writable(out)
        ctx = run_cells_demo(out) if cells else run_demo(out)
    except SlidePredictError as exc:
        fail(str(exc))
    _print_outcome(ctx)


def _print_outcome(ctx) -> None:  # type: ignore[no-untyped-def]
    for line in ctx.headlines:
        typer.echo(line)
    if "report" in getattr(ctx, "results", {}):
        typer.echo(f"Report: {ctx.results['report']}")
