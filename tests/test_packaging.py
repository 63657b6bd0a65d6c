"""The package installs, starts fast, and its two dependency lists agree."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_reqs = {_name(r): r for r in pip_section if not r.startswith("-")}
    py_reqs = {_name(r): r for r in project["dependencies"]}
    assert env_reqs == py_reqs


def test_constraints_pin_matching_torch_pair() -> None:
    pins = dict(
        line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert pins == {"torch": "2.14.1", "torchvision": "0.29.1"}


def test_version_and_help_are_fast() -> None:
    from slidepredict import __version__

    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", "from slidepredict.cli import main; main(['--version'])"],
        capture_output=True, text=True, check=False,
    )
    assert out.stdout.strip() == f"slidepredict {__version__}"
    help_out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "from slidepredict.cli import main; main(['--help'])"],
        capture_output=True, text=True, check=False,
    )
    assert "Usage" in help_out.stdout
    heavy = [m for m in ("torch", "openslide", "h5py", "timm", "lightning", "pandas") if f"| {m}\n" in help_out.stderr + "\n"
             or re.search(rf"\|\s+{m}$", help_out.stderr, re.M)]
    assert heavy == [], f"--help imported heavy modules: {heavy}"
    assert time.perf_counter() - start < 20
