"""`slidepredict run`: every configured stage in order, each skipping work already complete.

Stages are registered functions over one :class:`RunContext`; the folder layout of a run
lives in :class:`RunLayout`, so the CLI, the Snakemake workflow and the report agree on
where each stage's files are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slidepredict.config import RunConfig, write_resolved
from slidepredict.errors import SlidePredictError
from slidepredict.registry import Registry

log = logging.getLogger("slidepredict")


@dataclass(frozen=True)
class RunLayout:
    """Where each stage of a run writes, relative to ``output_dir``."""

    root: Path

    @property
    def tiles(self) -> Path:
        return self.root / "tiles"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def external_tiles(self) -> Path:
        return self.root / "external" / "tiles"

    @property
    def external_features(self) -> Path:
        return self.root / "external" / "features"

    def crossval(self, target: str) -> Path:
        return self.root / "crossval" / target

    def train(self, target: str) -> Path:
        return self.root / "train" / target

    def deploy(self, target: str) -> Path:
        return self.root / "deploy" / target

    def stats(self, target: str) -> Path:
        return self.root / "stats" / f"crossval-{target}"

    def heatmaps(self, target: str) -> Path:
        return self.root / "heatmaps" / target


@dataclass
class RunContext:
    cfg: RunConfig
    layout: RunLayout
    results: dict[str, Any] = field(default_factory=dict)
    headlines: list[str] = field(default_factory=list)


StageFn = Callable[[RunContext], str | None]
# Stages run in registration order; a stage returns a one-line summary, or None when not configured.
STAGES: Registry[StageFn] = Registry("stage")
register_stage = STAGES.register


def _targets(ctx: RunContext) -> list[str]:
    return list(ctx.cfg.training.targets) if ctx.cfg.training else []


@register_stage("tile")
def _tile(ctx: RunContext) -> str:
    from slidepredict import stages

    res = stages.tile(ctx.cfg.cohort.slides_dir, ctx.layout.tiles, ctx.cfg.tiling, ctx.cfg.cohort.mpp)
    return res.summary()


@register_stage("extract")
def _extract(ctx: RunContext) -> str:
    from slidepredict import stages

    res = stages.extract(
        ctx.cfg.cohort.slides_dir, ctx.layout.features, ctx.layout.tiles, ctx.cfg.tiling, ctx.cfg.extract,
        ctx.cfg.cohort.mpp,
    )
    return res.summary()


@register_stage("crossval")
def _crossval(ctx: RunContext) -> str | None:
    from slidepredict import stages

    t = ctx.cfg.training
    if t is None or not t.crossval:
        return None
    lines = []
    for target in _targets(ctx):
        out = ctx.layout.crossval(target)
        preds = stages.crossval(ctx.cfg.cohort, ctx.layout.features, t, target, out)
        stats = stages.stats([preds], ctx.layout.stats(target), ctx.cfg.stats, target)
        ctx.headlines.append(f"{target} cross-validation: {stats.headline['text']}")
        lines.append(f"{target}: {stats.headline['text']}")
    return "; ".join(lines)


@register_stage("train")
def _train(ctx: RunContext) -> str | None:
    from slidepredict import stages

    t = ctx.cfg.training
    if t is None or not t.train:
        return None
    paths = [stages.train(ctx.cfg.cohort, ctx.layout.features, t, target, ctx.layout.train(target)) for target in _targets(ctx)]
    return ", ".join(str(p) for p in paths)


@register_stage("deploy")
def _deploy(ctx: RunContext) -> str | None:
    from slidepredict import stages

    d = ctx.cfg.deploy
    if d is None or ctx.cfg.training is None:
        return None
    stages.tile(d.slides_dir, ctx.layout.external_tiles, ctx.cfg.tiling, d.mpp)
    stages.extract(d.slides_dir, ctx.layout.external_features, ctx.layout.external_tiles, ctx.cfg.tiling, ctx.cfg.extract, d.mpp)
    lines = []
    for target in _targets(ctx):
        models = stages.models_for(ctx.layout, target, ctx.cfg.training)
        result = stages.deploy(models, ctx.layout.external_features, d, ctx.cfg.cohort, target, ctx.layout.deploy(target), ctx.cfg.stats)
        if result.headline:
            ctx.headlines.append(f"{target} external validation: {result.headline['text']}")
            lines.append(f"{target}: {result.headline['text']}")
        else:
            lines.append(f"{target}: predictions only")
    return "; ".join(lines)


@register_stage("heatmaps")
def _heatmaps(ctx: RunContext) -> str | None:
    from slidepredict import stages

    h = ctx.cfg.heatmaps
    if not h.enabled or ctx.cfg.training is None:
        return None
    done = []
    for target in _targets(ctx):
        models = stages.models_for(ctx.layout, target, ctx.cfg.training)
        folders = stages.heatmaps(models[0], ctx.cfg.cohort, ctx.layout.features, ctx.layout.heatmaps(target), h)
        done.append(f"{target}: {len(folders)} slides")
    return "; ".join(done)


@register_stage("report")
def _report(ctx: RunContext) -> str | None:
    from slidepredict.report import build_report

    if not ctx.cfg.report.enabled:
        return None
    path = build_report(ctx.cfg.output_dir, title=ctx.cfg.report.title)
    ctx.results["report"] = path
    return str(path)


def run_workflow(cfg: RunConfig, only: list[str] | None = None) -> RunContext:
    """Run the stages (all, or those named in ``only``) and record the resolved config and a log."""
    from slidepredict.batch import check_writable
    from slidepredict.progress import add_logfile

    unknown = sorted(set(only or []) - set(STAGES))
    if unknown:
        raise SlidePredictError(f"unknown stage(s) {', '.join(unknown)}; stages are: {', '.join(STAGES)}")
    root = check_writable(cfg.output_dir)
    write_resolved(cfg, root)
    ctx = RunContext(cfg=cfg, layout=RunLayout(root))
    with add_logfile(root / "run.log"):
        for name, stage in STAGES.items():
            if only and name not in only:
                continue
            start = time.perf_counter()
            log.info("stage %s: starting", name)
            summary = stage(ctx)
            took = time.perf_counter() - start
            ctx.results[name] = summary
            log.info("stage %s: %s (%.0f s)", name, summary if summary is not None else "not configured, skipped", took)
    return ctx
