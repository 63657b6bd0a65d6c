"""Read and validate `patient-preds.csv` files (docs/formats.md) before any statistic is computed.

Every check here runs before a single output is written, so a bad file never leaves
half a results folder behind. Messages name the file and say how to fix it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from slidepredict.core.errors import SlidePredictError
from slidepredict.core.names import safe_name

log = logging.getLogger(__name__)

PATIENT, PRED, FOLD = "PATIENT", "pred", "fold"
IN_TRAINING = "in_training"  # deploy: True where a model trained on the patient; such rows are no validation
RESERVED = (PATIENT, PRED, FOLD, IN_TRAINING)
# Only empty cells (and pandas' own NaN spelling) mean "no label": class names such as
# "NA" or "None" stay class names.
_NA_VALUES = ["", "nan", "NaN"]


class PredictionsError(SlidePredictError):
    """A predictions file cannot be evaluated (missing, empty, malformed or inconsistent)."""


@dataclass(frozen=True)
class Predictions:
    """One evaluation group: the labelled rows of one file (or of one fold inside a file)."""

    source: Path
    group: str
    target: str
    classes: tuple[str, ...]
    patients: np.ndarray  # (n,) str
    labels: np.ndarray  # (n,) str, one of classes
    predicted: np.ndarray  # (n,) str, one of classes
    probs: np.ndarray  # (n, n_classes) float, columns ordered as classes

    @property
    def n(self) -> int:
        return len(self.labels)

    def onehot(self) -> np.ndarray:
        """(n, n_classes) 0/1 matrix of the true classes, for one-vs-rest statistics."""
        return (self.labels[:, None] == np.asarray(self.classes)[None, :]).astype(int)


def _label_columns(columns: list[str]) -> dict[str, list[str]]:
    """Label columns T with `T_<class>` columns, mapped to their classes.

    Class names may contain underscores, so a probability column can itself look like a
    label column (`MSI_H_low` under `MSI_H`); such nested candidates are dropped.
    """
    cols = [c for c in columns if c not in RESERVED]
    prob_cols = {t: [c for c in cols if c != t and c.startswith(f"{t}_")] for t in cols}
    candidates = [t for t, p in prob_cols.items() if p]
    return {
        t: [c[len(t) + 1 :] for c in prob_cols[t]]
        for t in candidates
        if not any(t in prob_cols[o] for o in candidates if o != t)
    }


def infer_target(columns: list[str], path: Path, predicted: set[str] | None = None) -> tuple[str, list[str]]:
    """The label column T whose `T_<class>` probability columns exist, and its classes.

    Unrelated columns that happen to share a prefix (`n_tiles`, `n_tiles_kept`) are told
    apart by the predicted classes, which must all have a probability column.
    """
    found = _label_columns(columns)
    if len(found) > 1 and predicted:
        found = {t: c for t, c in found.items() if predicted <= set(c)}
    if not found:
        probs_only = [c[: -len(v) - 1] for c in columns for v in sorted(predicted or ())
                      if c.endswith(f"_{v}") and len(c) > len(v) + 1]
        if probs_only:
            target = probs_only[0]
            raise PredictionsError(
                f"Predictions file '{path}' has no true labels (no '{target}' column next to its "
                f"probability columns); statistics need labelled patients (deploy with a clinical table)."
            )
        raise PredictionsError(
            f"Predictions file '{path}' has no probability columns: expected '<target>_<class>' "
            f"columns next to a '<target>' label column (columns found: {', '.join(columns)})."
        )
    if len(found) > 1:
        raise PredictionsError(
            f"Predictions file '{path}' has probability columns for several label columns "
            f"({', '.join(found)}); write one target per patient-preds.csv."
        )
    target, classes = next(iter(found.items()))
    if len(classes) < 2:
        raise PredictionsError(
            f"Predictions file '{path}' has only one probability column ('{target}_{classes[0]}') "
            f"for target '{target}'; write one '{target}_<class>' column per class."
        )
    return target, classes


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise PredictionsError(f"Predictions file '{path}' not found.")
    if path.stat().st_size == 0:
        raise PredictionsError(
            f"Predictions file '{path}' is empty (0 bytes); expected a patient-preds.csv "
            f"from `slidepredict crossval` or `slidepredict deploy`."
        )
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=_NA_VALUES)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PredictionsError(f"Predictions file '{path}' is not a readable CSV: {exc}") from exc
    except pd.errors.EmptyDataError as exc:  # whitespace only
        raise PredictionsError(f"Predictions file '{path}' has no header and no rows.") from exc
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise PredictionsError(
            f"Predictions file '{path}' has a header but no rows; nothing to evaluate."
        )
    return df


def _probabilities(df: pd.DataFrame, cols: list[str], path: Path) -> np.ndarray:
    probs = df[cols].apply(pd.to_numeric, errors="coerce")
    missing = probs.isna().any(axis=1).to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise PredictionsError(
            f"Predictions file '{path}' has a missing or non-numeric probability for patient "
            f"'{df[PATIENT].iloc[row]}' (row {row + 2}); every '<target>_<class>' cell must be a number."
        )
    values = probs.to_numpy(dtype=float)
    if (values < 0).any() or (values > 1).any():
        raise PredictionsError(
            f"Predictions file '{path}' has probabilities outside [0, 1] in columns "
            f"{', '.join(cols)}; these must be class probabilities, not logits."
        )
    return values


def _check_values(values: pd.Series, classes: list[str], what: str, path: Path) -> None:
    unknown = sorted(set(values.dropna()) - set(classes))
    if unknown:
        raise PredictionsError(
            f"Predictions file '{path}' has {what} {', '.join(map(repr, unknown))} that are not among "
            f"the classes of its probability columns ({', '.join(classes)})."
        )


def _fold_name(value: str) -> str:
    return value if value.lower().startswith("fold") else f"fold-{value}"


def read_predictions(path: Path, label: str, by: str | None = None) -> list[Predictions]:
    """Read one file into evaluation groups: the file itself, or one group per value of `fold` (or of ``by``)."""
    df = _read_csv(path)
    check_by_column(df, path, by)
    if PATIENT not in df.columns:
        raise PredictionsError(
            f"Predictions file '{path}' has no '{PATIENT}' column (columns found: {', '.join(df.columns)})."
        )
    if PRED not in df.columns:
        raise PredictionsError(
            f"Predictions file '{path}' has no '{PRED}' column with the predicted class."
        )
    target, classes = infer_target(list(df.columns), path, set(df[PRED].dropna()))
    prob_cols = [f"{target}_{c}" for c in classes]
    probs = _probabilities(df, prob_cols, path)
    _check_values(df[target], classes, f"labels in column '{target}'", path)
    _check_values(df[PRED], classes, f"predicted classes in column '{PRED}'", path)

    labelled = df[target].notna().to_numpy()
    if not labelled.any():
        raise PredictionsError(
            f"Predictions file '{path}' has no true labels in column '{target}'; statistics need "
            f"labelled patients (deploy with a clinical table)."
        )
    if not labelled.all():
        log.info(
            "%s: %d of %d rows have no label for '%s' and are left out of the statistics",
            path, int((~labelled).sum()), len(df), target,
        )
    if IN_TRAINING in df.columns:
        seen = trained_rows(df)
        if seen.any():
            log.warning("%s: %d of %d patients were used to train the model (column '%s') and are left out of "
                        "the statistics", path, int((seen & labelled).sum()), len(df), IN_TRAINING)
            labelled = labelled & ~seen
            if not labelled.any():
                raise PredictionsError(
                    f"Predictions file '{path}': every labelled patient was used to train the model "
                    f"(column '{IN_TRAINING}'); there is nothing to validate on."
                )
    df, probs = df[labelled].reset_index(drop=True), probs[labelled]
    column = by or FOLD
    folds = df[column].fillna("").astype(str) if column in df.columns else pd.Series([""] * len(df))
    fold_values = sorted(dict.fromkeys(folds)) if by else list(dict.fromkeys(folds))
    groups = []
    for fold in fold_values:
        rows = (folds == fold).to_numpy()
        part = f"{by}-{fold or 'none'}" if by else _fold_name(fold)
        name = label if len(fold_values) == 1 and not by else "-".join(filter(None, [label, part]))
        sub = df[rows]
        dup = sub[PATIENT][sub[PATIENT].duplicated()]
        if not dup.empty:
            raise PredictionsError(
                f"Predictions file '{path}' lists patient '{dup.iloc[0]}' twice"
                f"{f' in fold {fold}' if fold else ''}; write one row per patient."
            )
        groups.append(
            Predictions(
                source=path, group=name, target=target, classes=tuple(classes),
                patients=sub[PATIENT].to_numpy(dtype=str), labels=sub[target].to_numpy(dtype=str),
                predicted=sub[PRED].to_numpy(dtype=str), probs=probs[rows],
            )
        )
    return groups


def check_by_column(df: pd.DataFrame, path: Path, by: str | None) -> None:
    """``--by`` must name a column of the file."""
    if by is not None and by not in df.columns:
        raise PredictionsError(
            f"Predictions file '{path}' has no column '{by}' to break the statistics down by "
            f"(columns found: {', '.join(df.columns)})."
        )


def trained_rows(df: pd.DataFrame) -> np.ndarray:
    """Rows deploy marked ``in_training`` (a model trained on the patient): no validation, left out of statistics."""
    if IN_TRAINING not in df.columns:
        return np.zeros(len(df), dtype=bool)
    return df[IN_TRAINING].astype(str).str.lower().isin(["true", "1"]).to_numpy()


def trained_anywhere(paths: list[Path]) -> set[str]:
    """Patients that any file marks ``in_training``: a paired comparison leaves them out of every model's rows,
    so both models are scored on the same held-out patients (and says how many were left out)."""
    seen: set[str] = set()
    for path in paths:
        df = _read_csv(Path(path))
        if PATIENT in df.columns:
            seen |= set(df.loc[trained_rows(df), PATIENT])
    if seen:
        log.warning("%d patients were used to train one of the compared models (column '%s') and are left out of "
                    "the comparison of every model", len(seen), IN_TRAINING)
    return seen


def compared_rows(patients: np.ndarray, path: Path, trained: set[str], usable: np.ndarray | None = None) -> np.ndarray:
    """Which rows of a whole file a paired comparison keeps: the ``usable`` ones (e.g. labelled) but ``trained`` patients.

    One row per patient: the same patient in two folds (or twice) is refused, never deduplicated; a file left
    with no patient is refused too.
    """
    ids = pd.Series(np.asarray(patients, dtype=str))
    dup = ids[ids.duplicated()]
    if not dup.empty:
        raise PredictionsError(f"Predictions file '{path}' lists patient '{dup.iloc[0]}' "
                               f"{ids.eq(dup.iloc[0]).sum()} times; write one row per patient.")
    keep = ~ids.isin(trained).to_numpy() & (True if usable is None else np.asarray(usable, dtype=bool))
    if not keep.any():
        raise PredictionsError(f"Predictions file '{path}' has no labelled patient that the compared models did "
                               "not train on; there is nothing to compare on.")
    return keep


def group_frames(df: pd.DataFrame, label: str, by: str | None) -> list[tuple[str, pd.DataFrame]]:
    """A file's rows per fold (or per ``by`` value), named as the categorical groups are; the whole file without."""
    column = by or FOLD
    if column not in df.columns:
        return [(label, df)]
    return [("-".join(filter(None, [label, f"{by}-{v}" if by else f"fold-{v}"])), part)
            for v, part in df.groupby(df[column].astype(str), sort=True)]


def read_scored(path: Path, by: str | None, find_target: Callable[[pd.DataFrame], str | None],
                truth: Callable[[str], list[str]], what: str) -> tuple[str, pd.DataFrame]:
    """A continuous or survival predictions file: its target and the rows with a truth that no model trained on."""
    df = pd.read_csv(path, dtype={PATIENT: str})
    target = find_target(df)
    if target is None:
        raise PredictionsError(f"Predictions file '{path}' is not {what}.")
    check_by_column(df, path, by)
    keep = df[truth(target)].notna().all(axis=1).to_numpy() & ~trained_rows(df)
    return target, df[keep]


def file_labels(paths: list[Path]) -> list[str]:
    """Short unique names for the files: `fold-0` for `run/fold-0/patient-preds.csv`."""
    parts = [p.resolve().with_suffix("").parts for p in paths]
    if len(paths) == 1:
        return [""]
    common = 0
    while all(len(q) > common + 1 for q in parts) and len({q[common] for q in parts}) == 1:
        common += 1
    rel = [list(q[common:]) for q in parts]
    if len({r[-1] for r in rel}) == 1 and all(len(r) > 1 for r in rel):
        rel = [r[:-1] for r in rel]
    labels = [safe_name("-".join(r), "preds") for r in rel]
    if len(set(labels)) < len(labels):
        labels = [f"{i}-{lab}" for i, lab in enumerate(labels)]
    return labels


def check_no_degenerate_class(group: Predictions) -> None:
    """AUROC/AUPRC need positives and negatives of every class in every evaluated group."""
    # With at least two classes present, each present class has positives and negatives.
    present = set(group.labels)
    missing = [c for c in group.classes if c not in present]
    if missing:
        where = f" (group '{group.group}')" if group.group else ""
        raise PredictionsError(
            f"Predictions file '{group.source}'{where} has no patients of class '{missing[0]}' "
            f"for target '{group.target}' (labels seen: {', '.join(sorted(present))}); AUROC and "
            f"AUPRC need positive and negative patients for every class."
        )


def complete(group: Predictions) -> bool:
    """Whether every class has patients in ``group`` (else it has no AUROC of its own)."""
    return set(group.classes) <= set(group.labels)


def load_all(paths: list[Path], by: str | None = None) -> dict[str, list[Predictions]]:
    """Read and validate every file; group the evaluation groups by target.

    A file that is one group must hold every class; of a file split into folds (or ``by``
    groups), a group lacking a class is only pooled (the caller says so), and the pooled
    groups must hold every class.
    """
    if not paths:
        raise PredictionsError("No predictions files given; pass one or more patient-preds.csv.")
    by_target: dict[str, list[Predictions]] = {}
    first_file: dict[str, Predictions] = {}
    for path, label in zip(paths, file_labels(paths)):
        parts = read_predictions(Path(path), label, by)
        for group in parts:
            ref = first_file.setdefault(group.target, group)
            if set(ref.classes) != set(group.classes):
                raise PredictionsError(
                    f"Predictions files disagree on the classes of target '{group.target}': "
                    f"'{ref.source}' has {', '.join(ref.classes)} but '{group.source}' has "
                    f"{', '.join(group.classes)}; evaluate models with the same classes together."
                )
            if ref.classes != group.classes:  # same classes, other column order
                order = [group.classes.index(c) for c in ref.classes]
                group = replace(group, classes=ref.classes, probs=group.probs[:, order])
            if len(parts) == 1:
                check_no_degenerate_class(group)
            by_target.setdefault(group.target, []).append(group)
    return by_target
