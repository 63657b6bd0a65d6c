"""Refused runs leave nothing behind, and an unwritable --out is one line for every command (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from fakecohort import make_feature_cohort
from slidepredict.cli import app
from slidepredict.config.commands import COMMANDS

STEPS = ["--steps", "4", "--val-every", "2", "--min-steps", "0", "--bag-size", "8", "--restarts", "1"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rel")
    clini, slides, feats, _ = make_feature_cohort(root, n_patients=8, n_tiles=6, dim=4)
    (root / "empty").mkdir()
    (root / "bad-preds.csv").write_text("PATIENT,score\nP1,0.3\n")
    return {"clini": clini, "slides": slides, "feats": feats, "empty": root / "empty", "bad_preds": root / "bad-preds.csv",
            "root": root}


def _cli(*args: object) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def _with_out_option() -> list[str]:
    cmd = typer.main.get_command(app)
    return sorted(name for name, c in cmd.commands.items()  # type: ignore[attr-defined]
                  if any("--out" in getattr(p, "opts", []) for p in c.params))


def _refused(c: dict[str, Path], out: Path) -> dict[str, list[object]]:
    """Per command of the registry: an invocation refused for its input (empty folders, missing files or columns)."""
    tables = ["--clini", c["clini"], "--slides-table", c["slides"]]
    return {
        "tile": ["tile", c["empty"], "--out", out],
        "extract": ["extract", c["empty"], "--out", out, "--encoder", "stain-texture"],
        "crossval": ["crossval", "--features", c["feats"], *tables, "-t", "NO_SUCH_COLUMN", "--out", out],
        "train": ["train", "--features", c["feats"], *tables, "-t", "NO_SUCH_COLUMN", "--out", out],
        "deploy": ["deploy", "--model", c["root"] / "no-model.ckpt", "--features", c["feats"], "--out", out],
        "stats": ["stats", c["bad_preds"], "--out", out],
        "compare": ["compare", c["bad_preds"], c["bad_preds"], "--out", out],
        "heatmaps": ["heatmaps", "--model", c["root"] / "no-model.ckpt", "--features", c["feats"], "--slides", c["empty"],
                     "--out", out],
        "report": ["report", c["root"] / "no-run", "--out", out / "report.html"],
        "cells": ["cells", "--images", c["empty"], "--image-table", c["clini"], "--encoder", "stain-texture", "--out", out],
        "clusters": ["clusters", "--features", c["empty"], "--bags", c["clini"], "--images", c["empty"], "--out", out],
        "screen": ["screen", c["bad_preds"], "--bags", c["clini"], "--score-class", "POS", "--control", "DMSO", "--out", out],
        "finetune": ["finetune", "--images", c["empty"], "--image-table", c["clini"], "-t", "TARGET", "--out", out],
    }


def test_every_command_of_the_registry_has_a_refused_case(cohort: dict[str, Path], tmp_path: Path) -> None:
    assert set(_refused(cohort, tmp_path)) == set(COMMANDS), "add the new command to _refused()"


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("existing", [False, True], ids=["new-out", "existing-out"])
def test_a_refused_run_leaves_the_output_as_it_found_it(cohort: dict[str, Path], tmp_path: Path, command: str,
                                                        existing: bool) -> None:
    out = tmp_path / "runs" / "out"
    if existing:
        out.mkdir(parents=True)
        (out / "keep.txt").write_text("earlier work")
    res = _cli(*_refused(cohort, out)[command])
    assert res.exit_code in (1, 2), res.output
    assert res.output.strip().count("\n") == 0 and "Traceback" not in res.output, res.output
    if existing:
        assert sorted(p.name for p in out.rglob("*")) == ["keep.txt"]
    else:
        assert not (tmp_path / "runs").exists(), sorted(map(str, (tmp_path / "runs").rglob("*")))


def _out_under_a_file(c: dict[str, Path], out: Path) -> dict[str, list[object]]:
    tables = ["--clini", c["clini"], "--slides-table", c["slides"], "-t", "TARGET"]
    return {
        **{k: v for k, v in _refused(c, out).items() if k not in ("crossval", "train")},
        "crossval": ["crossval", "--features", c["feats"], *tables, "--folds", "2", *STEPS, "--out", out],
        "train": ["train", "--features", c["feats"], *tables, *STEPS, "--out", out],
        "demo": ["demo", "--out", out],
    }


def test_every_command_with_out_is_covered(cohort: dict[str, Path], tmp_path: Path) -> None:
    assert set(_out_under_a_file(cohort, tmp_path)) == set(_with_out_option()), "add the new command"


@pytest.mark.parametrize("command", _with_out_option())
def test_an_output_under_a_file_is_one_line(cohort: dict[str, Path], tmp_path: Path, command: str) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    args = _out_under_a_file(cohort, afile / "out")[command]
    res = _cli(*args)
    assert res.exit_code in (1, 2), res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    folder = afile / "out"
    assert lines[0] == f"Error: cannot create output folder {folder}: Not a directory; choose another --out"
    assert afile.read_text() == "not a folder"


def test_run_with_an_output_dir_under_a_file(cohort: dict[str, Path], tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "output_dir": str(afile / "run"),
        "cohort": {"slides_dir": str(cohort["empty"]), "clini_table": str(cohort["clini"])},
    }))
    res = _cli("run", cfg)
    assert res.exit_code in (1, 2) and "Traceback" not in res.output, res.output
    assert res.output.strip().splitlines() == [f"Error: cannot create output folder {afile / 'run'}: Not a directory; "
                                               "choose another --out"]


def test_a_refused_train_does_not_poison_the_corrected_rerun(cohort: dict[str, Path], tmp_path: Path) -> None:
    """The issue's case: a single-class target is refused; the rerun with other settings into the same folder trains."""
    clini = tmp_path / "clini.csv"
    pd.read_csv(cohort["clini"], dtype=str).assign(ONE="a").to_csv(clini, index=False)
    out = tmp_path / "out"
    base = ["train", "--features", cohort["feats"], "--clini", clini, "--slides-table", cohort["slides"], "--out", out]
    refused = _cli(*base, "-t", "ONE", *STEPS)
    assert refused.exit_code == 2 and "has a single class" in refused.output
    assert not out.exists()
    fixed = _cli(*base, "-t", "TARGET", *STEPS[:-2], "--restarts", "2")
    assert fixed.exit_code == 0, fixed.output
    assert json.loads((out / "TARGET" / "train-config.json").read_text())["restarts"] == 2


def test_settings_recorded_without_a_trained_model_are_replaced(cohort: dict[str, Path], tmp_path: Path) -> None:
    """A run killed before any model was saved left train-config.json: the next run may use other settings."""
    out = tmp_path / "out"
    (out / "TARGET").mkdir(parents=True)
    (out / "TARGET" / "train-config.json").write_text(json.dumps({"steps": 999, "lr": 1.0}))
    args = ["train", "--features", cohort["feats"], "--clini", cohort["clini"], "--slides-table", cohort["slides"],
            "-t", "TARGET", "--out", out, *STEPS]
    res = _cli(*args)
    assert res.exit_code == 0, res.output
    assert json.loads((out / "TARGET" / "train-config.json").read_text())["steps"] == 4
    again = _cli(*args[:-len(STEPS)], "--steps", "5", *STEPS[2:])  # now a model exists: other settings are refused
    assert again.exit_code == 2 and "was trained with steps=4, this run asks for steps=5" in again.output
