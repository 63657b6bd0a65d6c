"""`slidepredict compare`: is model A better than model B on the same patients?

Two models scored on the same patients are correlated, so their AUROCs' own intervals overlap
even when one is consistently better. The paired comparison uses DeLong's test (DeLong,
DeLong & Clarke-Pearson, Biometrics 1988), computed with midranks as in Sun & Xu (IEEE SPL
2014), which is what R's ``pROC::roc.test`` reports, plus a patient-level paired bootstrap
interval of the difference (both models scored on each resample). No maintained Python
library offers the paired DeLong test (scikit-learn has none), so it is written here in a
few vectorised lines and checked against pROC's published values in the tests.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata
from sklearn.metrics import roc_auc_score

from slidepredict.core.atomic import staged_folder
from slidepredict.core.names import safe_name
from slidepredict.core.settings import for_target
from slidepredict.core.progress import track
from slidepredict.stats.predictions import (
    Predictions, PredictionsError, compared_rows, file_labels, read_predictions, trained_anywhere,
)

log = logging.getLogger(__name__)

COMPARISON_CSV = "comparison.csv"


def delong(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs of ``scores`` (k, n) for 0/1 truth ``y`` (n,), and their DeLong covariance matrix (k, k)."""
    y = np.asarray(y).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    pos, neg = scores[:, y], scores[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    if min(m, n) < 2:  # the variance of the structural components needs two of each (one gives NaN)
        raise ValueError(f"DeLong's test needs at least two positive and two negative patients (got {m} and {n})")
    rank_all = rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # midranks: ties count half
    rank_pos, rank_neg = rankdata(pos, axis=1), rankdata(neg, axis=1)
    aucs = (rank_all[:, :m].sum(1) - m * (m + 1) / 2) / (m * n)
    v_pos = (rank_all[:, :m] - rank_pos) / n  # structural components of the positives
    v_neg = 1.0 - (rank_all[:, m:] - rank_neg) / m  # ... and of the negatives
    cov = np.atleast_2d(np.cov(v_pos)) / m + np.atleast_2d(np.cov(v_neg)) / n
    return aucs, cov


def delong_test(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """Paired test of AUROC(a) - AUROC(b): difference, its standard error, z and two-sided p."""
    aucs, cov = delong(y, np.vstack([a, b]))
    diff = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
    if se == 0.0:
        return diff, 0.0, 0.0, 1.0  # identical rankings: no evidence of a difference
    z = diff / se
    return diff, se, z, float(2 * norm.sf(abs(z)))


def paired_bootstrap(y: np.ndarray, a: np.ndarray, b: np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    """AUROC(a) - AUROC(b) on patient resamples (both models on the same resample); one-class resamples skipped."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in track(range(n_bootstrap), "Paired bootstrap", total=n_bootstrap):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue
        out.append(roc_auc_score(y[idx], a[idx]) - roc_auc_score(y[idx], b[idx]))
    return np.asarray(out)


@dataclass
class Model:
    """One predictions file, its rows in the shared patient order."""

    name: str
    preds: Predictions


def _whole_file(path: Path, label: str, trained: set[str]) -> Predictions:
    """All labelled rows of a file (its folds pooled) but the patients in ``trained``; one row per patient."""
    groups = read_predictions(path, label)
    fields = ("patients", "labels", "predicted", "probs")
    whole = replace(groups[0], group=label, **{k: np.concatenate([getattr(g, k) for g in groups]) for k in fields})
    keep = compared_rows(whole.patients, path, trained)
    return replace(whole, **{k: getattr(whole, k)[keep] for k in fields})


def _aligned(paths: list[Path]) -> list[Model]:
    """Every file, checked to score the same patients with the same labels and classes, in one order."""
    labels = [lab or Path(p).parent.name or Path(p).stem for lab, p in zip(file_labels(paths), paths)]
    trained = trained_anywhere(paths)
    models = [Model(lab, _whole_file(Path(p), lab, trained)) for lab, p in zip(labels, paths)]
    ref = models[0].preds
    for mdl in models[1:]:
        g = mdl.preds
        if (g.target, set(g.classes)) != (ref.target, set(ref.classes)):
            raise PredictionsError(
                f"'{ref.source}' predicts {ref.target} ({', '.join(ref.classes)}) but '{g.source}' predicts "
                f"{g.target} ({', '.join(g.classes)}); compare models of one target and classes."
            )
        only_a = sorted(set(ref.patients) - set(g.patients))
        only_b = sorted(set(g.patients) - set(ref.patients))
        if only_a or only_b:
            raise PredictionsError(
                f"'{ref.source}' and '{g.source}' have different patients ({len(only_a)} only in the first"
                f"{', e.g. ' + only_a[0] if only_a else ''}; {len(only_b)} only in the second"
                f"{', e.g. ' + only_b[0] if only_b else ''}); compare models on the same patients."
            )
    order = np.argsort(ref.patients)
    out = []
    for mdl in models:
        g = mdl.preds
        idx = np.argsort(g.patients)
        cols = [list(g.classes).index(c) for c in ref.classes]
        aligned = Predictions(source=g.source, group=mdl.name, target=g.target, classes=ref.classes,
                              patients=g.patients[idx], labels=g.labels[idx], predicted=g.predicted[idx],
                              probs=g.probs[idx][:, cols])
        differ = np.flatnonzero(aligned.labels != ref.labels[order])
        if len(differ):
            p = aligned.patients[differ[0]]
            raise PredictionsError(
                f"patient '{p}' is '{ref.labels[order][differ[0]]}' in '{ref.source}' but '{aligned.labels[differ[0]]}' "
                f"in '{g.source}' ({len(differ)} patients differ); compare models on the same labels."
            )
        out.append(Model(mdl.name, aligned))
    return out


def compare_models(paths: list[Path], out_dir: Path, n_bootstrap: int = 1000, seed: int = 0, ci: float = 0.95,
                   positive: str | Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every pair of models, per class shown (the positive one for a binary target): ``comparison.csv`` and a plot.

    ``positive`` is a class, or a per-target mapping (the `stats.positive` setting).
    """
    from slidepredict.stats.api import file_kind, positive_class
    from slidepredict.stats.plots import plot_comparison

    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise PredictionsError("compare needs at least two predictions files (one per model).")
    kinds = {p: file_kind(p) for p in paths}
    if len(set(kinds.values())) > 1:
        other = next(p for p in paths if kinds[p] != kinds[paths[0]])
        raise PredictionsError(f"'{paths[0]}' holds a {kinds[paths[0]]} target's predictions and '{other}' a "
                               f"{kinds[other]} one's; compare models of one target.")
    if kinds[paths[0]] != "categorical":
        from slidepredict.stats.compare_scores import compare_scores

        table = compare_scores(paths, kinds[paths[0]], n_bootstrap, seed, ci)
        _write(out_dir, table, lambda staging: [plot_differences(table, staging, f"comparison-{safe_name(table['target'][0])}")])
        return table
    models = _aligned(paths)
    ref = models[0].preds
    chosen = for_target(positive, ref.target) if isinstance(positive, Mapping) else positive
    shown = [positive_class(ref, chosen)] if len(ref.classes) == 2 else list(ref.classes)
    alpha = (1 - ci) / 2
    rows = []
    for cls in shown:
        k = list(ref.classes).index(cls)
        y = (ref.labels == cls).astype(int)
        few = min(int(y.sum()), int(len(y) - y.sum()))
        if few < 2:
            side = f"'{cls}'" if y.sum() == few else f"other than '{cls}'"
            raise PredictionsError(
                f"{ref.target}: {few} of the {len(y)} compared patients {'is' if few == 1 else 'are'} {side}; "
                "DeLong's test needs at least two patients of each class (its variance is undefined with one)")
        for a, b in itertools.combinations(models, 2):
            pa, pb = a.preds.probs[:, k], b.preds.probs[:, k]
            diff, se, z, p = delong_test(y, pa, pb)
            boot = paired_bootstrap(y, pa, pb, n_bootstrap, seed) if n_bootstrap else np.empty(0)
            lo, hi = np.quantile(boot, [alpha, 1 - alpha]) if len(boot) else (np.nan, np.nan)
            rows.append({
                "target": ref.target, "class": cls, "model_a": a.name, "model_b": b.name, "n": len(y),
                "n_pos": int(y.sum()), "auroc_a": roc_auc_score(y, pa), "auroc_b": roc_auc_score(y, pb),
                "difference": diff, "delong_se": se, "delong_z": z, "delong_p": p,
                "delong_ci_low": diff - norm.ppf(1 - alpha) * se, "delong_ci_high": diff + norm.ppf(1 - alpha) * se,
                "bootstrap_ci_low": lo, "bootstrap_ci_high": hi, "n_bootstrap": len(boot), "ci": ci,
            })
    table = pd.DataFrame(rows)
    _write(out_dir, table, lambda staging: plot_comparison(models, shown, table, staging, f"comparison-{safe_name(ref.target)}"))
    return table


def _write(out_dir: Path, table: pd.DataFrame, plot: Callable[[Path], list[str]]) -> None:
    """``comparison.csv`` and the plot's files, staged and moved in only when all are written."""
    with staged_folder(out_dir, ".compare-") as staging:
        table.to_csv(staging / COMPARISON_CSV, index=False, float_format="%.6g")
        for name in [COMPARISON_CSV, *plot(staging)]:
            (staging / name).replace(Path(out_dir) / name)


def plot_differences(table: pd.DataFrame, staging: Path, stem: str) -> str:
    """Each pair's difference with its paired-bootstrap interval, against zero (no difference)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 1.2 + 0.5 * len(table)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    y = np.arange(len(table))
    diff, low, high = (table[c].to_numpy(dtype=float) for c in ("difference", "bootstrap_ci_low", "bootstrap_ci_high"))
    ax.errorbar(diff, y, xerr=np.vstack([diff - low, high - diff]), fmt="o", capsize=4)
    ax.axvline(0.0, ls="--", color="0.5", lw=1)
    ax.set_yticks(y, [f"{r.model_a} - {r.model_b}" for r in table.itertuples()])
    ax.set(xlabel=f"difference in {table['metric'][0]} (paired bootstrap {table['ci'][0]:.0%} CI)",
           title=f"{table['target'][0]} (n = {table['n'][0]}, same patients)")
    fig.savefig(staging / f"{stem}.png", dpi=150)
    return f"{stem}.png"


def describe(row: pd.Series) -> str:
    """One line per compared pair, for the CLI."""
    if "auroc_a" not in row.index:
        from slidepredict.stats.compare_scores import describe_scores

        return describe_scores(row)
    return _describe_auroc(row)


def _describe_auroc(row: pd.Series) -> str:
    """``fold-ensemble vs baseline: AUROC 0.91 vs 0.74, difference 0.17 (95% CI 0.08-0.26), DeLong p = 0.002``."""
    return (f"{row['model_a']} vs {row['model_b']} ({row['class']}, n={row['n']}): AUROC {row['auroc_a']:.2f} vs "
            f"{row['auroc_b']:.2f}, difference {row['difference']:+.2f} (paired bootstrap {row['ci']:.0%} CI "
            f"{row['bootstrap_ci_low']:+.2f} to {row['bootstrap_ci_high']:+.2f}), DeLong p = {row['delong_p']:.3g}")
