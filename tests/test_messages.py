"""Messages name only options that exist: every --flag written in the package's code is a real CLI option."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from slidepredict.cli import app

PACKAGE = Path(__file__).resolve().parents[1] / "slidepredict"
# typer's own; Snakemake's; the Hugging Face CLI's (in a download hint); fragments in docstrings about flag names
NOT_OURS = {"--help", "--cores", "--revision", "--local-dir", "--no-", "--field-name"}


def _cli_options() -> set[str]:
    cmd = typer.main.get_command(app)
    names: set[str] = {o for p in cmd.params for o in getattr(p, "opts", []) if o.startswith("--")}  # --version, ...
    for sub in cmd.commands.values():  # type: ignore[attr-defined]
        for param in sub.params:
            names.update(o for o in getattr(param, "opts", []) + getattr(param, "secondary_opts", []) if o.startswith("--"))
    return names


def test_every_flag_a_message_names_exists() -> None:
    options = _cli_options() | NOT_OURS
    named: dict[str, str] = {}
    for path in PACKAGE.rglob("*.py"):
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", path.read_text()):
            named.setdefault(flag, str(path.relative_to(PACKAGE)))
    unknown = {f: where for f, where in named.items() if f not in options}
    assert not unknown, f"flags named in code that no command has: {unknown}"
