"""Training settings: the recipe of one fit (:class:`TrainSettings`) and the config's `training:`
section (:class:`TrainingSettings`), which adds targets, folds and which models `run` trains."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator, model_validator

from slidepredict.core.device import Device
from slidepredict.core.settings import Settings, registered, setting

# Settings that do not change the trained model; a rerun into the same folder may change them.
RUNTIME_FIELDS = ("workers", "device")


class TrainSettings(Settings):
    """How one MIL head is fitted (stored in every checkpoint and in the output folder)."""

    model: str = setting("attention", "MIL head (attention, transformer, mean, tile-vote).", short="-m")
    model_hparams: dict[str, Any] = setting(
        default_factory=dict, flag="--model-hparam",
        description="Head options, e.g. {hidden: 128}; on the command line KEY=VALUE, repeatable.")
    # how patients are sampled and for how long: in optimiser steps, so 30 patients get as many updates as 3,000
    bag_size: int = setting(512, "Tiles sampled per patient in each training step.", gt=0)
    batch_size: int = setting(8, "Patients per training step.", gt=0)
    steps: int = setting(1500, "Maximum optimiser steps (early stopping on an inner validation split).", gt=0)
    min_steps: int = setting(300, "Steps before early stopping may stop (a model must have learned first).", ge=0)
    val_every: int = setting(50, "Steps between two inner validations.", gt=0)
    patience: int = setting(8, "Validations without improvement before stopping.", gt=0)
    feature_noise: float = setting(
        0.5, "Gaussian noise added to training tiles, in standard deviations of each feature (augmentation).", ge=0)
    restarts: int = setting(
        3, "Initialisations tried for `min_steps` each; the best on the inner validation split is trained on. "
        "When none beats chance there, as many again are tried.", ge=1)
    # the optimiser and the inner validation split
    lr: float = setting(1e-3, "Peak learning rate (AdamW, one-cycle schedule over `steps`).", gt=0)
    weight_decay: float = setting(1e-2, "AdamW weight decay.", ge=0)
    val_fraction: float = setting(0.2, "Share of the training patients held out for early stopping.", gt=0, lt=1)
    seed: int = setting(0, "Seed for splits, sampling and initialisation.")
    group: str | None = setting(
        None, "Clinical-table column (e.g. SITE) whose patients stay together on one side of every split "
        "(outer folds and the inner validation split); `tcga-site` reads the tissue source site from TCGA "
        "patient IDs (TCGA-XX-...).")
    # where it runs (RUNTIME_FIELDS: a rerun may change these)
    workers: int = setting(0, "DataLoader worker processes reading h5 files.", ge=0)
    device: Device = setting("auto", "Where MIL heads train and predict (auto: a CUDA GPU when there is one).")

    @field_validator("model")
    @classmethod
    def _known_head(cls, v: str) -> str:
        return registered("mil", v)

    def model_settings(self) -> dict[str, Any]:
        """The settings that define the model; a rerun into the same folder must not mix them."""
        return self.model_dump(mode="json", include=set(TrainSettings.model_fields) - set(RUNTIME_FIELDS))


class TrainingSettings(TrainSettings):
    """MIL heads, cross-validation and the final model."""

    targets: list[str] = setting(description="Clinical table columns to predict; one model per target.", flag="--target", short="-t")
    categories: dict[str, list[str]] = setting(
        default_factory=dict, per_target=True,
        description="Classes per target, in this order (default: the sorted values found).")
    target_type: dict[str, Literal["categorical", "continuous", "survival"]] = setting(
        default_factory=dict, per_target=True,
        description="Type per target: categorical (classes; the default), continuous (a number, e.g. a score) "
        "or survival (a time and an event column, see `time` and `event`).")
    time: dict[str, str] = setting(
        default_factory=dict, per_target=True,
        description="Survival: the clinical-table column with the time (default: the target's own name).")
    event: dict[str, str] = setting(
        default_factory=dict, per_target=True,
        description="Survival: the clinical-table column with the event (1 = event, 0 = censored).")
    folds: int = setting(5, "Patient-level cross-validation folds.", ge=2)
    leave_group_out: bool = setting(
        False, "One fold per group of `group` (leave-one-site-out); the number of folds is then the number of groups.")
    crossval: bool = setting(True, "Run k-fold cross-validation.", run_only="`slidepredict crossval` always cross-validates")
    train: bool = setting(True, "Train one model on all patients for deployment.",
                          run_only="`slidepredict train` always trains")
    baseline: Literal["mean-pool", "max-pool", "none"] = setting(
        "mean-pool", "Reference fitted on the same folds (pooled tile features + logistic regression), "
        "printed next to the head's AUROC; a head that does not beat mean-pool has not shown localised signal.")

    target_sensitivity: float | None = setting(
        None, "Operating point carried to deploy: the cut-off reaching this sensitivity on the out-of-fold "
        "predictions (null: Youden's J).", gt=0, le=1)
    cutoff: float | None = setting(
        None, "A fixed probability cut-off for every class, carried to deploy instead of one chosen on the "
        "out-of-fold predictions (e.g. 0.5, as cell classifiers use); written with a final model trained "
        "without cross-validation too.", gt=0, lt=1)

    def baseline_pooling(self) -> str | None:
        """The baseline's pooling, or None when switched off."""
        return None if self.baseline == "none" else self.baseline

    @model_validator(mode="after")
    def _one_rule(self) -> "TrainingSettings":
        if self.cutoff is not None and self.target_sensitivity is not None:
            raise ValueError("give cutoff (--cutoff) or target_sensitivity (--target-sensitivity), not both")
        return self

    @field_validator("targets")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must list at least one target column")
        return v
