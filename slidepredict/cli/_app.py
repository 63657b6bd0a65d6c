"""The shared typer application and the options every command has."""

from __future__ import annotations

from pathlib import Path
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
    from slidepredict.progress import setup_logging

    setup_logging(quiet=quiet)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line user error and exit; used by commands for anticipated errors."""
    typer.secho(f"Error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _load_config_defaults(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Eager callback: the config's values become this command's defaults; flags still override."""
    if value is None:
        return value
    from slidepredict.config import load_config
    from slidepredict.config.commands import command_defaults
    from slidepredict.errors import ConfigError

    try:
        cfg = load_config(value)
    except ConfigError as exc:
        fail(str(exc))
    defaults = command_defaults(cfg, ctx.info_name or "")
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def config_option() -> Any:
    """The ``--config`` option every stage command takes (processed before its other options)."""
    return typer.Option(
        None,
        "--config",
        "-c",
        help="YAML config (see `slidepredict init`); its values are defaults that flags override.",
        is_eager=True,
        callback=_load_config_defaults,
        exists=False,
    )
