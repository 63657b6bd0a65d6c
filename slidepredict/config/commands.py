"""What each command reads from a run configuration, in one table that `run` and `--config` share.

A command uses whole settings sections (every field becomes a flag) or some of their fields,
plus paths that follow from the run layout. :func:`resolve` turns a config into the exact
keyword arguments of the command's pipeline function: `slidepredict run` calls it for every
stage, and `<command> --config` starts from it before applying the flags a user gave, so the
two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from slidepredict.config.models import RunConfig
from slidepredict.core.registry import Registry
from slidepredict.core.settings import flag_name
from slidepredict.layout import RunLayout


@dataclass(frozen=True)
class Uses:
    """A section a command reads: ``fields`` (default: every field with a flag) minus ``skip``."""

    section: str
    fields: tuple[str, ...] | None = None
    skip: tuple[str, ...] = ()

    @property
    def model(self) -> type[BaseModel]:
        return section_model(self.section)

    def names(self) -> list[str]:
        chosen = self.fields if self.fields is not None else tuple(self.model.model_fields)
        return [f for f in chosen if f not in self.skip and flag_name(self.model, f) is not None]


Paths = Callable[[RunConfig, RunLayout, "str | None"], dict[str, Any]]


@dataclass(frozen=True)
class CommandSpec:
    """One command: the settings it uses, the layout paths it takes, and which parameter names its target."""

    uses: tuple[Uses, ...]
    paths: Paths
    target_param: str | None = None


COMMANDS: Registry[CommandSpec] = Registry("command")


def section_model(section: str) -> type[BaseModel]:
    """The settings class of a `RunConfig` section (``training`` -> ``TrainingSettings``)."""
    from slidepredict.core.settings import submodel

    model = submodel(RunConfig.model_fields[section].annotation)
    if model is None:
        raise KeyError(section)
    return model


def first_target(cfg: RunConfig) -> str | None:
    return cfg.training.targets[0] if cfg.training else None


def resolve(cfg: RunConfig | None, command: str, target: str | None = None) -> dict[str, Any]:
    """Keyword arguments of ``pipeline.stages.<command>`` for ``cfg`` (defaults alone when there is none).

    Sections the config lacks (no ``training:``) start from their defaults, required keys unset.
    """
    spec = COMMANDS[command]
    kwargs: dict[str, Any] = {}
    for use in spec.uses:
        have = getattr(cfg, use.section, None) if cfg is not None else None
        kwargs[use.section] = have.model_copy(deep=True) if have is not None else use.model.model_construct()
    if cfg is not None:
        kwargs.update(spec.paths(cfg, RunLayout(cfg.output_dir), target or first_target(cfg)))
    return kwargs


def _register(name: str, *uses: Uses, target_param: str | None = None) -> Callable[[Paths], Paths]:
    def deco(paths: Paths) -> Paths:
        COMMANDS.register(name)(CommandSpec(uses=uses, paths=paths, target_param=target_param))
        return paths

    return deco


_SLIDE_COHORT = Uses("cohort", ("mpp", "mpp_override"))
_TABLES = Uses("cohort", ("clini_table", "slide_table", "patient_col", "filename_col"))
_COLUMNS = Uses("cohort", ("patient_col", "filename_col"))


@_register("tile", _SLIDE_COHORT, Uses("tiling"), Uses("extract", ("encoder",)))
def _tile(cfg: RunConfig, layout: RunLayout, target: str | None) -> dict[str, Any]:
    return {"slides": [cfg.cohort.slides_dir], "out": layout.tiles}


@_register("extract", _SLIDE_COHORT, Uses("tiling"), Uses("extract"))
def _extract(cfg: RunConfig, layout: RunLayout, target: str | None) -> dict[str, Any]:
    return {"slides": [cfg.cohort.slides_dir], "out": layout.features, "coords": layout.tiles}


IMAGE_BAGS = "bags.csv"  # what `cells` writes next to features/: the image table plus BAG and FILENAME


def tuned(cfg: RunConfig, layout: RunLayout) -> tuple[Path, Path]:
    """With `finetune:`: the encoder tuned on every training image, and the training images embedded by it."""
    from slidepredict.layout import TUNED_FILE

    folder = layout.finetune / str(first_target(cfg))
    return folder / TUNED_FILE, folder / "cells"


def training_cohort(cfg: RunConfig, layout: RunLayout) -> dict[str, Any]:
    """Features and tables of the cohort models train on: the slides, or the `cells:` image cohort's bags
    (embedded by the tuned encoder when there is a `finetune:` section)."""
    if cfg.cells is None:
        return {"features": layout.features}
    cells = tuned(cfg, layout)[1] if cfg.finetune is not None else layout.cells
    bags = cells / IMAGE_BAGS
    cohort = cfg.cohort.model_copy(update={"clini_table": bags, "slide_table": bags, "patient_col": "BAG",
                                           "filename_col": "FILENAME"})
    return {"features": cells / "features", "cohort": cohort}


def scored_cells(cfg: RunConfig, layout: RunLayout) -> Path:
    """The image cohort a screen scores and clusters are found in: the deploy: plate, else the cells: cohort."""
    return layout.external_cells if cfg.deploy is not None else layout.cells


@_register("cells", Uses("cells"), Uses("extract", skip=("stain_norm", "stain_ref", "workers")))
def _cells(cfg: RunConfig, layout: RunLayout, target: str | None) -> dict[str, Any]:
    return {"out": layout.cells}


@_register("finetune", Uses("cells"), Uses("extract", skip=("stain_norm", "stain_ref", "workers", "batch_size")),
           Uses("finetune"), Uses("training", skip=("device", "workers")))
def _finetune(cfg: RunConfig, layout: RunLayout, target: str | None) -> dict[str, Any]:
    return {"out": layout.finetune}


@_register("screen", Uses("screen"), Uses("cells", ("plate_format",)))
def _screen(cfg: RunConfig, layout: RunLayout, target: str | None) -> dict[str, Any]:
    paths: dict[str, Any] = {"out": layout.screen()}
    if cfg.cells is not None and cfg.deploy is not None:
        paths["bags"] = layout.external_cells / IMAGE_BAGS
    return paths


@_register("clusters", Uses("clusters"))
def _clusters(cfg: RunConfig, layout: RunLayout, target: str | None) -> dict[str, Any]:
    paths: dict[str, Any] = {"out": layout.clusters()}
    if cfg.cells is not None:
        where = scored_cells(cfg, layout)
        images = cfg.deploy.slides_dir if cfg.deploy is not None else cfg.cells.images
        paths.update(features=where / "features", bags=where / IMAGE_BAGS, images=images)
    return paths


@_register("crossval", _TABLES, Uses("training"))
def _crossval(cfg: RunConfig, layout: RunLayout, target: str | None) -> dict[str, Any]:
    return {**training_cohort(cfg, layout), "out": layout.crossval_root}


@_register("train", _TABLES, Uses("training", skip=("folds", "baseline", "target_sensitivity", "leave_group_out")))
def _train(cfg: RunConfig, layout: RunLayout, target: str | None) -> dict[str, Any]:
    return {**training_cohort(cfg, layout), "out": layout.train_root}


def trained_models(cfg: RunConfig, layout: RunLayout, target: str) -> Path:
    """The fold ensemble's folder when cross-validation is configured, else the final model's.

    For heatmaps of the training cohort the fold folder means each patient is drawn by the fold
    that held it out; the final model alone would draw every training patient in-sample. With
    `finetune:` each fold has its own encoder, so only the final model fits features of new images.
    """
    if cfg.finetune is not None:
        return layout.train(target)
    return layout.crossval(target) if cfg.training is None or cfg.training.crossval else layout.train(target)


@_register("deploy", _COLUMNS, Uses("deploy", ("clini_table", "slide_table")), Uses("training", ("device",)),
           Uses("stats"), target_param="target")
def _deploy(cfg: RunConfig, layout: RunLayout, target: str | None) -> dict[str, Any]:
    paths: dict[str, Any] = {"features": layout.external_features} if cfg.deploy is not None else {}
    if cfg.deploy is not None and cfg.cells is not None:  # an image plate: its bags, its labels if it has them
        paths.update(training_cohort(cfg, layout), features=layout.external_cells / "features")
        bags = layout.external_cells / IMAGE_BAGS
        paths["deploy"] = cfg.deploy.model_copy(update={
            "slide_table": bags, "clini_table": bags if target is not None and target in _columns(cfg.deploy.slide_table) else None})
    if target is not None:
        paths.update(model=[trained_models(cfg, layout, target)], out=layout.deploy(target), target=target)
    return paths


def _columns(table: Path | None) -> list[str]:
    """A table's header (empty when there is none): whether a deployed plate carries the target's labels."""
    from slidepredict.cohort.tables import read_table

    return [] if table is None or not Path(table).is_file() else list(read_table(table).columns)


@_register("stats", Uses("stats"))
def _stats(cfg: RunConfig, layout: RunLayout, target: str | None) -> dict[str, Any]:
    if target is None or cfg.training is None or not cfg.training.crossval:
        return {}
    return {"preds": [layout.crossval_preds(target)], "out": layout.stats(target)}


@_register("compare", Uses("stats", ("n_bootstrap", "seed", "ci", "positive")))
def _compare(cfg: RunConfig, layout: RunLayout, target: str | None) -> dict[str, Any]:
    return {}


@_register("heatmaps", Uses("cohort", ("slides_dir", "slide_table", "patient_col", "filename_col", "mpp", "mpp_override")),
           Uses("heatmaps"), Uses("training", ("device",)))
def _heatmaps(cfg: RunConfig, layout: RunLayout, target: str | None) -> dict[str, Any]:
    paths: dict[str, Any] = {"features": layout.features}
    if target is not None:
        paths.update(model=[trained_models(cfg, layout, target)], out=layout.heatmaps(target))
    return paths


@_register("report", Uses("report"))
def _report(cfg: RunConfig, layout: RunLayout, target: str | None) -> dict[str, Any]:
    return {"run_dir": layout.root}
