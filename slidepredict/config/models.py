"""The run configuration: each stage's settings model is one section of :class:`RunConfig`.

The section classes live with their stages (``slidepredict/<stage>/settings.py``) and are the
stages' parameter objects; field descriptions double as the comments of ``slidepredict init``'s
template, the docs' config reference and the flags' help, so these can never drift apart.
"""

from __future__ import annotations

from pathlib import Path

from slidepredict.core.settings import Settings, setting
from slidepredict.features.settings import ExtractSettings
from slidepredict.heatmaps.settings import HeatmapSettings
from slidepredict.report.settings import ReportSettings
from slidepredict.stats.settings import StatsSettings
from slidepredict.training.settings import TrainingSettings


class CohortSettings(Settings):
    """Where the slides and the tables of the training cohort are."""

    slides_dir: Path = setting(description="Folder with the slides (searched recursively).", flag="--slides")
    clini_table: Path | None = setting(
        None, "Clinical table (CSV/XLSX): PATIENT plus one column per target.", flag="--clini")
    slide_table: Path | None = setting(
        None, "Slide table (CSV/XLSX): PATIENT, FILENAME (with or without extension).", flag="--slides-table")
    patient_col: str = setting("PATIENT", "Patient ID column in both tables.")
    filename_col: str = setting("FILENAME", "Slide file name column in the slide table.")
    mpp: float | None = setting(None, "Microns per pixel for slides whose file lacks it (null: read from the file).", gt=0)


class TilingSettings(Settings):
    """Tissue detection and the tile grid."""

    tile_um: float = setting(256.0, "Tile edge in microns.", gt=0)
    tile_px: int | None = setting(
        None, "Tile edge in pixels after resizing (null: the encoder's input size, 224 when tiling alone).", gt=0)
    min_tissue: float = setting(0.5, "Keep tiles with at least this tissue fraction.", ge=0, le=1)
    max_background: float = setting(
        0.8, "Drop tiles whose pixels are mostly glass-coloured (e.g. filled lumen holes).", gt=0, le=1)
    min_sharpness: float = setting(
        0.03, "Drop blurred tiles: mean |Laplacian| of grey at 8 um/px (real tissue 0.06-0.15; 0: off).", ge=0)
    qc: bool = setting(True, "Write a QC thumbnail per slide (mask outline + tile grid).")


class DeploySettings(Settings):
    """An external cohort to validate on (the fold ensemble, or the final model, is applied)."""

    slides_dir: Path = setting(
        description="Folder with the external cohort's slides.",
        run_only="`run` tiles and embeds them into external/; by hand: `slidepredict extract SLIDES --out ...`")
    clini_table: Path | None = setting(
        None, "Clinical table of the external cohort (null: predictions only).", flag="--clini")
    slide_table: Path | None = setting(None, "Slide table of the external cohort.", flag="--slides-table")
    mpp: float | None = setting(
        None, "MPP for external slides whose file lacks it.", gt=0,
        run_only="`run` tiles the external slides with it; by hand: `slidepredict extract --mpp`")


class RunConfig(Settings):
    """A whole workflow: the stages present are run in order by `slidepredict run`."""

    output_dir: Path = setting(
        description="Everything the run writes goes here (resolved config and log too).",
        run_only="each command's --out defaults to its folder under output_dir")
    cohort: CohortSettings
    tiling: TilingSettings = setting(default_factory=TilingSettings)
    extract: ExtractSettings = setting(default_factory=ExtractSettings)
    training: TrainingSettings | None = None
    deploy: DeploySettings | None = None
    stats: StatsSettings = setting(default_factory=StatsSettings)
    heatmaps: HeatmapSettings = setting(default_factory=HeatmapSettings)
    report: ReportSettings = setting(default_factory=ReportSettings)
