"""What a config file means for each stand-alone command (`slidepredict tile --config c.yaml`, ...).

Each mapper turns the run config into that command's parameter defaults, using the same
folder layout as `slidepredict run`, so a stage run by hand finds and writes the same files.
Flags on the command line still win (click's ``default_map``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from slidepredict.config.models import RunConfig
from slidepredict.registry import Registry

Mapper = Callable[[RunConfig], dict[str, Any]]
COMMANDS: Registry[Mapper] = Registry("command")
register_command = COMMANDS.register


def _plain(value: Any) -> Any:
    """click converts default_map values itself; give it strings, not Path objects."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def command_defaults(cfg: RunConfig, command: str) -> dict[str, Any]:
    """Defaults for ``command`` from ``cfg``; None values are left out so built-in defaults apply."""
    mapper = COMMANDS.get(command)
    if mapper is None:
        return {}
    return {k: _plain(v) for k, v in mapper(cfg).items() if v is not None}


def _layout(cfg: RunConfig) -> Any:
    from slidepredict.workflow import RunLayout

    return RunLayout(cfg.output_dir)


def _first_target(cfg: RunConfig) -> str | None:
    return cfg.training.targets[0] if cfg.training else None


@register_command("tile")
def _tile(cfg: RunConfig) -> dict[str, Any]:
    t = cfg.tiling
    return {
        "slides": [cfg.cohort.slides_dir], "out": _layout(cfg).tiles, "tile_um": t.tile_um,
        "tile_px": t.tile_px, "min_tissue": t.min_tissue, "mpp": cfg.cohort.mpp, "no_qc": not t.qc,
    }


@register_command("extract")
def _extract(cfg: RunConfig) -> dict[str, Any]:
    e, t, layout = cfg.extract, cfg.tiling, _layout(cfg)
    return {
        "slides": [cfg.cohort.slides_dir], "out": layout.features, "coords": layout.tiles,
        "encoder": e.encoder, "weights": e.weights, "tile_um": t.tile_um, "tile_px": t.tile_px,
        "min_tissue": t.min_tissue, "batch_size": e.batch_size, "workers": e.workers, "device": e.device,
        "precision": e.precision, "stain_norm": e.stain_norm, "mpp": cfg.cohort.mpp,
    }


def _training(cfg: RunConfig, out: Path) -> dict[str, Any]:
    c, t = cfg.cohort, cfg.training
    values: dict[str, Any] = {
        "clini": c.clini_table, "slides_table": c.slide_table, "features": _layout(cfg).features,
        "patient_col": c.patient_col, "filename_col": c.filename_col, "out": out,
    }
    if t is not None:
        values.update(target=list(t.targets), model=t.model, bag_size=t.bag_size, epochs=t.epochs, seed=t.seed)
    return values


@register_command("crossval")
def _crossval(cfg: RunConfig) -> dict[str, Any]:
    values = _training(cfg, cfg.output_dir / "crossval")
    if cfg.training is not None:
        values["folds"] = cfg.training.folds
    return values


@register_command("train")
def _train(cfg: RunConfig) -> dict[str, Any]:
    return _training(cfg, cfg.output_dir / "train")


@register_command("deploy")
def _deploy(cfg: RunConfig) -> dict[str, Any]:
    target, layout = _first_target(cfg), _layout(cfg)
    values: dict[str, Any] = {
        "patient_col": cfg.cohort.patient_col, "filename_col": cfg.cohort.filename_col,
        "n_bootstrap": cfg.stats.n_bootstrap, "seed": cfg.stats.seed, "target": target,
    }
    if cfg.deploy is not None:
        values.update(features=layout.external_features, clini=cfg.deploy.clini_table, slides_table=cfg.deploy.slide_table)
    if target is not None:
        values.update(model=[layout.crossval(target)], out=layout.deploy(target), positive=cfg.stats.positive.get(target))
    return values


@register_command("stats")
def _stats(cfg: RunConfig) -> dict[str, Any]:
    target = _first_target(cfg)
    return {
        "n_bootstrap": cfg.stats.n_bootstrap, "seed": cfg.stats.seed,
        "positive": cfg.stats.positive.get(target) if target else None,
    }


@register_command("heatmaps")
def _heatmaps(cfg: RunConfig) -> dict[str, Any]:
    target, layout, h = _first_target(cfg), _layout(cfg), cfg.heatmaps
    values: dict[str, Any] = {
        "slides": cfg.cohort.slides_dir, "features": layout.features, "topk": h.topk, "mpp": cfg.cohort.mpp,
        "slides_table": cfg.cohort.slide_table, "patient_col": cfg.cohort.patient_col,
        "filename_col": cfg.cohort.filename_col,
    }
    if h.slides:
        values["slide"] = list(h.slides)
    if target is not None:
        values.update(out=layout.heatmaps(target), model=layout.train(target) / "model.ckpt")
    return values


@register_command("report")
def _report(cfg: RunConfig) -> dict[str, Any]:
    return {"run_dir": cfg.output_dir, "title": cfg.report.title}
