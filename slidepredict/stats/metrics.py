"""Point metrics (scikit-learn) and patient-level bootstrap confidence intervals.

Each class is scored one-vs-rest; multi-class targets add macro averages of AUROC and AUPRC
and class means of the thresholded one-vs-rest figures (``mean-ovr``); the model's argmax
decision is scored as a whole (accuracy, balanced accuracy, macro F1, multi-class Brier). Only the
threshold-free ranking metrics (AUROC, AUPRC) get bootstrap CIs: they are the headline
figures. Thresholded metrics come at 0.5, at an in-sample Youden cut-off (labelled as such:
optimistic), and at a cut-off carried from the training cohort when one is given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from slidepredict.core.progress import track
from slidepredict.stats.operating import CARRIED, mid_gap
from slidepredict.stats.predictions import Predictions

log = logging.getLogger(__name__)

MACRO, OVERALL = "macro", "overall"
# Thresholded one-vs-rest figures averaged over classes: not the standard macro F1 (argmax), so not
# called "macro"; the standard macro F1 and the multi-class Brier score are OVERALL rows.
MEAN_OVR = "mean-ovr"
COLUMNS = ["target", "class", "group", "metric", "threshold", "value", "ci_low", "ci_high", "n", "n_pos", "n_bootstrap"]

Score = Callable[[np.ndarray, np.ndarray], float]

# Threshold-free metrics: scored on (0/1 truth, probability); these get bootstrap CIs.
RANKING: dict[str, Score] = {
    "auroc": roc_auc_score,
    "auprc": average_precision_score,
}

# Metrics of a hard 0/1 decision at a threshold.
DECISION: dict[str, Score] = {
    "f1": lambda y, yhat: f1_score(y, yhat, zero_division=0.0),
    "sensitivity": lambda y, yhat: recall_score(y, yhat, zero_division=0.0),
    "specificity": lambda y, yhat: recall_score(y, yhat, pos_label=0, zero_division=0.0),
}


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability cut-off maximising sensitivity + specificity - 1 on these data.

    Any cut-off between the lowest score called positive and the next lower score gives the same J here;
    the midpoint of that gap is taken, not its upper edge (an observed score), so a new sample scoring a
    little below the lowest positive seen is not missed. With two classes the two classes' cut-offs then
    agree (p and 1 - p split at c and 1 - c); at the edge they did not, and deployed positives of a
    slightly less confident model all fell under the cut.
    """
    fpr, tpr, thresholds = roc_curve(y, p)
    best = int(np.argmax(tpr - fpr))
    if not np.isfinite(thresholds[best]):  # roc_curve's first threshold (+inf): nothing is called positive
        return 1.0
    return mid_gap(p, float(thresholds[best]))


# Cut-offs chosen on the data they score. "youden-in-sample" is optimistic by construction: quote
# the figures at the carried cut-off (CARRIED, chosen on training out-of-fold predictions) instead.
THRESHOLDS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "0.5": lambda y, p: 0.5,
    "youden-in-sample": youden_threshold,
}


DISPLAY = {"auroc": "AUROC", "auprc": "AUPRC", "f1": "F1", "brier": "Brier", "ece": "calibration error"}


def format_value(metric: str, row: Mapping[str, float], ci: float) -> str:
    """How a figure is printed in legends, logs and demos: 'AUROC 0.93 (95% CI 0.88-0.97)'."""
    text = f"{DISPLAY.get(metric, metric)} {row['value']:.2f}"
    if not np.isnan(row["ci_low"]):
        text += f" ({ci:.0%} CI {row['ci_low']:.2f}-{row['ci_high']:.2f})"
    return text


Key = tuple[str, str]  # (metric, threshold name or "" for threshold-free metrics)


def class_metrics(y: np.ndarray, p: np.ndarray, carried: float | None = None) -> dict[Key, float]:
    """All point metrics of one class scored one-vs-rest (y: 0/1 truth, p: its probability).

    ``carried`` is a cut-off chosen elsewhere (``stats/operating.py``), scored as threshold CARRIED.
    """
    out = {(name, ""): float(fn(y, p)) for name, fn in RANKING.items()}
    cuts = {tname: choose(y, p) for tname, choose in THRESHOLDS.items()}
    if carried is not None:
        cuts[CARRIED] = float(carried)
    for tname, cut in cuts.items():
        out[("threshold", tname)] = cut
        yhat = (p >= cut).astype(int)
        out.update({(m, tname): float(fn(y, yhat)) for m, fn in DECISION.items()})
    out[("brier", "")] = float(brier_score_loss(y, p))
    out[("ece", "")] = calibration_error(y, p)
    out[("prevalence", "")] = float(y.mean())
    return out


CALIBRATION_BINS = 10


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error: per equal-width probability bin, |observed - mean predicted|, weighted by its patients.

    What a pathologist needs of a probability is that 0.9 means nine in ten; AUROC does not see it (a ranking
    can be perfect with every probability at 0.0001 or 0.9999). The calibration plot draws the same bins.
    """
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(y[idx == b].mean() - p[idx == b].mean()) * (idx == b).mean() for b in np.unique(idx)))


def calibration_text(brier: float, ece: float | None = None) -> str:
    """``; Brier 0.114, calibration error 0.081`` (one class), or ``; multi-class Brier 0.410``: what headlines
    print beside AUROC, as a ranking can be perfect while its probabilities are not to be read as probabilities."""
    if ece is None:
        return f"; multi-class Brier {brier:.3f}"
    return f"; Brier {brier:.3f}, calibration error {ece:.3f}"


def multiclass_brier(truth: np.ndarray, probs: np.ndarray) -> float:
    """Brier's original score: mean over patients of the summed squared error over all classes (0 best, 2 worst).

    For two classes it is twice the binary Brier score of either class.
    """
    return float(np.mean(np.sum((np.asarray(probs, dtype=np.float64) - truth) ** 2, axis=1)))


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    n_used: int


def _per_class(fn: Callable[..., float], y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Scores of all columns in one scikit-learn call (multilabel form, `average=None`):
    the per-call input checks dominate the cost of a bootstrap, not the arithmetic."""
    if y.shape[1] == 1:
        return np.array([fn(y[:, 0], p[:, 0])])
    return np.asarray(fn(y, p, average=None), dtype=float)


MIN_VALID_SHARE = 0.5  # of the resamples, for a percentile CI to stand for the cohort's


def _resample_rows(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows of one resample of patients: a patient drawn k times contributes all its rows k times."""
    n_patients = int(codes.max()) + 1
    counts = np.bincount(rng.integers(0, n_patients, n_patients), minlength=n_patients)
    return np.repeat(np.arange(len(codes)), counts[codes])


def bootstrap(
    g: Predictions, n_bootstrap: int, seed: int, ci: float
) -> dict[tuple[str, str], Interval]:
    """Percentile CIs of the ranking metrics per class (and macro) from patient-level resamples.

    Resamples in which a class has only positives or only negatives are skipped for that
    class (and for the macro average); how many were used is reported with the interval. When
    fewer than half are usable (a fold with one patient of a class: the macro AUROC of 8 classes
    had 1 usable resample in 1,000 and printed a CI of zero width) there is no CI.
    """
    codes, _ = pd.factorize(g.patients)
    truth, probs = g.onehot(), g.probs
    keys = list(g.classes) + ([MACRO] if len(g.classes) > 2 else [])
    samples: dict[tuple[str, str], list[float]] = {(k, m): [] for k in keys for m in RANKING}
    rng = np.random.default_rng(seed)
    for _ in track(range(n_bootstrap), f"Bootstrap {g.target} {g.group}"):
        rows = _resample_rows(codes, rng)
        y, p = truth[rows], probs[rows]
        valid = y.min(axis=0) != y.max(axis=0)
        if not valid.any():
            continue
        for m, fn in RANKING.items():
            values = _per_class(fn, y[:, valid], p[:, valid])
            for cls, value in zip(np.asarray(g.classes)[valid], values):
                samples[(str(cls), m)].append(float(value))
            if MACRO in keys and valid.all():
                samples[(MACRO, m)].append(float(np.mean(values)))
    alpha = (1.0 - ci) / 2.0
    out = {}
    for key, values in samples.items():
        if len(values) < MIN_VALID_SHARE * n_bootstrap:  # the kept resamples are no longer a bootstrap of the cohort
            log.warning("%s %s %s: only %d of %d bootstrap resamples had both classes; no CI (too few patients "
                        "of a class in this group)", g.target, g.group, key[0], len(values), n_bootstrap)
            out[key] = Interval(np.nan, np.nan, len(values))
            continue
        low, high = np.quantile(values, [alpha, 1.0 - alpha])
        out[key] = Interval(float(low), float(high), len(values))
    return out


def confusion(g: Predictions) -> pd.DataFrame:
    """Confusion matrix of the `pred` column: rows are true classes, columns predicted ones."""
    matrix = confusion_matrix(g.labels, g.predicted, labels=list(g.classes))
    return pd.DataFrame(
        matrix,
        index=pd.Index([f"true {c}" for c in g.classes], name=g.target),
        columns=[f"pred {c}" for c in g.classes],
    )


def evaluate(g: Predictions, n_bootstrap: int, seed: int, ci: float,
             carried: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Tidy table of every metric of one group: one row per (class, metric); ``carried``: class -> cut-off."""
    truth = g.onehot()
    rows: list[dict] = []

    def add(cls: str, key: Key, value: float, n_pos: float, iv: Interval | None = None) -> None:
        rows.append({
            "target": g.target, "class": cls, "group": g.group, "metric": key[0], "threshold": key[1],
            "value": value,
            "ci_low": iv.low if iv else np.nan, "ci_high": iv.high if iv else np.nan,
            "n": g.n, "n_pos": n_pos, "n_bootstrap": iv.n_used if iv else np.nan,
        })

    intervals = bootstrap(g, n_bootstrap, seed, ci) if n_bootstrap > 0 else {}
    per_class = {}
    for k, cls in enumerate(g.classes):
        per_class[cls] = class_metrics(truth[:, k], g.probs[:, k], (carried or {}).get(cls))
        for key, value in per_class[cls].items():
            add(cls, key, value, int(truth[:, k].sum()), intervals.get((cls, key[0])) if not key[1] else None)
    if len(g.classes) > 2:
        for key in per_class[g.classes[0]]:
            if key[0] in ("threshold", "prevalence", "brier", "ece") or any(key not in m for m in per_class.values()):
                continue
            value = float(np.mean([m[key] for m in per_class.values()]))
            name = MACRO if key[0] in RANKING else MEAN_OVR
            add(name, key, value, np.nan, intervals.get((MACRO, key[0])) if not key[1] else None)
    # The `pred` column is the model's own decision (argmax), scored as a whole.
    add(OVERALL, ("accuracy", "pred"), float(accuracy_score(g.labels, g.predicted)), np.nan)
    add(OVERALL, ("balanced_accuracy", "pred"), float(balanced_accuracy_score(g.labels, g.predicted)), np.nan)
    add(OVERALL, ("f1_macro", "pred"), float(f1_score(g.labels, g.predicted, labels=list(g.classes), average="macro",
                                                      zero_division=0.0)), np.nan)
    add(OVERALL, ("brier", ""), multiclass_brier(truth, g.probs), np.nan)
    return pd.DataFrame(rows, columns=COLUMNS)
