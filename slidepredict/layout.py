"""Where every stage writes: folder layout of a run and the file names stages share.

The CLI (`--config`), `slidepredict run`, the Snakemake workflow, training, deployment and the
report all read these names from here, so a file is named in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MODEL_FILE = "model.ckpt"  # a trained MIL head (one per fold, or the final model)
PREDS_FILE = "patient-preds.csv"  # patient-level predictions (docs/formats.md)
SPLITS_FILE = "splits.json"  # the patient folds of a cross-validation, written once
TRAIN_CONFIG_FILE = "train-config.json"  # the model settings a training folder was made with
COHORT_FILE = "cohort.json"  # who was trained on and why others were dropped
FOLD_PREFIX = "fold-"
TUNED_FILE = "encoder.safetensors"  # `slidepredict finetune`: the tuned backbone, loaded with --weights
TUNED_RECORD = "finetune.json"  # beside it: per-epoch losses and accuracies, blocks, images
OPERATING_FILE = "operating-point.json"  # cut-offs chosen on out-of-fold predictions, carried to deploy
BASELINE_PREFIX = "baseline-"  # a pooled-features reference fitted on a cross-validation's folds
COORDS_SUBDIR = "coords"  # tiling files `slidepredict extract` keeps in its output folder by default
REPORT_FILE = "report.html"
LOG_FILE = "run.log"
NORM_FILE = "normalisation.json"  # the intensity range an image cohort's units were cut with


def fold_dir(root: Path, k: int | str) -> Path:
    """``<root>/fold-<k>``: one cross-validation fold's model and test predictions."""
    return root / f"{FOLD_PREFIX}{k}"


def baseline_dir(root: Path, pooling: str) -> Path:
    """``<root>/baseline-<pooling>``: a reference baseline's held-out predictions on the same folds."""
    return root / f"{BASELINE_PREFIX}{pooling}"


# Folders of a run below its output_dir; RunLayout exposes each as an attribute of that name.
FOLDERS = {
    "tiles": "tiles", "features": "features", "external_tiles": "external/tiles",
    "external_features": "external/features", "crossval_root": "crossval", "train_root": "train",
    "cells": "cells", "external_cells": "external/cells",  # image cohorts: features/, bags.csv, normalisation.json
    "finetune": "finetune",  # `slidepredict finetune --config`: tuned encoders, or a cross-validation tuned per fold
}


@dataclass(frozen=True)
class RunLayout:
    """The folders of one run, relative to its ``output_dir``."""

    root: Path
    tiles: Path = field(init=False)
    features: Path = field(init=False)
    external_tiles: Path = field(init=False)
    external_features: Path = field(init=False)
    crossval_root: Path = field(init=False)
    train_root: Path = field(init=False)
    cells: Path = field(init=False)
    external_cells: Path = field(init=False)
    finetune: Path = field(init=False)

    def __post_init__(self) -> None:
        for name, rel in FOLDERS.items():
            object.__setattr__(self, name, self.root / rel)

    @property
    def report(self) -> Path:
        return self.root / REPORT_FILE

    def crossval(self, target: str) -> Path:
        return self.crossval_root / target

    def fold_model(self, target: str, k: int | str) -> Path:
        return fold_dir(self.crossval(target), k) / MODEL_FILE

    def crossval_preds(self, target: str) -> Path:
        return self.crossval(target) / PREDS_FILE

    def train(self, target: str) -> Path:
        return self.train_root / target

    def final_model(self, target: str) -> Path:
        return self.train(target) / MODEL_FILE

    def deploy(self, target: str) -> Path:
        return self.root / "deploy" / target

    def stats(self, target: str) -> Path:
        return self.root / "stats" / f"crossval-{target}"

    def heatmaps(self, target: str) -> Path:
        return self.root / "heatmaps" / target

    def screen(self) -> Path:
        return self.root / "screen"

    def clusters(self) -> Path:
        return self.root / "clusters"

    def external_heatmaps(self, target: str) -> Path:
        return self.root / "external" / "heatmaps" / target
