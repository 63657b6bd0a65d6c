"""Target types: how a clinical-table column becomes the labels a model learns.

``categorical`` (the default): classes, each label an index into the sorted (or declared)
categories. ``continuous``: a number per patient (a signature score, TMB, a stromal fraction),
kept in its own units; models learn it standardised and predict it back in those units.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from slidepredict.core.errors import CohortError

KINDS = ("categorical", "continuous")


def encode_labels(kind: str, rows: dict[str, str], categories: list[str], target: str,
                  source: Path) -> tuple[np.ndarray, list[str]]:
    """The labels array (class indices, or float values) in ``rows`` order, and the categories (none if continuous)."""
    if kind not in KINDS:
        raise CohortError(f"unknown target type {kind!r} for '{target}'; --target-type is one of {', '.join(KINDS)}")
    if kind == "categorical":
        return np.array([categories.index(v) for v in rows.values()], dtype=np.int64), categories
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
            f"'{target}' in {source.name} is a continuous target but {n} patient{'s' if n != 1 else ''} "
            f"{'have' if n != 1 else 'has'} a value that is not a number, e.g. '{raw}' (patient '{who[0]}'); "
            "write numbers, or leave the cell empty to drop the patient"
        )
    return np.array(values, dtype=np.float64), []


def strata(kind: str, labels: np.ndarray, n_bins: int = 4) -> np.ndarray:
    """Groups to stratify splits by: the classes, or quantile bins of a continuous target (so every fold
    sees low and high values)."""
    if kind == "categorical":
        return labels
    edges = np.quantile(labels, np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.digitize(labels, np.unique(edges))
