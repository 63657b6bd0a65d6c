"""The `cells:` section: an image cohort of microscopy images, and how its units are cut and normalised."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import field_validator, model_validator

from slidepredict.core.settings import Settings, registered, setting


class CellSettings(Settings):
    """Images, their table, and what one instance is (the whole image, a tile or a cell)."""

    images: Path = setting(description="Folder of images (PNG/JPEG/TIFF, searched recursively).")
    table: Path = setting(description="Image table: IMAGE plus labels and optional PLATE, WELL, COMPOUND, "
                          "CONCENTRATION, TIMEPOINT, CONTROL, MPP.", flag="--image-table")
    unit: str = setting("image", "What one instance is: image, tiles, nuclei (fluorescence), brightfield, "
                        "mask (--masks) or centroids (--centroids).")
    unit_size: int = setting(64, "Crop side in image pixels around a cell (tiles: the tile side).", gt=0)
    min_area: int = setting(30, "Smallest cell kept, in pixels^2 (detected cells and mask labels).", ge=0)
    masks: Path | None = setting(None, "Folder of label masks named like the images (unit: mask).")
    centroids: Path | None = setting(None, "Table of cell centroids IMAGE, X, Y in image pixels (unit: centroids).")
    bag: Literal["image", "well"] = setting("image", "What one prediction is about: an image, or a well (PLATE:WELL).")
    plate_format: int = setting(96, "Wells per plate (6, 12, 24, 48, 96, 384, 1536): WELL names are checked against it.")
    low: float = setting(1.0, "Lower percentile of each channel's intensity stretch.", ge=0, lt=100)
    high: float = setting(99.8, "Upper percentile of each channel's intensity stretch.", gt=0, le=100)
    scope: Literal["cohort", "image"] = setting(
        "cohort", "Where the percentiles come from: the whole cohort (a cell looks the same whatever its "
        "neighbours) or each image (evens out exposure, but a field's make-up then shifts every cell in it).",
        flag="--intensity-scope")
    intensity_range: list[float] | None = setting(
        None, "Fixed grey levels LO HI per channel (overrides intensity_scope): the range another cohort's "
        "normalisation.json recorded, so a screen is embedded exactly like the reference it is classified by.")
    intensity_from: Path | None = setting(
        None, "normalisation.json of another image cohort (its `cells` output): embed with the fixed range it "
        "recorded, as a screen must be embedded like the reference it is classified by.")
    channels: list[int] | None = setting(None, "Channels (0-based) fed to the encoder as R, G, B (null: the first three).")
    mpp: float | None = setting(None, "Microns per pixel of images whose table row has no MPP and whose file records none.", gt=0)
    plates: list[str] | None = setting(
        None, "Embed only the images of these plates (PLATE values): one job per plate on a cluster. "
        "bags.csv and the cohort intensity range still cover the whole table, so every job writes the same ones.",
        flag="--plate")

    @field_validator("intensity_range")
    @classmethod
    def _pairs(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (not v or len(v) % 2 or any(hi <= lo for lo, hi in zip(v[::2], v[1::2]))):
            raise ValueError("give LO HI pairs, one per channel, each HI above its LO (e.g. 200 2800)")
        return v

    @model_validator(mode="after")
    def _one_fixed_range(self) -> "CellSettings":
        if self.intensity_range is not None and self.intensity_from is not None:
            raise ValueError("give intensity_range (--intensity-range) or intensity_from (--intensity-from), not both")
        return self

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, v: str) -> str:
        return registered("units", v)


class ScreenSettings(Settings):
    """How a screen's wells are scored against the negative controls (`slidepredict screen`)."""

    score_class: str = setting(description="Class whose predicted probability scores a well (e.g. apoptosis).")
    control: str = setting(description="Negative-control label in CONTROL (or COMPOUND), e.g. DMSO.")
    z_hit: float = setting(3.0, "A compound-concentration is a hit when its wells' median robust z reaches this.", gt=0)
    min_doses: int = setting(4, "Concentrations a compound needs for a dose-response fit.", ge=4)


class ClusterSettings(Settings):
    """Sub-populations: how units are clustered and which groups are compared (`slidepredict clusters`)."""

    k: int | None = setting(None, "Number of clusters (null: chosen between k_min and k_max by k_by).", ge=2)
    k_by: Literal["davies-bouldin", "silhouette"] = setting(
        "davies-bouldin", "How an automatic k is chosen: davies-bouldin weighs clusters alike (finds small "
        "distinct ones), silhouette weighs units (favours a few large clusters).")
    k_min: int = setting(2, "Smallest k tried when k is null.", ge=2)
    k_max: int = setting(12, "Largest k tried when k is null.", ge=2)
    sample: str | None = setting(None, "Column of bags.csv whose values are the samples (BAG, WELL, COMPOUND); a WELL "
                                 "is taken with its PLATE. null: the well when the table has WELL, else the bag.")
    group: str = setting("CONTROL", "Column of bags.csv with two values whose samples are compared (treated vs control).")
    rare: float = setting(0.05, "A cluster with fewer than this share of all units is rare.", gt=0, lt=1)
    alpha: float = setting(0.05, "False discovery rate (Benjamini-Hochberg) under which a cluster is enriched.", gt=0, lt=1)
    seed: int = setting(0, "Random seed of the sampling and of k-means.", flag="--cluster-seed")


class FinetuneSettings(Settings):
    """Fine-tuning the last blocks of a timm encoder on an image cohort's units (`slidepredict finetune`).

    Each unit takes its image's label; the new linear head and the tuned blocks learn together,
    the rest of the backbone stays frozen (batch-norm statistics included, as batches are small).
    """

    blocks: int = setting(1, "Last blocks of the backbone trained (timm's coarse groups of the layers the "
                          "encoder uses, e.g. layer3 of resnet50-trunc); the rest stays frozen.", ge=1)
    epochs: int = setting(4, "Passes over the training units; the epoch with the lowest validation loss is kept.",
                          gt=0, flag="--tune-epochs")
    lr: float = setting(1e-4, "Learning rate of the tuned blocks and of the linear head, which is first fitted on the untuned "
                        "embeddings (AdamW).", gt=0,
                        flag="--tune-lr")
    batch_size: int = setting(32, "Units per optimiser step.", gt=0, flag="--tune-batch-size")
    units_per_image: int = setting(32, "Units sampled from each image (all when it has fewer): bounds memory and "
                                   "keeps crowded images from dominating.", gt=0)
    augment: list[str] = setting(
        default_factory=lambda: ["flips", "rot90", "brightness", "contrast"],
        description="Random augmentations of each training unit (flips, rot90, brightness, contrast); [] for none.")
    brightness: float = setting(0.2, "Brightness augmentation: intensities scaled by a factor in [1-b, 1+b].",
                                ge=0, lt=1)
    contrast: float = setting(0.2, "Contrast augmentation: deviations from the unit's mean scaled by [1-c, 1+c].",
                              ge=0, lt=1)

    @field_validator("augment")
    @classmethod
    def _known_augment(cls, v: list[str]) -> list[str]:
        return [registered("augmentations", a) for a in v]
