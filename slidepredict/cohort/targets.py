"""Target types: how clinical-table columns become the labels a model learns.

``categorical`` (the default): classes, each label an index into the sorted (or declared)
categories. ``continuous``: a number per patient (a signature score, TMB, a stromal fraction),
kept in its own units; models learn it standardised and predict it back in those units.
``survival``: a time column and an event column (1 = event, 0 = censored); labels are
(time, event) rows and models predict a risk score (higher = shorter survival).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from slidepredict.core.errors import CohortError

KINDS = ("categorical", "continuous", "survival")


def encode_labels(kind: str, rows: dict[str, str], categories: list[str], target: str,
                  source: Path, events: dict[str, str] | None = None) -> tuple[np.ndarray, list[str]]:
    """The labels (class indices; float values; or (time, event) rows) in ``rows`` order, and the categories.

    For survival, ``rows`` holds the times and ``events`` the event column's values.
    """
    if kind not in KINDS:
        raise CohortError(f"unknown target type {kind!r} for '{target}'; --target-type is one of {', '.join(KINDS)}")
    if kind == "categorical":
        return np.array([categories.index(v) for v in rows.values()], dtype=np.int64), categories
    if kind == "survival":
        return survival_labels(rows, events or {}, target, source), []
    return _numbers(rows, target, source, "a continuous target"), []


def _numbers(rows: dict[str, str], target: str, source: Path, what: str) -> np.ndarray:
    """Every value as a float (a decimal comma is read too); one line naming a value that is not a number."""
    values, bad = [], {}
    for patient, raw in rows.items():
        try:
            x = float(raw.replace(",", ".")) if raw.count(",") == 1 and "." not in raw else float(raw)
        except ValueError:
            x = math.nan
        if not math.isfinite(x):
            bad.setdefault(raw, []).append(patient)
        values.append(x)
    if bad:
        raw, who = next(iter(bad.items()))
        n = sum(len(v) for v in bad.values())
        raise CohortError(
            f"'{target}' in {source.name} is {what} but {n} patient{'s' if n != 1 else ''} "
            f"{'have' if n != 1 else 'has'} a value that is not a number, e.g. '{raw}' (patient '{who[0]}'); "
            "write numbers, or leave the cell empty to drop the patient"
        )
    return np.array(values, dtype=np.float64)


def survival_labels(times: dict[str, str], events: dict[str, str], time_col: str, source: Path) -> np.ndarray:
    """(time, event) rows; times must be numbers >= 0 and events 0 or 1 (1 = event, 0 = censored)."""
    t = _numbers(times, time_col, source, "a survival time")
    negative = [p for p, v in zip(times, t) if v < 0]
    if negative:
        raise CohortError(f"'{time_col}' in {source.name} has {len(negative)} negative survival time"
                          f"{'s' if len(negative) != 1 else ''}, e.g. patient '{negative[0]}'; times count from diagnosis")
    missing = [p for p in times if p not in events]
    if missing:
        raise CohortError(f"{len(missing)} patient{'s' if len(missing) != 1 else ''} with a survival time "
                          f"{'have' if len(missing) != 1 else 'has'} no event value in {source.name}, e.g. "
                          f"'{missing[0]}'; write 1 (event) or 0 (censored)")
    odd = {p: v for p, v in events.items() if p in times and v.strip() not in ("0", "1", "0.0", "1.0")}
    if odd:
        p, v = next(iter(odd.items()))
        raise CohortError(f"event values must be 1 (event) or 0 (censored); {source.name} has '{v}' "
                          f"(patient '{p}'{f' and {len(odd) - 1} more' if len(odd) > 1 else ''})")
    e = np.array([float(events[p]) for p in times], dtype=np.float64)
    return np.stack([t, e], axis=1)


def strata(kind: str, labels: np.ndarray, n_bins: int = 4) -> np.ndarray:
    """Groups to stratify splits by: the classes, or quantile bins of a continuous target (so every fold
    sees low and high values)."""
    if kind == "categorical":
        return labels
    if kind == "survival":  # events and censored patients in every fold
        return labels[:, 1].astype(np.int64)
    n_bins = max(1, min(n_bins, len(labels) // 5))  # at least five patients per bin, or splitting a bin fails
    edges = np.quantile(labels, np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.digitize(labels, np.unique(edges))


def event_column(clini_table: Path, patient_col: str, time_col: str, event_col: str | None,
                 patients: list[str]) -> dict[str, str]:
    """patient -> event value for ``patients``; a survival target needs the column, and a time for every patient."""
    from slidepredict.cohort.tables import integer_ids, read_table, require_columns

    if event_col is None:
        raise CohortError(f"survival target '{time_col}' needs an event column (--event, 1 = event, 0 = censored)")
    ct = read_table(clini_table)
    require_columns(ct, [patient_col, time_col, event_col], clini_table, "survival")
    ct = ct.dropna(subset=[patient_col])
    ct[patient_col] = integer_ids(ct[patient_col], clini_table, patient_col)
    ct = ct[ct[patient_col].isin(set(patients))]
    no_time = sorted(ct.loc[ct[time_col].isna(), patient_col])
    if no_time:
        raise CohortError(f"{len(no_time)} patient{'s' if len(no_time) != 1 else ''} in {clini_table.name} "
                          f"{'have' if len(no_time) != 1 else 'has'} no '{time_col}', e.g. '{no_time[0]}'; "
                          "give every patient a time (the follow-up time when censored) or remove the row")
    return {str(p): str(v) for p, v in zip(ct[patient_col], ct[event_col]) if isinstance(v, str) and v.strip()}
