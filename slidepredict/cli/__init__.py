"""Command-line entry point. Commands live in sibling modules and only call the package API.

Heavy libraries (torch, openslide, ...) are imported inside command bodies so that
``slidepredict --help`` and ``--version`` stay instant.
"""

from __future__ import annotations

import importlib
import sys

from slidepredict.cli._app import app

# One module per command group; each registers its commands on ``app`` when imported.
COMMAND_MODULES: tuple[str, ...] = (
)

for _name in COMMAND_MODULES:
    importlib.import_module(f"slidepredict.cli.{_name}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors become one red line and exit code 2, not a traceback."""
    from slidepredict.errors import SlidePredictError

    try:
        app(args=argv, standalone_mode=True)
    except SlidePredictError as exc:  # raised outside a command's own handling
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
