"""Several targets in one call: one cohort and one model (or fold set) per target.

`slidepredict crossval`/`train` and `slidepredict run` call this, so neither holds training logic.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from slidepredict.cohort.build import build_cohort
from slidepredict.cohort.groups import with_groups
from slidepredict.core.settings import ALL_TARGETS, for_target
from slidepredict.core.errors import ConfigError
from slidepredict.layout import PREDS_FILE, fold_dir
from slidepredict.training.folds import (
    baseline_note, calibration_note, crossval, pooled_auroc, score_name, train_final,
)
from slidepredict.training.settings import TrainingSettings
from slidepredict.training.splits import folds_text, n_folds

if TYPE_CHECKING:
    from slidepredict.cohort.settings import CohortSettings

MODES = ("crossval", "train")


def run_targets(
    mode: str,
    features: str | os.PathLike[str],
    out: str | os.PathLike[str],
    cohort: CohortSettings,
    training: TrainingSettings,
    fold: int | None = None,
) -> Iterator[str]:
    """Train per target (``mode`` is ``crossval`` or ``train``) into ``<out>/<target>/``; yields a summary line each."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if ALL_TARGETS in training.categories and len(training.targets) > 1:
        raise ConfigError("--categories applies to a single --target; run one command per target instead")
    out = Path(out)
    for target in dict.fromkeys(training.targets):
        labelled = build_cohort(features, cohort.slide_table, cohort.clini_table, target=target,
                                categories=for_target(training.categories, target),
                                patient_col=cohort.patient_col, filename_col=cohort.filename_col,
                                kind=for_target(training.target_type, target) or "categorical",
                                time_col=for_target(training.time, target), event_col=for_target(training.event, target))
        labelled = with_groups(labelled, training.group, cohort.clini_table, cohort.patient_col)
        if mode == "train":
            ckpt = train_final(labelled, out / target, training)
            if training.cutoff is not None and labelled.kind == "categorical":
                from slidepredict.stats import operating

                operating.write(out / target, operating.fixed(target, labelled.categories, training.cutoff, len(labelled)))
            yield f"{target}: model trained on {len(labelled)} patients -> {ckpt}"
        elif fold is not None:
            crossval(labelled, out / target, training, folds=training.folds, fold=fold,
                     leave_group_out=training.leave_group_out)
            yield (f"{target}: fold {fold} of {n_folds(labelled, training.folds, training.leave_group_out)} done -> "
                   f"{fold_dir(out / target, fold)}")
        else:
            pooling = training.baseline_pooling()
            preds = crossval(labelled, out / target, training, folds=training.folds, baseline=pooling,
                             target_sensitivity=training.target_sensitivity, leave_group_out=training.leave_group_out,
                             cutoff=training.cutoff)
            auc = pooled_auroc(preds, target, labelled.categories, labelled.kind)
            yield (f"{target}: {folds_text(labelled, training.folds, training.leave_group_out)} cross-validation of "
                   f"{len(labelled)} patients, pooled "
                   f"{score_name(labelled.categories, labelled.kind)} {auc:.3f}"
                   f"{calibration_note(preds, target, labelled.categories)}"
                   f"{baseline_note(out / target, pooling, target)} -> "
                   f"{out / target / PREDS_FILE}")
