"""Command-line entry point. Commands live in sibling modules and only call the package API.

Heavy libraries (torch, openslide, ...) are imported inside command bodies so that
``slidepredict --help`` and ``--version`` stay instant.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

from slidepredict.cli._app import app

# Every public module in this package is a command group that registers its commands on
# ``app`` when imported; adding a command never touches this file.
# Help lists them in workflow order; modules not named here follow alphabetically.
_ORDER = ("workflow", "tile", "extract", "train", "deploy", "stats", "compare", "heatmaps", "report")
COMMAND_MODULES: tuple[str, ...] = tuple(
    sorted(
        (m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")),
        key=lambda name: (_ORDER.index(name) if name in _ORDER else len(_ORDER), name),
    )
)

for _name in COMMAND_MODULES:
    importlib.import_module(f"slidepredict.cli.{_name}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors become one red line and exit code 2, not a traceback."""
    from slidepredict.core.errors import SlidePredictError

    try:
        app(args=argv, standalone_mode=True)
    except SlidePredictError as exc:  # raised outside a command's own handling
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
