"""Command-line flags generated from the settings models, and `--config` resolved like `run` does.

``@settings_command("tile")`` on a command whose signature ends in ``**settings`` adds one flag
per setting the command uses (``config/commands.py``), named, typed, bounded and documented by
the settings field, plus ``--config``. The command then receives the settings objects: the
config's sections (or the defaults) with the flags given on the command line applied on top.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from pydantic import BaseModel, ValidationError

from slidepredict.cli._app import app, fail
from slidepredict.config.commands import COMMANDS, Uses, resolve
from slidepredict.core.settings import ALL_TARGETS, explain, field_extra, flag_name, is_per_target

CONFIG_META = "slidepredict.config"
_GIVEN = ("COMMANDLINE", "ENVIRONMENT")  # parameter sources that mean "the user typed it"


def param_name(section: str, field: str) -> str:
    """Python name of a generated parameter; sections may share field names (seed, device)."""
    return f"{section}__{field}"


def _plain(value: Any) -> Any:
    """click converts default_map values itself; give it strings, not Path objects."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _load_config(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Eager: the config's paths become defaults of the path options (click then treats them as given)."""
    if value is None:
        return value
    from slidepredict.config import load_config
    from slidepredict.core.errors import ConfigError

    try:
        cfg = load_config(value)
    except ConfigError as exc:
        fail(str(exc))
    ctx.meta[CONFIG_META] = cfg
    paths = {k: _plain(v) for k, v in resolve(cfg, ctx.info_name or "").items() if not isinstance(v, BaseModel)}
    ctx.default_map = {**(ctx.default_map or {}), **paths}
    return value


def _config_parameter() -> inspect.Parameter:
    option = typer.Option(
        None, "--config", "-c", is_eager=True, callback=_load_config,
        help="YAML config (see `slidepredict init`); its values are defaults that flags override.")
    return inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[Path])


def _flag_type(model: type[BaseModel], name: str) -> Any:
    """The Python type typer parses a flag into (typer reads Literal, Optional and list itself)."""
    ann = model.model_fields[name].annotation
    if typing.get_origin(ann) is dict:
        value = typing.get_args(ann)[1]
        return value if is_per_target(model, name) else list[str]
    return ann


def _generated(use: Uses) -> list[inspect.Parameter]:
    params = []
    for name in use.names():
        field = use.model.model_fields[name]
        flag = str(flag_name(use.model, name))
        kind = _flag_type(use.model, name)
        decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
        short = field_extra(use.model, name).get("short")
        decls += [short] if short else []
        default = None if field.is_required() or field.default_factory is not None else field.default
        help_text = f"{field.description} (config: {use.section}.{name})"
        option = typer.Option(default, *decls, help=help_text, show_default=default is not None)
        params.append(inspect.Parameter(param_name(use.section, name), inspect.Parameter.KEYWORD_ONLY,
                                        default=option, annotation=kind))
    return params


def _flag_value(model: type[BaseModel], name: str, value: Any, current: Any) -> Any:
    """What a flag sets: one value for every target, ``KEY=VALUE`` pairs merged into a mapping, or itself."""
    if is_per_target(model, name):
        return {ALL_TARGETS: value}
    if typing.get_origin(model.model_fields[name].annotation) is dict:
        import yaml

        bad = [item for item in value if "=" not in item]
        if bad:
            raise ValueError(f"expects KEY=VALUE (got {bad[0]!r})")
        pairs = dict(item.split("=", 1) for item in value)
        return {**(current or {}), **{k: yaml.safe_load(v) for k, v in pairs.items()}}  # safe: data only
    return value


def _apply(obj: BaseModel, use: Uses, values: dict[str, Any], given: set[str]) -> None:
    for name in use.names():
        key = param_name(use.section, name)
        if key in given:
            flag = str(flag_name(use.model, name))
            value = values[key]
            try:
                setattr(obj, name, _flag_value(use.model, name, value, getattr(obj, name, None)))
            except ValidationError as exc:
                fail(explain(flag, exc.errors()[0]))
            except ValueError as exc:
                fail(f"{flag} {exc}")
        elif use.model.model_fields[name].is_required() and name not in obj.__dict__:
            flag = str(flag_name(use.model, name))
            fail(f"Missing option '{flag}' (or set {use.section}.{name} in a --config file)")


def settings_command(command: str, **command_kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn`` as CLI command ``command`` with the flags of every setting it uses."""
    spec = COMMANDS[command]

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(fn, include_extras=True)
        own = [p.replace(annotation=hints.get(p.name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY)
               for p in inspect.signature(fn).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        params = [context, *own, _config_parameter(), *(p for use in spec.uses for p in _generated(use))]

        def command_fn(ctx: typer.Context, **values: Any) -> Any:
            given = {name for name in values if getattr(ctx.get_parameter_source(name), "name", None) in _GIVEN}
            target = values.get(spec.target_param) if spec.target_param in given else None
            base = resolve(ctx.meta.get(CONFIG_META), command, target)
            call = {p.name: values[p.name] if p.name in given or p.name not in base else base[p.name] for p in own}
            for use in spec.uses:
                _apply(base[use.section], use, values, given)
                call[use.section] = base[use.section]
            return fn(**call)

        command_fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command_fn.__annotations__ = {p.name: p.annotation for p in params}
        command_fn.__doc__, command_fn.__name__ = fn.__doc__, fn.__name__
        app.command(command, **command_kwargs)(command_fn)
        return fn

    return deco
