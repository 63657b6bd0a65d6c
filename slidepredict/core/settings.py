"""The base of every stage's settings model, and the metadata that turns a field into a CLI flag.

A stage's settings class is at once its YAML section, its parameter object and the source of
its command's flags (see ``slidepredict.cli._settings``), so a setting is defined exactly once:
its type, default, bounds and help text live on the field.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
ALL_TARGETS = "*"  # key of a per-target mapping that applies to every target (what a bare flag sets)


class Settings(BaseModel):
    """Unknown keys are errors; assignments are validated (the CLI sets flags one by one)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def setting(
    default: Any = ..., description: str = "", *, flag: str | None = None, run_only: str | None = None,
    per_target: bool = False, short: str | None = None, default_factory: Any = None, **bounds: Any,
) -> Any:
    """A settings field. ``flag`` overrides the derived ``--field-name``; ``run_only`` says why a key has no
    flag; ``per_target`` marks a ``{target: value}`` mapping whose flag sets one value for every target."""
    extra: dict[str, Any] = {"per_target": True} if per_target else {}
    if short is not None:
        extra["short"] = short
    if flag is not None:
        extra["flag"] = flag
    if run_only is not None:
        extra["run_only"] = run_only
    if default_factory is not None:
        return Field(default_factory=default_factory, description=description, json_schema_extra=extra, **bounds)
    return Field(default, description=description, json_schema_extra=extra, **bounds)


def field_extra(model: type[BaseModel], name: str) -> dict[str, Any]:
    extra = model.model_fields[name].json_schema_extra
    return dict(extra) if isinstance(extra, dict) else {}


def flag_name(model: type[BaseModel], name: str) -> str | None:
    """The command-line spelling of a field, or None for keys only `slidepredict run` reads."""
    extra = field_extra(model, name)
    if "run_only" in extra:
        return None
    return str(extra.get("flag", "--" + name.replace("_", "-")))


def is_per_target(model: type[BaseModel], name: str) -> bool:
    """A ``{target: value}`` field; its flag gives one value that applies to every target."""
    return bool(field_extra(model, name).get("per_target"))


# Registries settings may name: key -> (module, function listing the names); imported when a name is checked.
REGISTRIES: dict[str, tuple[str, str]] = {
    "encoders": ("slidepredict.features", "list_encoders"),
    "mil": ("slidepredict.mil", "list_mil"),
    "units": ("slidepredict.cells.units", "list_units"),
    "augmentations": ("slidepredict.cells.augment", "list_augmentations"),
}


def registered(registry: str, value: str) -> str:
    """Validator body for names that must exist in a registry (encoders, MIL heads); lists the known ones."""
    import importlib

    module, lister = REGISTRIES[registry]
    names = sorted(getattr(importlib.import_module(module), lister)())
    if value not in names:
        raise ValueError(f"must be one of {', '.join(names)}")
    return value


def for_target(mapping: Mapping[str, T], target: str | None) -> T | None:
    """A per-target setting's value for ``target`` (``'*'`` is the fallback every target shares)."""
    if target is not None and target in mapping:
        return mapping[target]
    return mapping.get(ALL_TARGETS)


def submodel(annotation: Any) -> type[BaseModel] | None:
    """The settings class inside a field's annotation (``TrainingSettings | None`` -> ``TrainingSettings``)."""
    for a in (annotation, *typing.get_args(annotation)):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def explain(key: str, err: Mapping[str, Any]) -> str:
    """One pydantic error as one line naming ``key`` (a YAML key or a flag) and the value given."""
    kind, got = err["type"], err.get("input")
    if kind == "missing":
        return f"missing required key '{key}'"
    if kind == "literal_error":
        return f"'{key}' must be one of {err.get('ctx', {}).get('expected', '')} (got {got!r})"
    if kind == "value_error":
        return f"'{key}' {err.get('ctx', {}).get('error', err['msg'])} (got {got!r})"
    return f"'{key}': {err['msg']} (got {got!r})"
