"""One function per command, taking the settings sections the command uses (``config/commands.py``).

The CLI parses flags into these arguments and `slidepredict run` builds them from the config
with the same resolver; neither holds any stage logic of its own.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from slidepredict.core.batch import output_folder
from slidepredict.core.settings import for_target

if TYPE_CHECKING:
    from slidepredict.core.batch import BatchResult
    from slidepredict.cells.settings import CellSettings, ClusterSettings, FinetuneSettings, ScreenSettings
    from slidepredict.cohort.settings import CohortSettings
    from slidepredict.deploy.settings import DeploySettings
    from slidepredict.tiling.settings import TilingSettings
    from slidepredict.deploy.ensemble import DeployResult
    from slidepredict.features.settings import ExtractSettings
    from slidepredict.heatmaps.api import HeatmapRun
    from slidepredict.heatmaps.settings import HeatmapSettings
    from slidepredict.report.settings import ReportSettings
    from slidepredict.stats.api import StatsResult
    from slidepredict.stats.settings import StatsSettings
    from slidepredict.training.settings import TrainingSettings

F = TypeVar("F", bound=Callable[..., Any])


def writes(folder: Callable[[dict[str, Any]], Path] = lambda a: a["out"]) -> Callable[[F], F]:
    """Run the stage inside :func:`~slidepredict.core.batch.output_folder` of ``folder(arguments)``."""
    def wrap(fn: F) -> F:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            with output_folder(folder(bound.arguments)):
                return fn(*args, **kwargs)
        return run  # type: ignore[return-value]
    return wrap


@writes()
def tile(slides: list[Path], out: Path, cohort: CohortSettings, tiling: TilingSettings, extract: ExtractSettings,
         shard: str | None = None) -> BatchResult:
    """Tissue detection and tile coordinates; ``tile_px: null`` follows the configured encoder."""
    from slidepredict.core.batch import select_shard
    from slidepredict.features import get_encoder
    from slidepredict.slide import find_slides
    from slidepredict.tiling.grid import resolve_tile_px, tile_many

    paths = select_shard(find_slides(slides, required=True), shard)
    return tile_many(paths, out, resolve_tile_px(tiling, get_encoder(extract.encoder).input_px), mpp=cohort.mpp_choice())


@writes()
def extract(slides: list[Path], out: Path, cohort: CohortSettings, tiling: TilingSettings, extract: ExtractSettings,
            coords: Path | None = None, shard: str | None = None) -> BatchResult:
    """Feature files per slide (tiling first where no coordinates exist)."""
    from slidepredict.features.extraction import extract as run_extract

    return run_extract(slides, out, extract, tiling=tiling, coords_dir=coords, shard=shard, mpp=cohort.mpp_choice())


@writes()
def cells(out: Path, cells: CellSettings, extract: ExtractSettings) -> BatchResult:
    """Feature files per microscopy image (its units: the image, tiles or cells) and the bags table."""
    from slidepredict.cells.extract import embed_images

    return embed_images(cells, extract, out)


@writes()
def finetune(out: Path, cells: CellSettings, extract: ExtractSettings, finetune: FinetuneSettings,
             training: TrainingSettings, crossval: bool = False, frozen_cells: Path | None = None) -> list[str]:
    """An encoder fine-tuned per target on an image cohort, or a cross-validation with one tuned per fold."""
    from slidepredict.cells.tuned import run_finetune

    return list(run_finetune(cells, extract, finetune, training, out, crossval=crossval, frozen_cells=frozen_cells))


@writes()
def screen(preds: Path, bags: Path, out: Path, screen: ScreenSettings, cells: CellSettings) -> dict[str, Any]:
    """Per-well scores, robust z and SSMD against the controls, hits and dose-response fits of a screen."""
    from slidepredict.cells.screen import run_screen

    return run_screen(preds, bags, out, screen, cells.plate_format)


@writes()
def clusters(features: Path, bags: Path, images: Path, out: Path, clusters: ClusterSettings) -> dict[str, Any]:
    """Sub-populations: clusters of unit embeddings, per-sample fractions, enrichment tests, a montage."""
    from slidepredict.cells.clusters import run_clusters

    return run_clusters(features, bags, images, out, clusters)


@writes()
def crossval(features: Path, out: Path, cohort: CohortSettings, training: TrainingSettings,
             fold: int | None = None) -> list[str]:
    """Patient-level k-fold cross-validation per target; one summary line per target."""
    from slidepredict.training.targets import run_targets

    return list(run_targets("crossval", features, out, cohort, training, fold=fold))


@writes()
def train(features: Path, out: Path, cohort: CohortSettings, training: TrainingSettings) -> list[str]:
    """The final model per target, trained on every patient."""
    from slidepredict.training.targets import run_targets

    return list(run_targets("train", features, out, cohort, training))


@writes()
def deploy(model: list[Path], features: Path, out: Path, cohort: CohortSettings, deploy: DeploySettings,
           training: TrainingSettings, stats: StatsSettings, target: str | None = None) -> DeployResult:
    """Apply one model or a fold ensemble to a cohort; statistics when it has labels."""
    from slidepredict.deploy.ensemble import deploy as run_deploy

    return run_deploy(
        model, features, out, clini=deploy.clini_table, slide_table=deploy.slide_table, target=target,
        patient_col=cohort.patient_col, filename_col=cohort.filename_col, device=training.device,
        n_bootstrap=stats.n_bootstrap, seed=stats.seed, ci=stats.ci, positive=for_target(stats.positive, target),
    )


@writes()
def stats(preds: list[Path], out: Path, stats: StatsSettings) -> StatsResult:
    """Metrics with bootstrap CIs from patient-preds.csv files."""
    from slidepredict.stats.api import compute_stats

    return compute_stats(preds, out, n_bootstrap=stats.n_bootstrap, seed=stats.seed, ci=stats.ci, positive=stats.positive,
                         by=stats.by)


@writes()
def compare(preds: list[Path], out: Path, stats: StatsSettings) -> Any:
    """Paired comparison of models scored on the same patients (DeLong test, paired bootstrap)."""
    from slidepredict.stats.compare import compare_models

    return compare_models(preds, out, n_bootstrap=stats.n_bootstrap, seed=stats.seed, ci=stats.ci,
                          positive=stats.positive)


@writes()
def heatmaps(model: list[Path], features: Path, out: Path, cohort: CohortSettings, heatmaps: HeatmapSettings,
             training: TrainingSettings) -> HeatmapRun:
    """Per-tile scores, overlays, top tiles and QuPath files for the cohort's slides."""
    from slidepredict.heatmaps.api import run_heatmaps

    return run_heatmaps(
        model, cohort.slides_dir, features, out, heatmaps, mpp=cohort.mpp_choice(), device=training.device,
        slide_table=cohort.slide_table, patient_col=cohort.patient_col, filename_col=cohort.filename_col,
    )


@writes(lambda a: Path(a["out"]).parent if a["out"] else a["run_dir"])
def report(run_dir: Path, report: ReportSettings, out: Path | None = None) -> Path:
    """The HTML page of a run folder."""
    from slidepredict.report import build_report

    return build_report(run_dir, out=out, title=report.title)
