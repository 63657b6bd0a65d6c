"""The run configuration: one pydantic model per stage, composed into :class:`RunConfig`.

Field descriptions double as the comments of ``slidepredict init``'s template and as the
config reference in the docs, so the three can never drift apart. Unknown keys are
rejected (``extra="forbid"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CohortConfig(Section):
    """Where the slides and the tables of the training cohort are."""

    slides_dir: Path = Field(description="Folder with the slides (searched recursively).")
    clini_table: Path | None = Field(None, description="Clinical table (CSV/XLSX): PATIENT plus one column per target.")
    slide_table: Path | None = Field(None, description="Slide table (CSV/XLSX): PATIENT, FILENAME (with or without extension).")
    patient_col: str = Field("PATIENT", description="Patient ID column in both tables.")
    filename_col: str = Field("FILENAME", description="Slide file name column in the slide table.")
    mpp: float | None = Field(None, gt=0, description="Microns per pixel for slides whose header lacks it (null: read from the file).")


class TilingConfig(Section):
    """Tissue detection and the tile grid."""

    tile_um: float = Field(256.0, gt=0, description="Tile edge in microns.")
    tile_px: int = Field(224, gt=0, description="Tile edge in pixels after resizing (the encoder's input).")
    min_tissue: float = Field(0.5, ge=0, le=1, description="Keep tiles with at least this tissue fraction.")
    qc: bool = Field(True, description="Write a QC thumbnail per slide (mask outline + tile grid).")


class ExtractConfig(Section):
    """Tile embeddings."""

    encoder: str = Field("resnet50-trunc", description="Encoder name (see `slidepredict encoders`).")
    weights: str | None = Field(None, description="Weights: a file, 'local-dir:PATH', 'random' (tests only), or null for the HF cache.")
    batch_size: int = Field(64, gt=0, description="Tiles per forward pass.")
    workers: int | None = Field(None, ge=0, description="DataLoader processes decoding tiles (null: auto by device and cores).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the encoder runs.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="Autocast precision (auto: bf16 where supported).")
    stain_norm: Literal["none", "macenko"] = Field("none", description="Stain normalisation before encoding.")


class TrainingConfig(Section):
    """MIL heads, cross-validation and the final model."""

    targets: list[str] = Field(description="Clinical table columns to predict; one model per target.")
    categories: dict[str, list[str]] = Field(default_factory=dict, description="Allowed classes per target (default: the sorted values found).")
    model: str = Field("attention", description="MIL head (attention, transformer, mean, tile-vote).")
    folds: int = Field(5, ge=2, description="Patient-level cross-validation folds.")
    bag_size: int = Field(512, gt=0, description="Tiles sampled per patient in each training step.")
    epochs: int = Field(32, gt=0, description="Maximum epochs (early stopping on an inner validation split).")
    seed: int = Field(0, description="Seed for splits, sampling and initialisation.")
    crossval: bool = Field(True, description="Run k-fold cross-validation.")
    train: bool = Field(True, description="Train one model on all patients for deployment.")

    @field_validator("targets")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("list at least one target column")
        return v


class DeployConfig(Section):
    """An external cohort to validate on (the fold ensemble and the final model are applied)."""

    slides_dir: Path = Field(description="Folder with the external cohort's slides.")
    clini_table: Path | None = Field(None, description="Clinical table of the external cohort (null: predictions only).")
    slide_table: Path | None = Field(None, description="Slide table of the external cohort.")
    mpp: float | None = Field(None, gt=0, description="MPP override for the external slides.")


class StatsConfig(Section):
    """Metrics with bootstrap confidence intervals."""

    n_bootstrap: int = Field(1000, ge=0, description="Patient-level bootstrap resamples for the CIs.")
    seed: int = Field(0, description="Bootstrap seed.")
    positive: dict[str, str] = Field(
        default_factory=dict, description="Class to report and plot per binary target, e.g. {MSI: MSI-H} (default: the rarer class)."
    )


class HeatmapsConfig(Section):
    """Spatial heatmaps, top tiles and QuPath export."""

    enabled: bool = Field(True, description="Draw heatmaps.")
    topk: int = Field(8, ge=0, description="Top and bottom tiles saved per class.")
    slides: list[str] = Field(default_factory=list, description="Slide names to draw (empty: all slides of the cohort).")
    max_slides: int = Field(20, ge=0, description="At most this many slides when `slides` is empty.")


class ReportConfig(Section):
    """The HTML report."""

    enabled: bool = Field(True, description="Write report.html into the output folder.")
    title: str | None = Field(None, description="Page title (default: the output folder's name).")


class RunConfig(Section):
    """A whole workflow: the stages present are run in order by `slidepredict run`."""

    output_dir: Path = Field(description="Everything the run writes goes here (resolved config and log too).")
    cohort: CohortConfig
    tiling: TilingConfig = Field(default_factory=TilingConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    training: TrainingConfig | None = None
    deploy: DeployConfig | None = None
    stats: StatsConfig = Field(default_factory=StatsConfig)
    heatmaps: HeatmapsConfig = Field(default_factory=HeatmapsConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
