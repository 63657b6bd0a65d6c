"""Statistics of a survival target: Harrell's and Uno's C, risk groups, Kaplan-Meier, log-rank, hazard ratios.

lifelines for Harrell's C, Kaplan-Meier estimates, the log-rank test and Cox models (with
confidence intervals for everything); scikit-survival for Uno's C, the inverse-probability-of-
censoring weighted concordance, which lifelines lacks and which stays unbiased when censoring is
heavy (Harrell's C then leans on the early, mostly uncensored part of follow-up). A ``patient-preds.csv``
of a survival target has ``PATIENT``, ``<target>_time``, ``<target>_event`` (1 = event), ``risk``
(higher = shorter survival) and optionally ``fold``. Risk groups split at a cut-off carried from
the training cohort's out-of-fold risks (``operating-point.json``), else at this cohort's own
median (labelled in-sample).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from slidepredict.core.progress import track
from slidepredict.stats.operating import CARRIED
from slidepredict.stats.predictions import FOLD, PredictionsError, group_frames, read_scored

log = logging.getLogger(__name__)

RISK = "risk"
CLASS = "risk"  # the `class` column of a survival target's rows in metrics.csv
IN_SAMPLE = "median-in-sample"
HEAVY_CENSORING = 0.5  # from this share of censored patients on, the headline adds Uno's C to Harrell's


def survival_target(df: pd.DataFrame) -> str | None:
    """``T`` when the table has ``T_time``, ``T_event`` and ``risk`` columns, else None."""
    if RISK not in df.columns:
        return None
    times = [c[: -len("_time")] for c in df.columns if c.endswith("_time")]
    return next((t for t in times if f"{t}_event" in df.columns), None)


def _concordance(t: np.ndarray, e: np.ndarray, r: np.ndarray) -> float:
    from lifelines.utils import concordance_index

    return float(concordance_index(t, -r, e))


def uno_tau(t: np.ndarray) -> float:
    """Uno's C is computed up to the 90th percentile of follow-up: beyond it the censoring weights blow up."""
    return float(np.quantile(t, 0.9))


def _uno(t: np.ndarray, e: np.ndarray, r: np.ndarray, tau: float) -> float:
    """Uno's C up to ``tau``, the censoring distribution estimated from these patients; NaN where undefined."""
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    y = Surv.from_arrays(e.astype(bool), t)
    try:
        return float(concordance_index_ipcw(y, y, r, tau=tau)[0])
    except ValueError:  # no comparable pair before tau, or censoring survival reaching 0 in a resample
        return float("nan")


def evaluate_risk(df: pd.DataFrame, target: str, group: str, n_bootstrap: int, seed: int, ci: float,
                  cut: float | None) -> pd.DataFrame:
    """C-index with a patient-bootstrap CI; with a cut-off, log-rank p and hazard ratios of the risk groups."""
    from lifelines import CoxPHFitter
    from lifelines.statistics import logrank_test

    t, e, r = (df[c].to_numpy(dtype=np.float64) for c in (f"{target}_time", f"{target}_event", RISK))
    if e.sum() == 0:
        raise PredictionsError(f"group '{group}' of target '{target}' has no events (all censored); "
                               "a C-index needs events.")
    rng = np.random.default_rng(seed)
    tau = uno_tau(t)
    boot, boot_uno = [], []
    for _ in track(range(n_bootstrap), "Bootstrap (survival)", total=n_bootstrap):
        idx = rng.integers(0, len(t), len(t))
        if e[idx].sum() > 0:
            boot.append(_concordance(t[idx], e[idx], r[idx]))
            boot_uno.append(_uno(t[idx], e[idx], r[idx], tau))
    alpha = (1 - ci) / 2
    base = {"target": target, "class": CLASS, "group": group, "n": len(t), "n_pos": int(e.sum())}
    rows = []
    for metric, value, draws, note in (("c_index", _concordance(t, e, r), boot, ""),
                                       ("c_index_uno", _uno(t, e, r, tau), boot_uno, f"tau={tau:.4g}")):
        draws = [d for d in draws if np.isfinite(d)]
        lo, hi = np.quantile(draws, [alpha, 1 - alpha]) if draws else (np.nan, np.nan)
        rows.append({**base, "metric": metric, "threshold": note, "value": value, "ci_low": lo, "ci_high": hi,
                     "n_bootstrap": len(draws)})
    z = (r - r.mean()) / (r.std() or 1.0)
    cox = CoxPHFitter().fit(pd.DataFrame({"t": t, "e": e, "z": z}), "t", "e")
    s = cox.summary.loc["z"]
    rows.append({**base, "metric": "hr_per_sd", "threshold": "", "value": float(s["exp(coef)"]),
                 "ci_low": float(s["exp(coef) lower 95%"]), "ci_high": float(s["exp(coef) upper 95%"]),
                 "n_bootstrap": np.nan})
    threshold = CARRIED if cut is not None else IN_SAMPLE
    cut = float(np.median(r)) if cut is None else cut
    high = r > cut
    rows.append({**base, "metric": "threshold", "threshold": threshold, "value": cut, "ci_low": np.nan,
                 "ci_high": np.nan, "n_bootstrap": np.nan})
    if high.any() and (~high).any():
        test = logrank_test(t[high], t[~high], e[high], e[~high])
        group_cox = CoxPHFitter().fit(pd.DataFrame({"t": t, "e": e, "high": high.astype(float)}), "t", "e")
        g = group_cox.summary.loc["high"]
        rows += [
            {**base, "metric": "logrank_p", "threshold": threshold, "value": float(test.p_value), "ci_low": np.nan,
             "ci_high": np.nan, "n_bootstrap": np.nan},
            {**base, "metric": "hr_high_vs_low", "threshold": threshold, "value": float(g["exp(coef)"]),
             "ci_low": float(g["exp(coef) lower 95%"]), "ci_high": float(g["exp(coef) upper 95%"]), "n_bootstrap": np.nan},
            {**base, "metric": "n_high", "threshold": threshold, "value": int(high.sum()), "ci_low": np.nan,
             "ci_high": np.nan, "n_bootstrap": np.nan},
        ]
    return pd.DataFrame(rows)


def read_risks(path: Path, label: str, by: str | None) -> tuple[str, list[tuple[str, pd.DataFrame]], pd.DataFrame]:
    """The target, its groups and all usable rows (labelled, not seen in training) of a survival predictions file."""
    target, df = read_scored(path, by, survival_target, lambda t: [f"{t}_time", f"{t}_event"],
                             "a survival target's (T_time, T_event and risk)")
    groups = group_frames(df, label, by) if (by or FOLD) in df.columns else []
    return target, groups, df


def km_plot(df: pd.DataFrame, target: str, cut: float, threshold: str, text: str, stem: Path) -> list[Path]:
    """Kaplan-Meier curves of the high- and low-risk groups with their 95% bands and numbers at risk."""
    from lifelines import KaplanMeierFitter
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written = []
    with rc_context({"svg.hashsalt": "slidepredict", "font.size": 9}):
        fig = Figure(figsize=(6.0, 4.8), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        high = df[RISK].to_numpy() > cut
        for name, rows in (("low risk", ~high), ("high risk", high)):
            if rows.any():
                km = KaplanMeierFitter(label=f"{name} (n = {int(rows.sum())})")
                km.fit(df.loc[rows, f"{target}_time"], df.loc[rows, f"{target}_event"])
                km.plot_survival_function(ax=ax, ci_show=True)
        where = "cut-off carried from the training cohort" if threshold == CARRIED else "this cohort's median risk"
        ax.set(xlabel="time", ylabel="survival probability", ylim=(0, 1.02),
               title=f"{target}: risk groups split at {cut:.3g} ({where})\n{text}")
        for fmt in ("svg", "png"):
            path = stem.with_suffix(f".{fmt}")
            fig.savefig(path, dpi=150, metadata={"Date": None} if fmt == "svg" else None)
            written.append(path)
    return written


def risk_headline(table: pd.DataFrame, target: str, ci: float) -> dict:
    """Pooled C-index with its CI, and the risk groups' log-rank p and hazard ratio, as values plus text."""
    pooled = table[(table["target"] == target) & (table["group"] == "pooled")].set_index("metric")
    c = pooled.loc["c_index"]
    per = table[(table["target"] == target) & (table["group"] != "pooled") & (table["metric"] == "c_index")]["value"]
    text = f"C-index {c['value']:.2f}"
    if not np.isnan(c["ci_low"]):
        text += f" ({ci:.0%} CI {c['ci_low']:.2f}-{c['ci_high']:.2f})"
    censored = 1 - c["n_pos"] / c["n"]
    if censored >= HEAVY_CENSORING and "c_index_uno" in pooled.index:
        u = pooled.loc["c_index_uno"]
        text += f"; {censored:.0%} censored, Uno's C {u['value']:.2f}"
        if not np.isnan(u["ci_low"]):
            text += f" ({ci:.0%} CI {u['ci_low']:.2f}-{u['ci_high']:.2f}, {u['threshold']})"
    groups = ""
    if "logrank_p" in pooled.index:
        cut, hr = pooled.loc["threshold"], pooled.loc["hr_high_vs_low"]
        kind = "carried cut-off" if cut["threshold"] == CARRIED else "median of this cohort (in-sample)"
        groups = (f"; high vs low risk at the {kind} {cut['value']:.3g}: log-rank p = {pooled.loc['logrank_p', 'value']:.2g}, "
                  f"HR {hr['value']:.2f} (95% CI {hr['ci_low']:.2f}-{hr['ci_high']:.2f})")
    return {"carried": None, "carried_text": groups, "target": target, "class": CLASS, "group": "pooled",
            "metric": "c_index", "value": float(c["value"]), "ci_low": float(c["ci_low"]), "ci_high": float(c["ci_high"]),
            "ci": ci, "n": int(c["n"]), "n_bootstrap": None, "text": text,
            "per_group": (f"{per.mean():.2f} +- {per.std(ddof=0):.2f} over {len(per)} groups" if len(per) > 1 else None)}


def survival_stats(paths: list[Path], labels: list[str], n_bootstrap: int, seed: int, ci: float, by: str | None,
                   staging: Path, carried: dict[str, dict[str, float]] | None = None,
                   ) -> tuple[pd.DataFrame, list[Path], dict[str, dict]]:
    """Every survival predictions file: metrics per group and pooled, a Kaplan-Meier plot per target, headlines."""
    by_target: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    whole: dict[str, list[pd.DataFrame]] = {}
    for path, label in zip(paths, labels):
        target, groups, df = read_risks(path, label, by)
        by_target.setdefault(target, []).extend(groups)
        whole.setdefault(target, []).append(df)
    tables, plots, headlines = [], [], {}
    for target, groups in by_target.items():
        pooled = pd.concat(whole[target], ignore_index=True)
        cut = (carried or {}).get(target, {}).get(RISK)
        parts = [evaluate_risk(g, target, name, n_bootstrap, seed, ci, cut) for name, g in groups
                 if len(groups) > 1 and g[f"{target}_event"].sum() > 0]
        table = pd.concat([*parts, evaluate_risk(pooled, target, "pooled", n_bootstrap, seed, ci, cut)], ignore_index=True)
        headlines[target] = risk_headline(table, target, ci)
        row = table[(table["group"] == "pooled") & (table["metric"] == "threshold")].iloc[0]
        plots += km_plot(pooled, target, float(row["value"]), str(row["threshold"]), headlines[target]["text"],
                         staging / f"km-{target}")
        tables.append(table)
    return pd.concat(tables, ignore_index=True), plots, headlines
