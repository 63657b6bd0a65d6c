"""Statistics of a continuous target: Pearson r, Spearman rho, R^2 and MAE with patient-bootstrap CIs, and a scatter.

A ``patient-preds.csv`` of a continuous target has ``PATIENT``, ``<target>`` (the true value),
``pred`` (the predicted value) and optionally ``fold`` (or another group column, ``--by``). The
point estimates are scipy's and scikit-learn's; the intervals resample patients, as for classes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import mean_absolute_error, r2_score

from slidepredict.core.progress import track
from slidepredict.stats.predictions import FOLD, PATIENT, PRED, PredictionsError, group_frames, read_scored

log = logging.getLogger(__name__)

METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "pearson_r": lambda y, p: float(pearsonr(y, p)[0]),
    "spearman_rho": lambda y, p: float(spearmanr(y, p)[0]),
    "r2": lambda y, p: float(r2_score(y, p)),
    "mae": lambda y, p: float(mean_absolute_error(y, p)),
}
DISPLAY = {"pearson_r": "Pearson r", "spearman_rho": "Spearman rho", "r2": "R^2", "mae": "MAE"}
VALUE = "value"  # the `class` column of a continuous target's rows in metrics.csv


def continuous_target(df: pd.DataFrame) -> str | None:
    """The truth column of a continuous target's predictions (the numeric column before a numeric ``pred``), else None."""
    cols = list(df.columns)
    if PRED not in cols or not pd.api.types.is_numeric_dtype(df[PRED]):
        return None
    before = [c for c in cols[: cols.index(PRED)] if c != PATIENT]
    if not before or not pd.api.types.is_numeric_dtype(df[before[-1]]) or any(c.startswith(f"{before[-1]}_") for c in cols):
        return None
    return before[-1]


def _bootstrap(y: np.ndarray, p: np.ndarray, n_bootstrap: int, seed: int, ci: float) -> dict[str, tuple[float, float, int]]:
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in track(range(n_bootstrap), "Bootstrap (continuous)", total=n_bootstrap):
        idx = rng.integers(0, len(y), len(y))
        if np.ptp(y[idx]) == 0 or np.ptp(p[idx]) == 0:
            continue
        for m, fn in METRICS.items():
            samples[m].append(fn(y[idx], p[idx]))
    alpha = (1 - ci) / 2
    return {m: (*np.quantile(v, [alpha, 1 - alpha]), len(v)) if v else (np.nan, np.nan, 0) for m, v in samples.items()}


def evaluate_values(df: pd.DataFrame, target: str, group: str, n_bootstrap: int, seed: int, ci: float) -> pd.DataFrame:
    """One row per metric of one group, in the metrics.csv layout."""
    y, p = df[target].to_numpy(dtype=np.float64), df[PRED].to_numpy(dtype=np.float64)
    if len(y) < 3 or np.ptp(y) == 0:
        raise PredictionsError(f"group '{group}' of target '{target}' has {len(y)} patients with "
                               f"{'no spread in' if len(y) >= 3 else 'too few'} true values; correlations need three or more that differ.")
    intervals = _bootstrap(y, p, n_bootstrap, seed, ci) if n_bootstrap else {}
    rows = []
    for m, fn in METRICS.items():
        low, high, used = intervals.get(m, (np.nan, np.nan, np.nan))
        value = fn(y, p) if np.ptp(p) > 0 or m in ("mae", "r2") else np.nan
        rows.append({"target": target, "class": VALUE, "group": group, "metric": m, "threshold": "", "value": value,
                     "ci_low": low, "ci_high": high, "n": len(y), "n_pos": np.nan, "n_bootstrap": used})
    return pd.DataFrame(rows)


def read_values(path: Path, label: str, by: str | None) -> tuple[str, list[tuple[str, pd.DataFrame]], pd.DataFrame]:
    """The target, its groups (folds or ``by``) and all labelled rows of a continuous predictions file."""
    target, df = read_scored(path, by, continuous_target, lambda t: [t],
                             f"a continuous target's (numeric '{PRED}' and truth)")
    return target, group_frames(df, label, by), df


def scatter(df: pd.DataFrame, target: str, text: str, path_stem: Path) -> list[Path]:
    """Predicted vs true value, one point per patient (coloured by fold when there are folds), identity line."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written = []
    with rc_context({"svg.hashsalt": "slidepredict", "font.size": 9}):
        fig = Figure(figsize=(5.4, 5.2), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        parts = df.groupby(df[FOLD].astype(str)) if FOLD in df.columns else [("", df)]
        for name, part in parts:
            ax.scatter(part[target], part[PRED], s=14, alpha=0.8, label=f"fold {name}" if name else None)
        lo = float(min(df[target].min(), df[PRED].min()))
        hi = float(max(df[target].max(), df[PRED].max()))
        ax.plot([lo, hi], [lo, hi], ls="--", color="0.5", lw=1, label="identity")
        ax.set(xlabel=f"true {target}", ylabel=f"predicted {target}", title=f"{target} (n = {len(df)}): {text}")
        ax.legend(fontsize=7, loc="upper left")
        for fmt in ("svg", "png"):
            path = path_stem.with_suffix(f".{fmt}")
            fig.savefig(path, dpi=150, metadata={"Date": None} if fmt == "svg" else None)
            written.append(path)
    return written


def value_headline(table: pd.DataFrame, target: str, ci: float) -> dict:
    """The pooled Pearson r with its CI, per-group spread and MAE, as plain values plus text."""
    rows = table[(table["target"] == target) & (table["metric"] == "pearson_r")]
    row = rows[rows["group"] == "pooled"].iloc[0]
    per = rows[rows["group"] != "pooled"]["value"].astype(float).dropna()
    mae = table[(table["target"] == target) & (table["metric"] == "mae") & (table["group"] == "pooled")].iloc[0]
    text = f"Pearson r {row['value']:.2f}"
    if not np.isnan(row["ci_low"]):
        text += f" ({ci:.0%} CI {row['ci_low']:.2f}-{row['ci_high']:.2f})"
    text += f", MAE {mae['value']:.3g}"
    return {"carried": None, "carried_text": "", "target": target, "class": VALUE, "group": "pooled",
            "metric": "pearson_r", "value": float(row["value"]), "ci_low": float(row["ci_low"]),
            "ci_high": float(row["ci_high"]), "ci": ci, "n": int(row["n"]), "n_bootstrap": None, "text": text,
            "per_group": (f"{per.mean():.2f} +- {per.std(ddof=0):.2f} over {len(per)} groups" if len(per) > 1 else None)}


def value_stats(paths: list[Path], labels: list[str], n_bootstrap: int, seed: int, ci: float, by: str | None,
                staging: Path) -> tuple[pd.DataFrame, list[Path], dict[str, dict]]:
    """Every continuous predictions file: metrics per group and pooled, a scatter per target, headlines."""
    by_target: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    pooled: dict[str, list[pd.DataFrame]] = {}
    for path, label in zip(paths, labels):
        target, groups, df = read_values(path, label, by)
        by_target.setdefault(target, []).extend(groups)
        pooled.setdefault(target, []).append(df)
    tables, plots, headlines = [], [], {}
    for target, groups in by_target.items():
        whole = pd.concat(pooled[target], ignore_index=True)
        parts = [evaluate_values(g, target, name, n_bootstrap, seed, ci) for name, g in groups if len(groups) > 1]
        table = pd.concat([*parts, evaluate_values(whole, target, "pooled", n_bootstrap, seed, ci)], ignore_index=True)
        headlines[target] = value_headline(table, target, ci)
        plots += scatter(whole, target, headlines[target]["text"], staging / f"scatter-{target}")
        tables.append(table)
    return pd.concat(tables, ignore_index=True), plots, headlines
