"""The configuration seam: every setting is defined once and reaches the YAML, the docs and the flags.

These tests walk the settings models, so a new setting is checked the moment it is added; and they
record what each pipeline function receives, so `slidepredict run` and `<command> --config` are
compared on the arguments themselves, not on their outputs.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from slidepredict.cli import app
from slidepredict.config import load_config, template_yaml
from slidepredict.config.commands import COMMANDS, resolve
from slidepredict.config.models import RunConfig
from slidepredict.core.settings import ALL_TARGETS, field_extra, flag_name, submodel
from slidepredict.layout import RunLayout
from slidepredict.pipeline import stages
from slidepredict.pipeline.run import STAGES, run_workflow

runner = CliRunner()


def _keys() -> list[tuple[str | None, type, str]]:
    """(section or None for top level, settings class, key) for every key a config file may hold."""
    out: list[tuple[str | None, type, str]] = []
    for name, field in RunConfig.model_fields.items():
        sub = submodel(field.annotation)
        if sub is None:
            out.append((None, RunConfig, name))
        else:
            out += [(name, sub, key) for key in sub.model_fields]
    return out


KEYS = _keys()


def _template_section(section: str | None) -> str:
    """The lines of one section in `slidepredict init`'s template, optional sections uncommented."""
    text = "\n".join(line.replace("# ", "", 1) if line.startswith("# ") else line for line in template_yaml().splitlines())
    if section is None:
        return "\n".join(line for line in text.splitlines() if not line.startswith(" "))
    match = re.search(rf"^{section}:\n((?:  .*\n?)+)", text, flags=re.MULTILINE)
    assert match, f"section {section} is missing from the template"
    return match.group(1)


def _cli_flags() -> dict[str, set[str]]:
    group = typer.main.get_command(app)
    return {name: {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)} for name, cmd in group.commands.items()}


@pytest.mark.parametrize(("section", "model", "key"), KEYS, ids=[f"{s or 'top'}.{k}" for s, _, k in KEYS])
def test_every_key_is_in_template_docs_and_a_flag(section: str | None, model: type, key: str) -> None:
    assert re.search(rf"^\s*{key}:", _template_section(section), flags=re.MULTILINE), f"{key} not in the init template"
    docs = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    assert f"| `{key}` |" in docs, f"{key} not in docs/config.md"
    reason = field_extra(model, key).get("run_only")
    if reason is not None:  # switches and paths only `run` reads say why they have no flag
        assert len(reason) > 10
        return
    users = [cmd for cmd, spec in COMMANDS.items() if any(u.section == section and key in u.names() for u in spec.uses)]
    assert users, f"{section}.{key} has a flag but no command uses it"
    flags = _cli_flags()
    for cmd in users:
        assert flag_name(model, key) in flags[cmd], f"`slidepredict {cmd}` lacks {flag_name(model, key)}"


# ---- run and <command> --config hand the pipeline the same arguments ----------------------------


def _fake_result(command: str, kwargs: dict[str, Any]) -> Any:
    """Enough of each pipeline function's result for `run` and the CLI to print it."""
    batch = SimpleNamespace(failed=[], done=["x"], skipped=[], busy=[], exit_code=0, summary=lambda: "1 done")
    return {
        "tile": batch, "extract": batch, "crossval": [], "train": [],
        "stats": SimpleNamespace(headline={"text": "AUROC 0.5"}, headlines={}, metrics_csv="m.csv", confusion={}, plots=[]),
        "deploy": SimpleNamespace(headline=None, stats_skipped=None, n_patients=0, member_preds={}, preds="p.csv", overlap={}),
        "heatmaps": SimpleNamespace(folders=[], result=batch),
        "report": Path("report.html"),
    }[command]


@pytest.fixture()
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    for command in COMMANDS:
        def record(*args: Any, _command: str = command, **kwargs: Any) -> Any:
            import inspect

            bound = inspect.signature(getattr(stages, f"_real_{_command}")).bind(*args, **kwargs)
            bound.apply_defaults()
            calls.append((_command, dict(bound.arguments)))
            return _fake_result(_command, kwargs)

        monkeypatch.setattr(stages, f"_real_{command}", getattr(stages, command), raising=False)
        monkeypatch.setattr(stages, command, record)
    return calls


def _plain(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.model_dump(mode="json") if hasattr(v, "model_dump") else [str(x) for x in v] if isinstance(v, list)
                else None if v is None else str(v)) for k, v in kwargs.items()}


def _full_config(tmp_path: Path, **training: Any) -> Path:
    for folder in ("slides", "ext"):
        (tmp_path / folder).mkdir(exist_ok=True)
    data = {
        "output_dir": "run",
        "cohort": {"slides_dir": "slides", "clini_table": "clini.csv", "slide_table": "slides.csv", "patient_col": "ID",
                   "mpp": 0.5},
        "tiling": {"tile_um": 128, "min_tissue": 0.3, "qc": False},
        "extract": {"encoder": "stain-texture", "batch_size": 8, "workers": 0, "stain_norm": "macenko"},
        "training": {"targets": ["MSI"], "steps": 30, "lr": 0.003, "patience": 2, "batch_size": 4, "device": "cpu",
                     "categories": {"MSI": ["MSS", "MSI-H"]}, **training},
        "deploy": {"slides_dir": "ext", "clini_table": "ext.csv", "mpp": 0.25},
        "stats": {"n_bootstrap": 50, "ci": 0.9, "positive": {"MSI": "MSI-H"}},
        "heatmaps": {"topk": 2, "max_slides": 3},
        "report": {"title": "seam"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


CLI_ARGS = {"stats": [], "report": []}  # commands whose positional inputs the config fills in


@pytest.mark.parametrize("training", [{}, {"crossval": False}], ids=["crossval", "final-model-only"])
def test_run_and_command_config_resolve_the_same(tmp_path: Path, recorded: list, training: dict) -> None:
    path = _full_config(tmp_path, **training)
    cfg = load_config(path)
    run_workflow(cfg)
    by_run: dict[str, dict[str, Any]] = {}
    for command, kwargs in recorded:
        by_run.setdefault(command, kwargs)  # the first call: the training cohort (the external one follows)
    recorded.clear()
    assert set(by_run) == set(COMMANDS) - {"compare", "cells", "screen", "clusters", "finetune"} - ({"stats", "crossval"} if training else set())
    for command in by_run:
        res = runner.invoke(app, [command, "--config", str(path)])
        assert res.exit_code == 0, f"{command}: {res.output}"
        assert recorded[-1][0] == command
        assert _plain(recorded[-1][1]) == _plain(by_run[command]), command


def test_settings_reach_the_stages(tmp_path: Path, recorded: list) -> None:
    """The mismatches of the two old mappers, pinned: device, model choice, fallbacks and YAML-only settings."""
    cfg = load_config(_full_config(tmp_path, train=False))
    run_workflow(cfg)
    calls = dict(recorded)
    layout = RunLayout(cfg.output_dir)
    assert calls["crossval"]["training"].device == "cpu"  # `run` used to train on the CPU whatever was set
    assert calls["crossval"]["training"].lr == 0.003 and calls["crossval"]["training"].patience == 2
    assert calls["heatmaps"]["model"] == [layout.crossval("MSI")]  # each patient by its held-out fold, as --config does
    assert calls["deploy"]["model"] == [layout.crossval("MSI")]
    assert calls["deploy"]["training"].device == "cpu" and calls["deploy"]["stats"].ci == 0.9
    assert calls["extract"]["extract"].stain_norm == "macenko"
    external = [kw for cmd, kw in recorded if cmd == "extract"][1]
    assert external["slides"] == [cfg.deploy.slides_dir] and external["cohort"].mpp == 0.25
    assert external["out"] == layout.external_features
    final = resolve(load_config(_full_config(tmp_path, crossval=False)), "deploy")
    assert final["model"] == [layout.train("MSI")]  # deploy --config falls back to the final model
    assert resolve(cfg, "heatmaps")["model"] == [layout.crossval("MSI")]


def test_flags_override_the_config_one_by_one(tmp_path: Path, recorded: list) -> None:
    path = _full_config(tmp_path)
    res = runner.invoke(app, ["crossval", "--config", str(path), "--lr", "0.5", "--categories", "A", "--categories", "B",
                              "--model-hparam", "hidden=16", "--model-hparam", "dropout=0.1", "-t", "BRAF"])
    assert res.exit_code == 0, res.output
    training = recorded[-1][1]["training"]
    assert training.lr == 0.5 and training.steps == 30  # the flag wins, the rest comes from the config
    assert training.categories == {ALL_TARGETS: ["A", "B"]} and training.targets == ["BRAF"]
    assert training.model_hparams == {"hidden": 16, "dropout": 0.1}
    res = runner.invoke(app, ["deploy", "--config", str(path), "--target", "KRAS", "--positive", "MUT"])
    assert res.exit_code == 0, res.output
    kwargs = recorded[-1][1]
    assert kwargs["target"] == "KRAS" and kwargs["model"] == [RunLayout(tmp_path / "run").crossval("KRAS")]
    assert kwargs["stats"].positive == {ALL_TARGETS: "MUT"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["crossval", "--features", "f", "--out", "o"], "Missing option '--target' (or set training.targets in a --config file)"),
        (["crossval", "--features", "f", "--out", "o", "-t", "MSI", "--folds", "1"],
         "'--folds': Input should be greater than or equal to 2 (got 1)"),
        (["train", "--features", "f", "--out", "o", "-t", "MSI", "--model", "clam"],
         "'--model' must be one of attention, mean, tile-vote, transformer (got 'clam')"),
        (["stats", "p.csv", "--out", "o", "--ci", "1.5"], "'--ci': Input should be less than 1 (got 1.5)"),
        (["train", "--features", "f", "--out", "o", "-t", "MSI", "--model-hparam", "hidden"],
         "--model-hparam expects KEY=VALUE (got 'hidden')"),
        (["heatmaps", "--model", "m.ckpt", "--features", "f", "--out", "o"],
         "Missing option '--slides' (or set cohort.slides_dir in a --config file)"),
        (["extract", "s.svs", "--out", "o", "--encoder", "UNI"], "'--encoder' must be one of "),
    ],
)
def test_bad_flags_are_one_line_errors(tmp_path: Path, recorded: list, argv: list[str], message: str) -> None:
    res = runner.invoke(app, argv)
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"Error: {message}")
    assert len(res.output.strip().splitlines()) == 1 and not recorded


def test_every_stage_of_run_is_a_command() -> None:
    from slidepredict.pipeline.run import NOT_STAGES

    assert set(STAGES) | set(NOT_STAGES) == set(COMMANDS) and not set(STAGES) & set(NOT_STAGES)
