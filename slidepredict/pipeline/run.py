"""`slidepredict run`: every configured stage in order, each skipping work already complete.

Stages are registered functions over one :class:`RunContext`. Each calls the same pipeline
function as its command, with the arguments :func:`~slidepredict.config.commands.resolve`
builds from the config, so `run` and `<command> --config` cannot disagree.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slidepredict.config import RunConfig, write_resolved
from slidepredict.config.commands import resolve, tuned
from slidepredict.core.registry import Registry
from slidepredict.core.errors import SlidePredictError
from slidepredict.layout import LOG_FILE, NORM_FILE, PREDS_FILE, RunLayout
from slidepredict.pipeline import stages

log = logging.getLogger("slidepredict")


@dataclass
class RunContext:
    cfg: RunConfig
    layout: RunLayout
    results: dict[str, Any] = field(default_factory=dict)
    headlines: list[str] = field(default_factory=list)


StageFn = Callable[[RunContext], str | None]
# Stages run in registration order; a stage returns a one-line summary, or None when not configured.
# Commands that are not stages: stats (run computes it inside crossval), compare (a user's own pairs of
# models) and cells (an image cohort's embedding is its `extract` stage, a deploy: plate's part of `deploy`).
NOT_STAGES = ("stats", "compare", "cells", "finetune")
STAGES: Registry[StageFn] = Registry("stage")
register_stage = STAGES.register


def _targets(ctx: RunContext) -> list[str]:
    return list(ctx.cfg.training.targets) if ctx.cfg.training else []


def require_some(res: Any, what: str, where: Path) -> Any:
    """A batch where every slide failed cannot feed the next stage: stop with the first reason."""
    if res.failed and not (res.done or res.skipped or res.busy):
        slide, reason = res.failed[0]
        raise SlidePredictError(f"{what}: all {len(res.failed)} slides in {where} failed (first: {slide.name}: {reason})")
    return res


def external(cfg: RunConfig, layout: RunLayout, command: str, target: str | None = None) -> dict[str, Any]:
    """``tile``/``extract``/``heatmaps``/``cells`` arguments for the external cohort of the `deploy:` section."""
    assert cfg.deploy is not None
    kwargs = resolve(cfg, command, target)
    d = cfg.deploy
    if command == "cells":  # a plate to score: embedded exactly like the cohort the model learned from
        cells = kwargs["cells"]
        if cfg.finetune is not None:
            kwargs["extract"] = kwargs["extract"].model_copy(update={"weights": str(tuned(cfg, layout)[0])})
        same = {"intensity_from": layout.cells / NORM_FILE} if cells.scope == "cohort" and \
            cells.intensity_range is None and cells.intensity_from is None else {}
        kwargs.update(out=layout.external_cells,
                      cells=cells.model_copy(update={"images": d.slides_dir, "table": d.slide_table, "plates": None, **same}))
        return kwargs
    kwargs["cohort"] = kwargs["cohort"].model_copy(update={"mpp": d.mpp, "mpp_override": False, "slides_dir": d.slides_dir,
                                                       "slide_table": d.slide_table})
    outs = {"tile": layout.external_tiles, "extract": layout.external_features}
    if command == "heatmaps":
        assert target is not None
        kwargs.update(features=layout.external_features, out=layout.external_heatmaps(target))
        return kwargs
    kwargs["slides"] = [d.slides_dir]
    kwargs["out"] = outs[command]
    if command == "extract":
        kwargs["coords"] = layout.external_tiles
    return kwargs


@register_stage("tile")
def _tile(ctx: RunContext) -> str | None:
    if ctx.cfg.cells is not None:  # images are cut into units while they are embedded
        return None
    return require_some(stages.tile(**resolve(ctx.cfg, "tile")), "tiling", ctx.cfg.cohort.slides_dir).summary()


@register_stage("extract")
def _extract(ctx: RunContext) -> str:
    if ctx.cfg.cells is not None:
        return require_some(stages.cells(**resolve(ctx.cfg, "cells")), "embedding", ctx.cfg.cells.images).summary()
    res = stages.extract(**resolve(ctx.cfg, "extract"))
    return require_some(res, "feature extraction", ctx.cfg.cohort.slides_dir).summary()


@register_stage("crossval")
def _crossval(ctx: RunContext) -> str | None:
    t = ctx.cfg.training
    if t is None or not t.crossval:
        return None
    if ctx.cfg.finetune is not None:  # one encoder tuned per fold, the frozen encoder on the same folds beside it
        lines = stages.finetune(**{**resolve(ctx.cfg, "finetune"), "out": ctx.layout.crossval_root}, crossval=True,
                                frozen_cells=ctx.layout.cells)
    else:
        lines = stages.crossval(**resolve(ctx.cfg, "crossval"))
    for line in lines:
        log.info(line)
    from slidepredict.cells.tuned import frozen_note
    from slidepredict.training.folds import baseline_note

    lines = []
    for target in _targets(ctx):
        figures = stages.stats(**resolve(ctx.cfg, "stats", target)).headline
        per = f"per {ctx.cfg.stats.by}" if ctx.cfg.stats.by else "per fold"
        headline = figures["text"] + (f"; {per} {figures['per_group']}" if figures.get("per_group") else "")
        headline += baseline_note(ctx.layout.crossval(target), t.baseline_pooling(), target)
        headline += frozen_note(ctx.layout.crossval(target), target)
        ctx.headlines.append(f"{target} cross-validation (held-out folds, pooled): {headline}")
        lines.append(f"{target}: {headline}")
    return "; ".join(lines)


@register_stage("train")
def _train(ctx: RunContext) -> str | None:
    t = ctx.cfg.training
    if t is None or not t.train:
        return None
    if ctx.cfg.finetune is not None:  # tune on every training image, embed them with it, train on that
        stages.finetune(**resolve(ctx.cfg, "finetune"))
        weights, cells_dir = tuned(ctx.cfg, ctx.layout)
        kwargs = {**resolve(ctx.cfg, "cells"), "out": cells_dir}
        kwargs["extract"] = kwargs["extract"].model_copy(update={"weights": str(weights)})
        require_some(stages.cells(**kwargs), "embedding with the tuned encoder", ctx.cfg.cells.images)
    stages.train(**resolve(ctx.cfg, "train"))
    from slidepredict.stats.operating import carry_to_final

    for target in _targets(ctx) if t.crossval else []:
        carry_to_final(ctx.layout.crossval(target), ctx.layout.train(target))
    return ", ".join(str(ctx.layout.final_model(target)) for target in _targets(ctx))


@register_stage("deploy")
def _deploy(ctx: RunContext) -> str | None:
    d = ctx.cfg.deploy
    if d is None or ctx.cfg.training is None:
        return None
    if ctx.cfg.cells is not None:
        require_some(stages.cells(**external(ctx.cfg, ctx.layout, "cells")), "embedding", d.slides_dir)
    else:
        require_some(stages.tile(**external(ctx.cfg, ctx.layout, "tile")), "tiling", d.slides_dir)
        require_some(stages.extract(**external(ctx.cfg, ctx.layout, "extract")), "feature extraction", d.slides_dir)
    lines = []
    for target in _targets(ctx):
        result = stages.deploy(**resolve(ctx.cfg, "deploy", target))
        if result.headline:
            text = result.headline["text"] + result.headline["carried_text"]
            if result.overlap:
                seen = len(set().union(*result.overlap.values()))
                text += f" ({result.headline['n']} patients; {seen} the models trained on are left out)"
            ctx.headlines.append(f"{target} external validation: {text}")
            lines.append(f"{target}: {text}")
        else:
            lines.append(f"{target}: predictions only" + (f" ({result.stats_skipped})" if result.stats_skipped else ""))
    return "; ".join(lines)


@register_stage("screen")
def _screen(ctx: RunContext) -> str | None:
    """The deployed plate's wells against its controls, from the first target with the scored class."""
    s = ctx.cfg.screen
    if s is None:
        return None
    preds = [ctx.layout.deploy(t) / PREDS_FILE for t in _targets(ctx)]
    scored = [p for p in preds if any(c.endswith(f"_{s.score_class}") for c in _header(p))] or preds[:1]
    res = stages.screen(**resolve(ctx.cfg, "screen"), preds=scored[0])
    hit = ", ".join(res["compounds_hit"]) or "none"
    ctx.headlines.append(f"Screen: {res['wells']} wells ({res['controls']} controls), {res['hits']} hit(s) among "
                         f"compound-doses: {hit}")
    ctx.results["screen_result"] = res
    return f"{res['wells']} wells, hits: {hit}"


@register_stage("clusters")
def _clusters(ctx: RunContext) -> str | None:
    if ctx.cfg.clusters is None or ctx.cfg.cells is None:
        return None
    res = stages.clusters(**resolve(ctx.cfg, "clusters"))
    ctx.results["clusters_result"] = res
    return f"{res['k']} clusters over {res['units']} units"


def _header(path: Path) -> list[str]:
    return path.open().readline().strip().split(",") if path.is_file() else []


@register_stage("heatmaps")
def _heatmaps(ctx: RunContext) -> str | None:
    if not ctx.cfg.heatmaps.enabled or ctx.cfg.training is None:
        return None
    if ctx.cfg.cells is not None:
        log.info("heatmaps of image cohorts are drawn per image by `slidepredict heatmaps` (docs/cells.md)")
        return None
    done = []
    for target in _targets(ctx):
        run = stages.heatmaps(**resolve(ctx.cfg, "heatmaps", target))
        text = f"{target}: {len(run.folders)} slides"
        if ctx.cfg.deploy is not None:
            ext = stages.heatmaps(**external(ctx.cfg, ctx.layout, "heatmaps", target))
            text += f" + {len(ext.folders)} external"
        done.append(text)
    return "; ".join(done)


@register_stage("report")
def _report(ctx: RunContext) -> str | None:
    if not ctx.cfg.report.enabled:
        return None
    path = stages.report(**resolve(ctx.cfg, "report"))
    ctx.results["report"] = path
    return str(path)


def check_finetune(cfg: RunConfig) -> None:
    """What a `finetune:` section needs in `run`: an image cohort, one target, and the final model for deploy."""
    if cfg.finetune is None:
        return
    if cfg.cells is None or cfg.training is None:
        raise SlidePredictError("finetune: tunes the encoder on an image cohort's cells; add cells: and training: "
                                "sections (docs/cells.md)")
    if len(set(cfg.training.targets)) != 1:
        raise SlidePredictError(f"finetune: in `slidepredict run` tunes one encoder for one target; training.targets "
                                f"has {len(set(cfg.training.targets))} ({', '.join(cfg.training.targets)}): run one "
                                "config per target")
    if cfg.deploy is not None and not cfg.training.train:
        raise SlidePredictError("finetune: with deploy: scores the plate with the final model and its tuned encoder; "
                                "set training.train: true")


def run_workflow(cfg: RunConfig, only: list[str] | None = None) -> RunContext:
    """Run the stages (all, or those named in ``only``) and record the resolved config and a log."""
    from slidepredict.core.batch import check_writable
    from slidepredict.core.progress import add_logfile

    if cfg.screen is not None and (cfg.cells is None or cfg.training is None or cfg.deploy is None):
        raise SlidePredictError("screen: scores the images of a deploy: plate with a model trained on the cells: "
                                "cohort; add cells:, training: and deploy: sections (docs/cells.md)")
    if cfg.clusters is not None and cfg.cells is None:
        raise SlidePredictError("clusters: in `slidepredict run` clusters an image cohort's cells; add a cells: "
                                "section, or run `slidepredict clusters` on tile features (docs/cells.md)")
    check_finetune(cfg)
    unknown = sorted(set(only or []) - set(STAGES))
    if unknown:
        raise SlidePredictError(f"unknown stage(s) {', '.join(unknown)}; stages are: {', '.join(STAGES)}")
    root = check_writable(cfg.output_dir)
    write_resolved(cfg, root)
    ctx = RunContext(cfg=cfg, layout=RunLayout(root))
    with add_logfile(root / LOG_FILE):
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
