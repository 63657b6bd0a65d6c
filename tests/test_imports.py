"""Light paths stay light: listing encoders, help, init and loading a config import no torch or scikit-image.

Each case runs in a fresh interpreter and reports, when it exits, which heavy modules ended up
in ``sys.modules``. Importing torch costs seconds and ~0.5 GiB, so a command that only reads
names (registries, the config template) must not pay for it; the encoder and MIL registries
keep names apart from the code they name for this reason.

This must keep holding when the configuration work of issue 10 (one configuration seam)
lands: the config loader and the CLI may change shape, but checking a config's encoder and
MIL head names, and the commands below, must still import neither library. Adapt the YAML or
the command lines if the schema changes; do not drop a case.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "skimage")

# Runs BODY, then prints which HEAVY modules were imported and how BODY exited.
_PROBE = """
import sys
code = 0
try:
{body}
except SystemExit as exc:
    code = exc.code or 0
except Exception:
    import traceback
    traceback.print_exc(file=sys.stdout)
    code = 1
finally:
    print("EXIT=%s" % code)
    print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def _probe(body: str, cwd: Path) -> tuple[str, int, list[str]]:
    """Run ``body`` in a fresh interpreter with this checkout first on the path."""
    script = _PROBE.format(body=textwrap.indent(textwrap.dedent(body), "    "), heavy=HEAVY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env["HF_HUB_OFFLINE"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, env=env, timeout=120, check=False
    )
    lines = out.stdout.splitlines()
    assert lines and lines[-1].startswith("HEAVY="), out.stdout + out.stderr
    heavy = [m for m in lines[-1].removeprefix("HEAVY=").split(",") if m]
    return "\n".join(lines[:-2]), int(lines[-2].removeprefix("EXIT=")), heavy


@pytest.mark.parametrize(
    ("argv", "expected"),
    [(["--help"], "Usage"), (["init", "{tmp}"], "Wrote")],
    ids=["help", "init"],
)
def test_cli_command_imports_no_torch(tmp_path: Path, argv: list[str], expected: str) -> None:
    argv = [a.format(tmp=tmp_path / "run") for a in argv]
    stdout, code, heavy = _probe(f"from slidepredict.cli import main\nmain({argv!r})", tmp_path)
    assert code == 0, stdout
    assert expected in stdout
    assert heavy == [], f"`slidepredict {' '.join(argv)}` imported {heavy}"


def test_encoders_command_imports_no_torch_and_reports_dim_and_weights(tmp_path: Path) -> None:
    """The stain-texture dimension comes from its torch-free spec, not from running it."""
    stdout, code, heavy = _probe("from slidepredict.cli import main\nmain(['encoders'])", tmp_path)
    row = next(line for line in stdout.splitlines() if "stain-texture" in line)
    assert code == 0 and "52" in row and "built-in" in row
    assert heavy == [], f"`slidepredict encoders` imported {heavy}"


def test_load_config_checks_registry_names_without_torch(tmp_path: Path) -> None:
    good = "output_dir: run\ncohort:\n  slides_dir: slides\nextract:\n  encoder: {enc}\ntraining:\n  targets: [MSI]\n  model: {mil}\n"
    for name, enc, mil in [("ok", "stain-texture", "attention"), ("bad-enc", "resnet51", "attention"),
                           ("bad-mil", "uni", "clam")]:
        (tmp_path / f"{name}.yaml").write_text(good.format(enc=enc, mil=mil))
    stdout, code, heavy = _probe(
        """
        from slidepredict.config import load_config
        from slidepredict.core.errors import ConfigError
        cfg = load_config("ok.yaml")
        print("loaded", cfg.extract.encoder)
        for name in ("bad-enc", "bad-mil"):
            try:
                load_config(name + ".yaml")
            except ConfigError as exc:
                print(exc)
        """,
        tmp_path,
    )
    assert code == 0, stdout
    assert "loaded stain-texture" in stdout
    assert "'extract.encoder' must be one of" in stdout and "stain-texture" in stdout
    assert "'training.model' must be one of attention, mean, tile-vote, transformer" in stdout
    assert heavy == [], f"load_config imported {heavy}"


def test_mil_names_import_no_torch(tmp_path: Path) -> None:
    stdout, code, heavy = _probe("from slidepredict.mil import list_mil\nprint(list_mil())", tmp_path)
    assert "'attention'" in stdout and code == 0
    assert heavy == []
