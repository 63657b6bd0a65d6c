"""The reference a MIL head is read against: pooled tile features + a linear model, on the same folds.

A head that does not beat the mean of a patient's tile features fed to a logistic regression has not
shown that it finds localised morphology; a cohort where that baseline scores as well as the head
usually carries its signal in slide-level colour or composition (or a site signature). Fitted on
each fold's training patients only and scored on its test patients, exactly like the head, so the
two pooled AUROCs are comparable (``slidepredict stats`` reads both files).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from slidepredict.cohort.build import Cohort
from slidepredict.core.progress import track
from slidepredict.training.predict import predictions_frame, risk_frame, values_frame

# name -> how a patient's (tiles, dim) features become one vector
POOLING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean-pool": lambda f: f.mean(0),
    "max-pool": lambda f: f.max(0),
}
DEFAULT = "mean-pool"


def pooled_features(cohort: Cohort, pooling: str = DEFAULT) -> np.ndarray:
    """One row per patient (all tiles of all slides pooled), in ``cohort.patients`` order."""
    reduce = POOLING[pooling]
    rows = [reduce(cohort.load_bag(p)[0].astype(np.float32)) for p in track(cohort.patients, f"{pooling} features")]
    return np.stack(rows).astype(np.float64)


# target type -> the regression fitted on pooled features, as named in the predictions' ``model`` column
REGRESSION = {"categorical": "logistic regression", "continuous": "ridge regression", "survival": "ridge Cox regression"}


def fit_pooled(x: np.ndarray, y: np.ndarray, kind: str = "categorical") -> Any:
    """Standardised features, then an L2-regularised regression: logistic (sklearn's defaults, multinomial),
    ridge for a continuous target, a ridge-penalised Cox model (scikit-survival) for survival (y: time, event)."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "survival":
        from sksurv.linear_model import CoxPHSurvivalAnalysis
        from sksurv.util import Surv

        return make_pipeline(StandardScaler(), CoxPHSurvivalAnalysis(alpha=1.0)).fit(
            x, Surv.from_arrays(y[:, 1].astype(bool), y[:, 0]))
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000) if kind == "categorical" else Ridge()).fit(x, y)


def fit_folds(cohort: Cohort, splits: list[dict[str, list[str]]], x: np.ndarray) -> list[Any]:
    """One pooled model per fold, each fitted on that fold's training patients only (``x``: pooled features)."""
    if cohort.labels is None:
        raise ValueError("a baseline needs a labelled cohort")
    index = {p: i for i, p in enumerate(cohort.patients)}
    fitted = []
    for split in splits:
        rows = [index[p] for p in split["train"]]
        fitted.append(fit_pooled(x[rows], cohort.labels[rows], cohort.kind))
    return fitted


def held_out_frame(cohort: Cohort, splits: list[dict[str, list[str]]], x: np.ndarray, models: list[Any],
                   pooling: str) -> Any:
    """Each fold model's predictions of its test patients, in the patient-preds layout (plus ``model``)."""
    import pandas as pd

    index = {p: i for i, p in enumerate(cohort.patients)}
    frames = []
    for k, (split, model) in enumerate(zip(splits, models)):
        test = [index[p] for p in split["test"]]
        if cohort.kind == "survival":  # the Cox model's linear predictor, standardised to its training patients
            train_lp = model.predict(x[[index[p] for p in split["train"]]])
            risk = (model.predict(x[test]) - train_lp.mean()) / (train_lp.std() or 1.0)
            df = risk_frame(split["test"], risk, str(cohort.target), cohort.labels[test])  # type: ignore[index]
            df["fold"] = k
            frames.append(df)
            continue
        if cohort.kind == "continuous":
            df = values_frame(split["test"], model.predict(x[test]), str(cohort.target),
                              [float(v) for v in cohort.labels[test]])  # type: ignore[index]
            df["fold"] = k
            frames.append(df)
            continue
        probs = np.zeros((len(test), len(cohort.categories)))
        probs[:, model.classes_] = model.predict_proba(x[test])
        truth = [cohort.categories[i] for i in cohort.labels[test]]  # type: ignore[index]
        df = predictions_frame(split["test"], probs, cohort.categories, cohort.target, truth)
        df["fold"] = k
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out["model"] = f"{pooling} + {REGRESSION[cohort.kind]}"
    return out


def baseline_crossval(cohort: Cohort, splits: list[dict[str, list[str]]], pooling: str = DEFAULT) -> Any:
    """Held-out predictions of the pooled baseline on ``splits`` (the head's folds), patient-preds layout."""
    x = pooled_features(cohort, pooling)
    return held_out_frame(cohort, splits, x, fit_folds(cohort, splits, x), pooling)
