"""Config sections -> stage APIs. `run`, `demo` and the Snakemake workflow all call these, so a
stage is configured the same way however it is launched."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slidepredict.errors import SlidePredictError

if TYPE_CHECKING:
    from slidepredict.batch import BatchResult
    from slidepredict.config.models import (
        CohortConfig, DeployConfig, ExtractConfig, HeatmapsConfig, StatsConfig, TilingConfig, TrainingConfig,
    )
    from slidepredict.workflow import RunLayout

log = logging.getLogger("slidepredict")

MODEL_FILE = "model.ckpt"
PREDS_FILE = "patient-preds.csv"


def tiling_params(cfg: TilingConfig) -> Any:
    from slidepredict.tiling import TilingParams

    return TilingParams(tile_um=cfg.tile_um, tile_px=cfg.tile_px, min_tissue=cfg.min_tissue)


def _require_some(res: BatchResult, what: str, where: Path) -> BatchResult:
    """A batch where every slide failed cannot feed the next stage: stop with the first reason."""
    if res.failed and not (res.done or res.skipped or res.busy):
        slide, reason = res.failed[0]
        raise SlidePredictError(f"{what}: all {len(res.failed)} slides in {where} failed (first: {slide.name}: {reason})")
    return res


def tile(slides_dir: Path, out: Path, cfg: TilingConfig, mpp: float | None) -> BatchResult:
    from slidepredict.slide import find_slides
    from slidepredict.tiling import tile_many

    slides = find_slides([slides_dir])
    return _require_some(tile_many(slides, out, tiling_params(cfg), mpp=mpp, qc=cfg.qc), "tiling", slides_dir)


def extract(
    slides_dir: Path, out: Path, coords_dir: Path, tiling: TilingConfig, cfg: ExtractConfig, mpp: float | None,
    shard: str | None = None,
) -> BatchResult:
    from slidepredict.features import ExtractParams
    from slidepredict.features import extract as run_extract

    params = ExtractParams(batch_size=cfg.batch_size, workers=cfg.workers, device=cfg.device, precision=cfg.precision)
    res = run_extract(
        [slides_dir], out, cfg.encoder, weights=cfg.weights, tiling=tiling_params(tiling), params=params,
        coords_dir=coords_dir, stain_norm=None if cfg.stain_norm == "none" else cfg.stain_norm, shard=shard, mpp=mpp,
    )
    return _require_some(res, "feature extraction", slides_dir)


def train_config(cfg: TrainingConfig) -> Any:
    from slidepredict.training.fit import TrainConfig

    return TrainConfig(model=cfg.model, bag_size=cfg.bag_size, epochs=cfg.epochs, seed=cfg.seed)


def _one_target(mode: str, cohort: CohortConfig, features: Path, training: TrainingConfig, target: str, out: Path) -> None:
    """The same per-target path as the `crossval`/`train` commands; ``out`` is ``<root>/<target>``."""
    from slidepredict.training.targets import run_targets

    lines = run_targets(
        mode, features, cohort.slide_table, cohort.clini_table, [target], out.parent, train_config(training),
        folds=training.folds, categories=training.categories.get(target), patient_col=cohort.patient_col,
        filename_col=cohort.filename_col,
    )
    for line in lines:
        log.info(line)


def crossval(cohort: CohortConfig, features: Path, training: TrainingConfig, target: str, out: Path) -> Path:
    _one_target("crossval", cohort, features, training, target, out)
    return out / PREDS_FILE


def train(cohort: CohortConfig, features: Path, training: TrainingConfig, target: str, out: Path) -> Path:
    _one_target("train", cohort, features, training, target, out)
    return out / MODEL_FILE


def models_for(layout: RunLayout, target: str, training: TrainingConfig) -> list[Path]:
    """The fold ensemble when cross-validation ran, else the final model."""
    folds = sorted(layout.crossval(target).glob(f"fold-*/{MODEL_FILE}"))
    if training.crossval and folds:
        return folds
    final = layout.train(target) / MODEL_FILE
    if final.is_file():
        return [final]
    raise SlidePredictError(f"no trained model for target '{target}' in {layout.root}; run the crossval or train stage first")


def stats(preds: list[Path], out: Path, cfg: StatsConfig, target: str) -> Any:
    from slidepredict.stats import compute_stats

    return compute_stats(preds, out, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed, positive=cfg.positive.get(target))


def deploy(
    models: list[Path], features: Path, cfg: DeployConfig, cohort: CohortConfig, target: str, out: Path,
    stats_cfg: StatsConfig,
) -> Any:
    from slidepredict.deploy import deploy as run_deploy

    return run_deploy(
        models, features, out, clini=cfg.clini_table, slide_table=cfg.slide_table, target=target,
        patient_col=cohort.patient_col, filename_col=cohort.filename_col,
        n_bootstrap=stats_cfg.n_bootstrap, seed=stats_cfg.seed, positive=stats_cfg.positive.get(target),
    )


def heatmaps(model: Path, cohort: CohortConfig, features: Path, out: Path, cfg: HeatmapsConfig) -> list[Path]:
    from slidepredict.heatmaps import heatmaps as run_heatmaps
    from slidepredict.slide import find_slides, slide_stem

    names = list(cfg.slides)
    if not names:
        have = {p.stem for p in features.glob("*.h5")}
        names = [slide_stem(s) for s in find_slides([cohort.slides_dir]) if slide_stem(s) in have][: cfg.max_slides]
    return run_heatmaps(model, cohort.slides_dir, features, out, slides=names, topk=cfg.topk, mpp=cohort.mpp,
                        slide_table=cohort.slide_table, patient_col=cohort.patient_col, filename_col=cohort.filename_col)
