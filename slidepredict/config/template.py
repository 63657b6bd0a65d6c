"""The commented template of `slidepredict init` and the Markdown config reference, both
generated from the pydantic models so neither can drift from what is validated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from slidepredict.config.models import RunConfig
from slidepredict.core.settings import field_extra, flag_name, submodel

# Example values for required keys, so the template is a runnable starting point.
EXAMPLES: dict[str, Any] = {
    "output_dir": "runs/my-cohort",
    "cohort.slides_dir": "slides/",
    "cohort.clini_table": "clini.csv",
    "cohort.slide_table": "slides.csv",
    "training.targets": ["MSI"],
    "deploy.slides_dir": "external/slides/",
    "deploy.clini_table": "external/clini.csv",
    "deploy.slide_table": "external/slides.csv",
    "cells.images": "images/",
    "cells.table": "images.csv",
    "screen.score_class": "apoptosis",
    "screen.control": "DMSO",
}
# Optional sections the template switches on, because most runs want them.
TEMPLATE_SECTIONS = ("training",)
# Optional sections the template shows commented out, with what uncommenting them does.
COMMENTED_SECTIONS = {
    "deploy": "uncomment to validate on an external cohort",
    "cells": "uncomment for a cohort of microscopy images instead of slides (then cohort:, tiling: and "
             "heatmaps: are not used; deploy: names the plate to score; docs/cells.md)",
    "screen": "uncomment to score the deploy: plate's wells against its controls (run, or `slidepredict screen --config`)",
    "clusters": "uncomment to look for sub-populations of cells (run, or `slidepredict clusters --config`)",
    "finetune": "uncomment to fine-tune the encoder's last blocks on the cells: cohort (run: crossval tunes one "
                "encoder per fold, train one on every image, deploy embeds the plate with it; one target)",
}


def _submodel(field: Any) -> type[BaseModel] | None:
    return submodel(field.annotation)


def _scalar(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    return json.dumps(value) if not isinstance(value, str) or value == "" else value


def _default(field: Any, key: str) -> Any:
    if key in EXAMPLES:
        return EXAMPLES[key]
    if field.default is not PydanticUndefined:
        return field.default
    if field.default_factory is not None:
        return field.default_factory()
    return None


def template_yaml(model: type[BaseModel] = RunConfig, prefix: str = "", indent: int = 0) -> str:
    """YAML with every key, its default (or an example) and its description as a comment."""
    lines: list[str] = []
    pad = "  " * indent
    if not prefix:
        lines += ["# slidepredict run configuration. Run it with: slidepredict run config.yaml",
                  "# Relative paths are relative to this file. Delete a section to skip that stage.", ""]
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        sub = _submodel(field)
        desc = field.description or ((sub.__doc__ or "").strip().splitlines() or [""])[0]
        if sub is not None:
            optional = field.default is None
            if optional and name not in TEMPLATE_SECTIONS and name not in COMMENTED_SECTIONS:
                continue
            if desc:
                lines.append(f"{pad}# {desc}")
            body = template_yaml(sub, f"{key}.", indent + 1)
            if optional and name in COMMENTED_SECTIONS:
                lines.append(f"{pad}# (optional) {COMMENTED_SECTIONS[name]}")
                lines.append(f"{pad}# {name}:")
                lines += [f"{pad}# {line[len(pad):]}" for line in body.splitlines() if line.strip()]
            else:
                lines.append(f"{pad}{name}:")
                lines.append(body)
            lines.append("")
            continue
        value = _default(field, key)
        comment = f"  # {desc}" if desc else ""
        if isinstance(value, list) and value:
            lines.append(f"{pad}{name}: [{', '.join(_scalar(v) for v in value)}]{comment}")
        elif isinstance(value, dict):
            lines.append(f"{pad}{name}: {{}}{comment}")
        else:
            lines.append(f"{pad}{name}: {'null' if value is None else _scalar(value)}{comment}")
    return "\n".join(lines).rstrip() + "\n" if not prefix else "\n".join(lines)


def flag_cell(section: str | None, model: type[BaseModel], name: str) -> str:
    """Where a key is set on the command line: its flag and the commands that take it, or why none does."""
    from slidepredict.config.commands import COMMANDS

    extra = field_extra(model, name)
    if "run_only" in extra:
        return f"`run` only: {extra['run_only']}"
    users = [cmd for cmd, spec in COMMANDS.items()
             if any(use.section == section and name in use.names() for use in spec.uses)]
    return f"`{flag_name(model, name)}` ({', '.join(users)})"


def reference_markdown() -> str:
    """docs/config.md: one table per section, with each key's flag."""
    out = ["# Configuration reference", "",
           "Generated from the settings models (`python -m slidepredict.config.template > docs/config.md`).",
           "Unknown keys are errors. Relative paths are relative to the config file. Every key is also a flag",
           "of the commands that use it; a flag overrides the config (`slidepredict tile --config c.yaml --tile-um 128`).",
           "A per-target key (`{MSI: MSI-H}`) takes one value on the command line, applied to every target.", ""]
    header = ["| key | default | flag (commands) | description |", "|---|---|---|---|"]
    top = [(n, f) for n, f in RunConfig.model_fields.items() if _submodel(f) is None]
    sections = [(n, f) for n, f in RunConfig.model_fields.items() if _submodel(f) is not None]
    out += ["## Top level", "", *header]
    out += [f"| `{n}` | {_md_default(f)} | {flag_cell(None, RunConfig, n)} | {f.description or ''} |" for n, f in top]
    for name, field in sections:
        sub = _submodel(field)
        assert sub is not None
        req = "optional section" if field.default is None else "section"
        out += ["", f"## `{name}` ({req})", "", (sub.__doc__ or "").strip(), "", *header]
        out += [f"| `{n}` | {_md_default(f)} | {flag_cell(name, sub, n)} | {f.description or ''} |"
                for n, f in sub.model_fields.items()]
    return "\n".join(out) + "\n"


def _md_default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    value = field.default if field.default is not PydanticUndefined else field.default_factory()
    return f"`{json.dumps(value if not isinstance(value, Path) else str(value))}`"


if __name__ == "__main__":
    print(reference_markdown(), end="")
