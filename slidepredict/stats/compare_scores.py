"""`slidepredict compare` for continuous and survival targets: paired differences of Pearson r or Harrell's C.

No closed-form paired test is as general here as DeLong's is for AUROC, so the difference gets a
paired patient-bootstrap interval (both models scored on each resample) and a bootstrap p-value
(twice the share of resamples on the other side of zero).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from slidepredict.core.progress import track
from slidepredict.stats.predictions import PATIENT, PredictionsError, compared_rows, file_labels, trained_anywhere

log = logging.getLogger(__name__)

Score = Callable[[pd.DataFrame, str, str], float]  # (aligned rows, target, prediction column) -> score


def _pearson(df: pd.DataFrame, target: str, column: str) -> float:
    return float(np.corrcoef(df[target], df[column])[0, 1])


def _harrell(df: pd.DataFrame, target: str, column: str) -> float:
    from lifelines.utils import concordance_index

    return float(concordance_index(df[f"{target}_time"], -df[column], df[f"{target}_event"]))


# kind -> (metric name, truth columns of a target, prediction column, score)
KINDS: dict[str, tuple[str, Callable[[str], list[str]], str, Score]] = {
    "continuous": ("pearson_r", lambda t: [t], "pred", _pearson),
    "survival": ("c_index", lambda t: [f"{t}_time", f"{t}_event"], "risk", _harrell),
}


def _read(path: Path, kind: str, trained: set[str]) -> tuple[str, pd.DataFrame]:
    """A file's labelled rows of patients no compared model trained on, one per patient (duplicates refused)."""
    from slidepredict.stats.regression import continuous_target
    from slidepredict.stats.survival import survival_target

    df = pd.read_csv(path, dtype={PATIENT: str})
    target = survival_target(df) if kind == "survival" else continuous_target(df)
    if target is None:
        raise PredictionsError(f"Predictions file '{path}' is not a {kind} target's.")
    unlabelled = df[KINDS[kind][1](target)].isna().any(axis=1).to_numpy()
    if unlabelled.any():
        log.info("%s: %d of %d rows have no true value for '%s' and are left out of the comparison",
                 path, int(unlabelled.sum()), len(df), target)
    return target, df[compared_rows(df[PATIENT].to_numpy(), path, trained, ~unlabelled)].set_index(PATIENT)


def aligned_scores(paths: list[Path], kind: str) -> tuple[str, list[str], pd.DataFrame]:
    """One frame of every model's prediction per patient, with the (shared) truth; refuses other patients or truths.

    The rules of the categorical path: rows without a truth are counted and left out, patients any model trained
    on (``in_training``) are left out of every model's rows, and a patient listed twice is refused.
    """
    metric, truth_of, column, _ = KINDS[kind]
    names = [lab or p.parent.name for lab, p in zip(file_labels(paths), paths)]
    trained = trained_anywhere(paths)
    read = [_read(p, kind, trained) for p in paths]
    target, ref = read[0]
    for (t, df), path in zip(read[1:], paths[1:]):
        if t != target:
            raise PredictionsError(f"'{paths[0]}' predicts {target} but '{path}' predicts {t}; compare models of one target.")
        only_a, only_b = sorted(set(ref.index) - set(df.index)), sorted(set(df.index) - set(ref.index))
        if only_a or only_b:
            raise PredictionsError(
                f"'{paths[0]}' and '{path}' have different patients ({len(only_a)} only in the first"
                f"{', e.g. ' + only_a[0] if only_a else ''}; {len(only_b)} only in the second"
                f"{', e.g. ' + only_b[0] if only_b else ''}); compare models on the same patients.")
        truth = truth_of(target)
        differ = ~np.isclose(ref[truth].to_numpy(float), df.loc[ref.index, truth].to_numpy(float)).all(axis=1)
        if differ.any():
            raise PredictionsError(f"patient '{ref.index[differ][0]}' has other true values in '{path}' than in "
                                   f"'{paths[0]}' ({int(differ.sum())} patients differ); compare models on the same labels.")
    frame = ref[truth_of(target)].copy()
    for name, (_, df) in zip(names, read):
        frame[name] = df.loc[frame.index, column]
    return target, names, frame.reset_index()


def compare_scores(paths: list[Path], kind: str, n_bootstrap: int, seed: int, ci: float) -> pd.DataFrame:
    """Every pair of models: both scores, their difference, its paired-bootstrap CI and p-value."""
    metric, _, _, score = KINDS[kind]
    target, names, frame = aligned_scores(paths, kind)
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(frame), len(frame)) for _ in range(n_bootstrap)]
    alpha = (1 - ci) / 2
    rows = []
    for a, b in itertools.combinations(names, 2):
        diff = score(frame, target, a) - score(frame, target, b)
        boot = []
        for idx in track(draws, f"Paired bootstrap {a} vs {b}", total=len(draws)):
            sample = frame.iloc[idx]
            try:
                boot.append(score(sample, target, a) - score(sample, target, b))
            except (ValueError, ZeroDivisionError):
                continue  # a resample without events or spread
        boot_arr = np.asarray([d for d in boot if np.isfinite(d)])
        low, high = np.quantile(boot_arr, [alpha, 1 - alpha]) if len(boot_arr) else (np.nan, np.nan)
        p = float(min(1.0, 2 * min((boot_arr <= 0).mean(), (boot_arr >= 0).mean()))) if len(boot_arr) else np.nan
        rows.append({"target": target, "metric": metric, "model_a": a, "model_b": b, "n": len(frame),
                     "score_a": score(frame, target, a), "score_b": score(frame, target, b), "difference": diff,
                     "bootstrap_ci_low": low, "bootstrap_ci_high": high, "bootstrap_p": p,
                     "n_bootstrap": len(boot_arr), "ci": ci})
    return pd.DataFrame(rows)


def describe_scores(row: pd.Series) -> str:
    """``attention vs baseline (pearson_r, n=40): 0.81 vs 0.62, difference +0.19 (... CI ...), bootstrap p = 0.01``."""
    return (f"{row['model_a']} vs {row['model_b']} ({row['metric']}, n={row['n']}): {row['score_a']:.2f} vs "
            f"{row['score_b']:.2f}, difference {row['difference']:+.2f} (paired bootstrap {row['ci']:.0%} CI "
            f"{row['bootstrap_ci_low']:+.2f} to {row['bootstrap_ci_high']:+.2f}), bootstrap p = {row['bootstrap_p']:.3g}")
