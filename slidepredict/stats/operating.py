"""Operating points chosen where they are honest: on a cross-validation's pooled out-of-fold predictions.

A cut-off picked on the very predictions it then scores flatters sensitivity and specificity (on
pure noise, n=40, their sum averaged 1.17 instead of 1.0). So the cut-off per class (Youden's J,
one-vs-rest) is chosen once, on the held-out predictions of the training cohort, written next to
the fold models, and applied unchanged wherever those models are deployed; the external figures at
that carried threshold are the ones to quote.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from slidepredict.core import jsonio
from slidepredict.core.atomic import write_text_atomic
from slidepredict.layout import OPERATING_FILE

log = logging.getLogger(__name__)
RULE = "youden"
CARRIED = "carried"  # the threshold name of figures at a carried cut-off (metrics.csv, report)


@dataclass(frozen=True)
class OperatingPoint:
    """Per-class probability cut-offs of one target, and where they came from."""

    target: str
    thresholds: dict[str, float]  # class -> cut-off on that class's probability (p >= cut-off: predicted)
    rule: str = RULE
    chosen_on: str = ""
    n_patients: int = 0
    in_sample: dict[str, dict[str, float]] | None = None  # class -> sensitivity/specificity where chosen


def mid_gap(p: np.ndarray, upper: float) -> float:
    """Halfway between ``upper`` (an observed score, the lowest called positive) and the next lower score:
    the same calls on these data, with room on both sides for new ones."""
    below = p[p < upper]
    return (upper + float(below.max())) / 2 if below.size else upper


def sensitivity_threshold(y: np.ndarray, p: np.ndarray, sensitivity: float) -> float:
    """A cut-off at which at least ``sensitivity`` of the positives are called (``p >= cut``), calling as few
    as that allows: mid-gap below the lowest positive it needs, as for Youden's J."""
    pos = np.sort(p[y == 1])[::-1]
    return mid_gap(p, float(pos[max(1, int(np.ceil(sensitivity * len(pos) - 1e-9))) - 1]))


def choose(preds: Any, target: str, categories: Sequence[str], chosen_on: str,
           sensitivity: float | None = None, cutoff: float | None = None) -> OperatingPoint:
    """Per class, one-vs-rest, on ``preds`` (a patient-preds frame with true labels): Youden's J cut-off,
    with ``sensitivity`` the cut-off that reaches it calling fewest (a screening test's rule), or the fixed
    ``cutoff`` (its in-sample sensitivity and specificity recorded)."""
    from slidepredict.stats.metrics import youden_threshold

    truth = preds[target].astype(str).to_numpy()
    thresholds, in_sample = {}, {}
    for cls in categories:
        y, p = (truth == cls).astype(int), preds[f"{target}_{cls}"].to_numpy(dtype=float)
        if y.min() == y.max():
            continue
        cut = (cutoff if cutoff is not None else youden_threshold(y, p) if sensitivity is None
               else sensitivity_threshold(y, p, sensitivity))
        thresholds[cls] = cut
        sens, spec = at_threshold(y, p, cut)
        in_sample[cls] = {"sensitivity": sens, "specificity": spec}
    rule = fixed_rule(cutoff) if cutoff is not None else RULE if sensitivity is None else f"sensitivity>={sensitivity:g}"
    return OperatingPoint(target=target, thresholds=thresholds, rule=rule, chosen_on=chosen_on,
                          n_patients=len(preds), in_sample=in_sample)


def fixed_rule(cutoff: float) -> str:
    return f"fixed {cutoff:g}"


def fixed(target: str, categories: Sequence[str], cutoff: float, n_patients: int) -> OperatingPoint:
    """The configured cut-off for every class, for a model without out-of-fold predictions to check it on."""
    return OperatingPoint(target=target, thresholds={str(c): float(cutoff) for c in categories}, rule=fixed_rule(cutoff),
                          chosen_on="set in the configuration (training.cutoff)", n_patients=n_patients)


def write(folder: Path, point: OperatingPoint) -> Path:
    return write_text_atomic(folder / OPERATING_FILE, jsonio.dumps(asdict(point), indent=1))


def read(path: Path) -> OperatingPoint:
    raw = json.loads(path.read_text())
    return OperatingPoint(**{k: raw[k] for k in OperatingPoint.__dataclass_fields__ if k in raw})


def for_models(checkpoints: Sequence[Path], target: str) -> OperatingPoint | None:
    """The operating point stored with these models: one file shared by all (a fold ensemble), else None.

    A checkpoint's own folder is searched first, then its parent (``crossval/<target>/`` above ``fold-k``).
    """
    found = set()
    for ckpt in checkpoints:
        here = [d / OPERATING_FILE for d in (ckpt.parent, ckpt.parent.parent)]
        found.add(next((p.resolve() for p in here if p.is_file()), None))
    if len(found) != 1 or None in found:
        if found != {None}:
            log.warning("the models come with different operating points; none is carried")
        return None
    point = read(found.pop())  # type: ignore[arg-type]
    return point if point.target == target and point.thresholds else None


def carry_to_final(crossval_dir: Path, final_dir: Path) -> Path | None:
    """Give the final model (trained on every patient) the cut-off chosen on the cross-validation's out-of-fold
    predictions: it has no held-out predictions of its own, and a cut-off chosen on its training patients
    would be in-sample. None when the cross-validation chose none."""
    src = crossval_dir / OPERATING_FILE
    if not src.is_file() or not final_dir.is_dir():
        return None
    point = read(src)
    return write(final_dir, replace(point, chosen_on=f"{point.chosen_on}; carried to the final model trained on all of them"))


def at_threshold(y: np.ndarray, p: np.ndarray, cut: float) -> tuple[float, float]:
    """Sensitivity and specificity of ``p >= cut`` against 0/1 ``y``."""
    return float((p[y == 1] >= cut).mean()), float((p[y == 0] < cut).mean())
