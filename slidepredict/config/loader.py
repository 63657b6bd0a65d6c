"""Read, validate and write run configurations; errors name the file, the key and what is allowed."""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from slidepredict.config.models import RunConfig
from slidepredict.core.settings import explain, submodel
from slidepredict.core.errors import ConfigError

RESOLVED_NAME = "config.resolved.yaml"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the key at ``loc`` (for listing allowed keys)."""
    model: type[BaseModel] | None = RunConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if model is not None else None
        if field is None:
            return None
        model = submodel(field.annotation)
    return model


def _describe(err: dict[str, Any]) -> str:
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        owner = _model_at(loc)
        allowed = ", ".join(owner.model_fields) if owner else "see `slidepredict init`"
        return f"unknown key '{key}' (allowed here: {allowed})"
    return explain(key, err)


def _resolve_paths(data: Any, base: Path, model: type[BaseModel]) -> Any:
    """Relative paths in a config file are relative to that file, not to the shell's folder."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name, field in model.model_fields.items():
        if name not in out or out[name] is None:
            continue
        sub = submodel(field.annotation)
        if sub is not None:
            out[name] = _resolve_paths(out[name], base, sub)
        elif (field.annotation is Path or Path in typing.get_args(field.annotation)) and isinstance(out[name], str):
            p = Path(out[name]).expanduser()
            out[name] = str(p if p.is_absolute() else (base / p))
    return out


def parse_config(data: Any, source: str, base: Path | None = None) -> RunConfig:
    """Validate a mapping as a run configuration; ``source`` names the file in errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (cohort:, tiling:, ...), got {type(data).__name__}")
    if base is not None:
        data = _resolve_paths(data, base, RunConfig)
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {_describe(errors[0])}{more}") from None
    return cfg


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Load a YAML config file (safe loader only; nothing in it is ever evaluated)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_config(data if data is not None else {}, str(path), base=path.parent.resolve())


def to_yaml(cfg: RunConfig) -> str:
    import yaml

    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def write_resolved(cfg: RunConfig, folder: str | os.PathLike[str]) -> Path:
    """Record exactly what ran next to its outputs."""
    from slidepredict.core.atomic import write_text_atomic

    return write_text_atomic(Path(folder) / RESOLVED_NAME, to_yaml(cfg))
