"""Patient-level stratified k-fold cross-validation and the final all-patients model.

Everything a rerun needs is on disk: ``splits.json`` (written once, reused), one folder per fold
whose ``patient-preds.csv`` is written last and atomically (its presence marks the fold done),
and ``train-config.json`` so a rerun never mixes folds trained with different settings.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from slidepredict.core import jsonio
from slidepredict.core.atomic import write_text_atomic
from slidepredict.core.batch import check_writable
from slidepredict.cohort.build import Cohort
from slidepredict.core.errors import CohortError, ConfigError
from slidepredict.layout import COHORT_FILE, MODEL_FILE, PREDS_FILE, SPLITS_FILE, TRAIN_CONFIG_FILE, baseline_dir, fold_dir
from slidepredict.training.baseline import REGRESSION
from slidepredict.training.fitting import check_trainable, fit
from slidepredict.training.predict import predict_cohort
from slidepredict.training.settings import TrainSettings
from slidepredict.training.splits import Splits, folds_text, load_or_make_splits, n_folds, splits_record

log = logging.getLogger(__name__)

def _guard_config(out_dir: Path, config: TrainSettings) -> None:
    """Refuse to continue a run whose trained models were made with other model settings.

    Only trained models count: settings recorded by a run that never got to train anything
    (it failed, or was stopped) are simply replaced.
    """
    path = out_dir / TRAIN_CONFIG_FILE
    if not path.is_file() or not any(out_dir.rglob(MODEL_FILE)):
        return
    before = json.loads(path.read_text())
    now = json.loads(json.dumps(config.model_settings()))
    diff = sorted(k for k in now if before.get(k) != now[k])
    if diff:
        k = diff[0]
        raise ConfigError(
            f"{out_dir} was trained with {k}={before.get(k)!r}, this run asks for {k}={now[k]!r}; "
            "use a new --out folder or delete the old one"
        )


def _fold_done(folder: Path) -> bool:
    return (folder / PREDS_FILE).is_file() and (folder / MODEL_FILE).is_file()


def check_held_out(test: Cohort, what: str) -> None:
    """Refuse to test on feature files whose encoder was fine-tuned on those very images (not held out)."""
    seen = [s.path for p in test.patients for s in test.slides[p] if s.tuned_on]
    if seen:
        raise CohortError(
            f"{what}: {len(seen)} held-out feature files (e.g. {seen[0]}) come from an encoder fine-tuned on those "
            "very images, so their predictions would not be held out; cross-validate with `slidepredict finetune "
            "--crossval` (one encoder tuned per fold), or embed with the untuned encoder"
        )


def record_run(out_dir: Path, cohort: Cohort, config: TrainSettings,
               splits: tuple[Splits, int, int] | None = None) -> None:
    """Write what identifies a training run (settings, cohort, new splits): only after its inputs passed every check."""
    check_writable(out_dir)
    write_text_atomic(out_dir / TRAIN_CONFIG_FILE, jsonio.dumps(config.model_settings(), indent=1))
    write_text_atomic(out_dir / COHORT_FILE, jsonio.dumps(cohort.summary(), indent=1))
    if splits is not None:
        write_text_atomic(out_dir / SPLITS_FILE, jsonio.dumps(splits_record(cohort, *splits), indent=1))


def crossval(
    cohort: Cohort, out_dir: str | os.PathLike[str], config: TrainSettings, folds: int = 5, fold: int | None = None,
    baseline: str | None = None, target_sensitivity: float | None = None, leave_group_out: bool = False,
    cutoff: float | None = None,
) -> Any:
    """Train and test one model per fold; returns the pooled test predictions (also written to disk).

    ``fold`` runs that fold alone (one cluster job per fold) and returns its predictions
    without pooling; a later call without ``fold`` skips the finished folds and pools.
    ``baseline`` (a pooling of :mod:`slidepredict.training.baseline`) also fits that reference on
    the same folds, into ``baseline-<pooling>/`` when the folds are pooled. The pooled predictions
    also choose the operating point carried to deploy (``stats/operating.py``; Youden's J, or the
    cut-off reaching ``target_sensitivity``, or the fixed ``cutoff``). With ``cohort.groups`` the folds are grouped
    (``training/splits.py``), or one per group with ``leave_group_out``.
    """
    import pandas as pd

    out_dir = Path(out_dir)
    folds = n_folds(cohort, folds, leave_group_out)
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2 (got {folds})")
    if fold is not None and not 0 <= fold < folds:
        raise ConfigError(f"--fold must be between 0 and {folds - 1} (got {fold})")
    check_trainable(cohort, min_per_class=1)
    if len(cohort) < folds:
        raise CohortError(
            f"crossval with {folds} folds needs at least {folds} patients; target '{cohort.target}' has "
            f"{len(cohort)} usable patients; use --folds {max(2, len(cohort))} or fewer"
        )
    small = {c: n for c, n in cohort.class_counts().items() if n < folds and cohort.groups is None}
    if small:
        cat, n = next(iter(small.items()))
        raise CohortError(
            f"class '{cat}' of target '{cohort.target}' has {n} patients, fewer than the {folds} folds; "
            f"use --folds {max(2, n)} or fewer"
        )
    splits, new = load_or_make_splits(out_dir / SPLITS_FILE, cohort, folds, config.seed, leave_group_out)
    for k, split in enumerate(splits):
        check_trainable(cohort.subset(split["train"]), why=f"for the inner validation split of fold {k}")
    _guard_config(out_dir, config)
    for k in range(folds) if fold is None else [fold]:
        if not _fold_done(fold_dir(out_dir, k)):
            check_held_out(cohort.subset(splits[k]["test"]), f"fold {k}")
    record_run(out_dir, cohort, config, (splits, folds, config.seed) if new else None)
    frames = []
    for k in range(folds) if fold is None else [fold]:  # no outer bar: Lightning draws the per-epoch bar inside each fold
        log.info("%s: fold %d of %d", cohort.target, k + 1, folds)
        folder = fold_dir(out_dir, k)
        preds_path = folder / PREDS_FILE
        if _fold_done(folder):
            log.info("fold %d: already done, skipping (%s)", k, preds_path)
            frames.append(pd.read_csv(preds_path, dtype={"PATIENT": str}))
            continue
        train, test = cohort.subset(splits[k]["train"]), cohort.subset(splits[k]["test"])
        model = fit(train, config, folder / MODEL_FILE, description=f"{cohort.target} fold {k}")
        df = predict_cohort(model, test, description=f"fold {k}: testing")
        df["fold"] = k
        if cohort.groups is not None:
            df[str(cohort.group_name)] = test.groups
        write_text_atomic(preds_path, df.to_csv(index=False))
        frames.append(df)
    if fold is not None:
        return frames[0]
    pooled = pd.concat(frames, ignore_index=True)
    write_text_atomic(out_dir / PREDS_FILE, pooled.to_csv(index=False))
    from slidepredict.stats import operating

    chosen_on = (f"the pooled out-of-fold predictions of {len(pooled)} training patients "
                 f"({folds_text(cohort, folds, leave_group_out)} cross-validation)")
    if cohort.kind == "categorical":  # a cut-off on class probabilities; a continuous prediction needs none
        operating.write(out_dir, operating.choose(pooled, str(cohort.target), cohort.categories, chosen_on,
                                                  target_sensitivity, cutoff))
    elif cohort.kind == "survival":  # high- and low-risk groups split where the training cohort's risks split
        operating.write(out_dir, operating.OperatingPoint(
            target=str(cohort.target), thresholds={"risk": float(pooled["risk"].median())},
            rule="median risk", chosen_on=chosen_on, n_patients=len(pooled)))
    if baseline is not None:
        from slidepredict.training.baseline import baseline_crossval

        ref = baseline_crossval(cohort, splits, baseline)
        write_text_atomic(baseline_dir(out_dir, baseline) / PREDS_FILE, ref.to_csv(index=False))
    return pooled


def train_final(cohort: Cohort, out_dir: str | os.PathLike[str], config: TrainSettings) -> Path:
    """One model on all patients for deployment; skipped when ``model.ckpt`` already exists."""
    out_dir = Path(out_dir)
    ckpt = out_dir / MODEL_FILE
    check_trainable(cohort)
    _guard_config(out_dir, config)
    record_run(out_dir, cohort, config)
    if ckpt.is_file():
        log.info("%s exists, skipping training", ckpt)
        return ckpt
    fit(cohort, config, ckpt, description=f"{cohort.target}: final model")
    return ckpt


def score_name(categories: list[str], kind: str = "categorical") -> str:
    """What :func:`pooled_auroc` measures: AUROC for classes, Pearson r for a continuous target, C for survival."""
    return {"categorical": "AUROC", "continuous": "Pearson r", "survival": "C-index"}[kind if not categories else "categorical"]


def pooled_auroc(preds: Any, target: str, categories: list[str], kind: str = "categorical") -> float:
    """Quick headline number for the CLI (macro one-vs-rest for multi-class; Pearson r for a continuous target;
    Harrell's C for survival); full statistics live in ``stats``."""
    from sklearn.metrics import roc_auc_score

    if kind == "survival":
        from lifelines.utils import concordance_index

        return float(concordance_index(preds[f"{target}_time"], -preds["risk"], preds[f"{target}_event"]))
    if not categories:
        truth, pred = preds[target].astype(float), preds["pred"].astype(float)
        return float(np.corrcoef(truth, pred)[0, 1]) if truth.std() > 0 and pred.std() > 0 else float("nan")
    y = preds[target].astype(str)
    if y.nunique() < 2:
        return float("nan")
    if len(categories) == 2:
        return float(roc_auc_score(y == categories[1], preds[f"{target}_{categories[1]}"]))
    scores = preds[[f"{target}_{c}" for c in categories]].to_numpy()
    return float(roc_auc_score(y, scores, multi_class="ovr", labels=categories))


def calibration_note(preds: Any, target: str, categories: list[str]) -> str:
    """``; Brier 0.114, calibration error 0.081`` of the held-out probabilities (binary: of ``categories[1]``);
    the multi-class Brier for more classes; "" for a continuous or survival target."""
    from slidepredict.stats.metrics import calibration_error, calibration_text, multiclass_brier

    if not categories or preds[target].astype(str).nunique() < 2:
        return ""
    y = preds[target].astype(str).to_numpy()
    if len(categories) == 2:
        truth, p = (y == categories[1]).astype(float), preds[f"{target}_{categories[1]}"].to_numpy(np.float64)
        return calibration_text(float(np.mean((p - truth) ** 2)), calibration_error(truth, p))
    onehot = (y[:, None] == np.asarray(categories)[None]).astype(float)
    return calibration_text(multiclass_brier(onehot, preds[[f"{target}_{c}" for c in categories]].to_numpy()))


def baseline_auroc(out_dir: Path, pooling: str, target: str) -> float | None:
    """Pooled held-out AUROC of the reference baseline a crossval wrote into ``out_dir`` (None: not written)."""
    import pandas as pd

    if not (baseline_dir(out_dir, pooling) / PREDS_FILE).is_file():
        return None
    summary = json.loads((out_dir / COHORT_FILE).read_text())
    categories = summary["categories"]
    preds = pd.read_csv(baseline_dir(out_dir, pooling) / PREDS_FILE,
                        dtype={"PATIENT": str, **({target: str} if categories else {})})
    return pooled_auroc(preds, target, categories, summary.get("kind", "categorical"))


def baseline_note(out_dir: Path, pooling: str | None, target: str) -> str:
    """``"; mean-pool + logistic regression, same folds: AUROC 0.65"``, or "" when there is no baseline."""
    ref = baseline_auroc(out_dir, pooling, target) if pooling else None
    if ref is None:
        return ""
    summary = json.loads((out_dir / COHORT_FILE).read_text())
    categories, kind = summary["categories"], summary.get("kind", "categorical")
    return f"; {pooling} + {REGRESSION[kind]}, same folds: {score_name(categories, kind)} {ref:.2f}"
