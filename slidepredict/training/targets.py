"""Several targets in one call: one cohort and one model (or fold set) per target.

The `crossval` and `train` commands call this, so the command line holds no training logic.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from slidepredict.cohort import build_cohort
from slidepredict.errors import ConfigError
from slidepredict.training.crossval import crossval, pooled_auroc, train_final
from slidepredict.training.fit import TrainConfig


def run_targets(
    mode: str,
    features: str | os.PathLike[str],
    slide_table: str | os.PathLike[str] | None,
    clini: str | os.PathLike[str],
    targets: Sequence[str],
    out: str | os.PathLike[str],
    config: TrainConfig,
    folds: int = 5,
    fold: int | None = None,
    categories: Sequence[str] | None = None,
    patient_col: str = "PATIENT",
    filename_col: str = "FILENAME",
) -> Iterator[str]:
    """Train per target (``mode`` is ``crossval`` or ``train``) into ``<out>/<target>/``; yields a summary line each."""
    if mode not in ("crossval", "train"):
        raise ValueError(f"mode must be 'crossval' or 'train', got {mode!r}")
    if categories and len(targets) > 1:
        raise ConfigError("--categories applies to a single --target; run one command per target instead")
    out = Path(out)
    for target in dict.fromkeys(targets):
        cohort = build_cohort(features, slide_table, clini, target=target, categories=categories,
                              patient_col=patient_col, filename_col=filename_col)
        if mode == "train":
            ckpt = train_final(cohort, out / target, config)
            yield f"{target}: model trained on {len(cohort)} patients -> {ckpt}"
        elif fold is not None:
            crossval(cohort, out / target, config, folds=folds, fold=fold)
            yield f"{target}: fold {fold} of {folds} done -> {out / target / f'fold-{fold}'}"
        else:
            preds = crossval(cohort, out / target, config, folds=folds)
            auc = pooled_auroc(preds, target, cohort.categories)
            yield (f"{target}: {folds}-fold cross-validation of {len(cohort)} patients, pooled AUROC "
                   f"{auc:.3f} -> {out / target / 'patient-preds.csv'}")
