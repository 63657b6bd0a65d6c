"""Patient splits: outer cross-validation folds and the inner validation split, grouped by site when asked.

Without groups the folds are stratified k-fold over patients. With ``cohort.groups`` (a site or
batch per patient, :mod:`slidepredict.cohort.groups`) they are stratified *and* grouped
(scikit-learn's ``StratifiedGroupKFold``), or one fold per group (leave-one-group-out), so no
site is ever on both sides of a split; the inner validation split that picks checkpoints is
grouped the same way.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from slidepredict.cohort.build import Cohort
from slidepredict.cohort.groups import check_groups
from slidepredict.core.errors import CohortError

log = logging.getLogger(__name__)

Splits = list[dict[str, list[str]]]


def n_folds(cohort: Cohort, folds: int, leave_group_out: bool) -> int:
    """The number of outer folds: ``folds``, or one per group in leave-one-group-out mode."""
    if not leave_group_out:
        return folds
    if cohort.groups is None:
        raise CohortError("leave-one-group-out needs a group column (--group SITE, or --group tcga-site)")
    return len(set(cohort.groups))


def folds_text(cohort: Cohort, folds: int, leave_group_out: bool) -> str:
    """``5-fold``, or ``leave-one-SITE-out (7 folds)``: what a headline calls the folds actually run."""
    n = n_folds(cohort, folds, leave_group_out)
    return f"leave-one-{cohort.group_name}-out ({n} folds)" if leave_group_out else f"{n}-fold"


def make_splits(cohort: Cohort, folds: int, seed: int, leave_group_out: bool = False) -> Splits:
    """Stratified k-fold over patients (a patient's slides never straddle folds), grouped when the cohort has groups."""
    from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold, StratifiedKFold

    if cohort.groups is None:
        parts = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(cohort.patients, cohort.strata())
    else:
        check_groups(cohort)
        n_groups = len(set(cohort.groups))
        if leave_group_out:
            parts = LeaveOneGroupOut().split(cohort.patients, cohort.strata(), cohort.groups)
        elif n_groups < folds:
            raise CohortError(
                f"{folds} folds grouped by '{cohort.group_name}' need at least {folds} groups; target "
                f"'{cohort.target}' has {n_groups}; use --folds {max(2, n_groups)} or fewer, or --leave-group-out"
            )
        else:
            parts = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(
                cohort.patients, cohort.strata(), cohort.groups)
    out = []
    for train_idx, test_idx in parts:
        split = {"train": sorted(cohort.patients[i] for i in train_idx),
                 "test": sorted(cohort.patients[i] for i in test_idx)}
        if cohort.groups is not None:
            split["test_groups"] = sorted(set(cohort.groups[test_idx]))
        out.append(split)
    return out


def splits_record(cohort: Cohort, splits: Splits, folds: int, seed: int) -> dict[str, Any]:
    """What ``splits.json`` holds: the folds and, when grouped, each patient's group."""
    record: dict[str, Any] = {"target": cohort.target, "folds": folds, "seed": seed, "splits": splits}
    if cohort.groups is not None:
        record["group"] = cohort.group_name
        record["groups"] = dict(zip(cohort.patients, map(str, cohort.groups)))
    return record


def load_or_make_splits(path: Path, cohort: Cohort, folds: int, seed: int,
                        leave_group_out: bool = False) -> tuple[Splits, bool]:
    """The saved ``splits.json`` when it exists (so reruns and cluster jobs agree), else new splits.

    Returns the splits and whether they are new; new ones are written by ``folds.record_run``
    once every input is known to be usable, so a refused run leaves no splits behind.
    """
    if not path.is_file():
        return make_splits(cohort, folds, seed, leave_group_out), True
    saved = json.loads(path.read_text())
    splits = saved["splits"]
    had = {p for s in splits for p in s["test"]}
    if len(splits) != folds or had != set(cohort.patients):
        changed = len(had.symmetric_difference(cohort.patients))
        raise CohortError(
            f"{path} holds {len(splits)} folds over {len(had)} patients, but this run has {folds} folds over "
            f"{len(cohort)} patients ({changed} differ); use a new --out folder or delete {path.name}"
        )
    if saved.get("group") != cohort.group_name:
        raise CohortError(
            f"{path} was split with group {saved.get('group')!r}, this run asks for {cohort.group_name!r}; "
            f"use a new --out folder or delete {path.name}"
        )
    return splits, False


def inner_split(cohort: Cohort, val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Stratified training/validation split of the training patients (the test fold never takes part).

    With groups, validation takes whole groups (the first grouped split that leaves every class
    on both sides); when the groups cannot give that, the split is by patient, with a warning.
    """
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    labels = np.asarray(cohort.strata())
    # scikit-learn needs every stratum to have at least k members (a few wells per class in a fold)
    fewest = int(np.unique(labels, return_counts=True)[1].min()) if len(labels) else 0
    if cohort.groups is not None and len(set(cohort.groups)) >= 2 and fewest >= 2:
        k = min(len(set(cohort.groups)), max(2, round(1 / val_fraction)), fewest)
        for tr, va in StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(
                cohort.patients, labels, cohort.groups):
            if len(set(labels[tr])) == len(set(labels[va])) == len(set(labels)):
                return sorted(cohort.patients[i] for i in tr), sorted(cohort.patients[i] for i in va)
        log.warning("inner validation split: the %d groups of '%s' cannot hold every class on both sides; "
                    "split by patient instead (checkpoint choice may then see a site twice)",
                    len(set(cohort.groups)), cohort.group_name)
    n_val = max(len(cohort.categories) or 2, int(round(val_fraction * len(cohort))))
    strata = cohort.strata()
    counts = np.unique(strata, return_counts=True)[1]
    stratify = strata if counts.min() >= 2 and n_val >= len(counts) else None  # e.g. one censored patient among six
    train, val = train_test_split(cohort.patients, test_size=n_val, stratify=stratify, random_state=seed)
    return sorted(train), sorted(val)
