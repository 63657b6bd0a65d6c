"""The shared typer application and the options every command has."""

from __future__ import annotations

from typing import Any

import typer

from slidepredict._version import __version__

app = typer.Typer(
    name="slidepredict",
    help="Predict biomarkers from H&E whole-slide images: tile, extract, train, deploy, explain.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"slidepredict {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars; log lines only."),
) -> None:
    from slidepredict.core.progress import setup_logging

    setup_logging(quiet=quiet)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line user error and exit; used by commands for anticipated errors."""
    typer.secho(f"Error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def report_batch(result: Any, what: str) -> None:
    """Per-slide failures in red, one summary line, and the batch's exit code (1 when any slide failed)."""
    for slide, reason in result.failed:
        typer.secho(f"FAILED {slide}: {reason}", fg=typer.colors.RED, err=True)
    typer.echo(f"{what}: {result.summary()}")
    raise typer.Exit(result.exit_code)
