"""ROC, precision-recall and calibration figures: per-fold curves thin, pooled bold.

Drawn on a bare `Figure` with the Agg canvas (never pyplot), so plotting works on
headless cluster nodes and leaves no global state behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve

from slidepredict.stats.metrics import MACRO, OVERALL, format_value
from slidepredict.core.names import safe_name
from slidepredict.stats.predictions import Predictions

FORMATS = ("svg", "png")
Curve = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _roc(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fpr, tpr, _ = roc_curve(y, p)
    return fpr, tpr


def _pr(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    precision, recall, _ = precision_recall_curve(y, p)
    return recall, precision


def _calibration(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Fewer bins for small groups, so each bin holds enough patients to mean something.
    bins = int(np.clip(len(y) // 10, 3, 10))
    observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="uniform")
    return predicted, observed


def _chance(ax: Axes, y: np.ndarray) -> None:
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance")


def _prevalence(ax: Axes, y: np.ndarray) -> None:
    ax.axhline(y.mean(), ls="--", color="0.6", lw=1, label=f"prevalence {y.mean():.2f}")


def _ideal(ax: Axes, y: np.ndarray) -> None:
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="perfectly calibrated")


@dataclass(frozen=True)
class PlotKind:
    """One figure type: how to draw a curve, its axes, and which metric labels the legend."""

    title: str
    xlabel: str
    ylabel: str
    metric: str
    curve: Curve
    reference: Callable[[Axes, np.ndarray], None]
    legend_loc: str
    step: bool = False
    markers: bool = False


PLOTS: dict[str, PlotKind] = {
    "roc": PlotKind("ROC", "1 - specificity (false positive rate)", "sensitivity (true positive rate)",
                    "auroc", _roc, _chance, "lower right"),
    "pr": PlotKind("Precision-recall", "recall (sensitivity)", "precision (positive predictive value)",
                   "auprc", _pr, _prevalence, "lower left", step=True),
    "calibration": PlotKind("Calibration", "mean predicted probability", "observed fraction positive",
                            "brier", _calibration, _ideal, "upper left", markers=True),
}


def _legend(table: pd.DataFrame, group: str, cls: str, metric: str, ci: float) -> str:
    row = table[(table["group"] == group) & (table["class"] == cls) & (table["metric"] == metric)].iloc[0]
    head = f"{group} (n={int(row['n'])}, {int(row['n_pos'])} pos)"
    if metric == "brier":
        return f"{head}: Brier {row['value']:.3f}"
    return f"{head}: {format_value(metric, row, ci)}"


def _panel(ax: Axes, kind: PlotKind, folds: list[Predictions], pooled: Predictions, cls: str,
           table: pd.DataFrame, ci: float) -> None:
    k = pooled.classes.index(cls)
    for i, g in enumerate(folds + [pooled]):
        bold = g is pooled
        x, y = kind.curve(g.onehot()[:, k], g.probs[:, k])
        style = {"lw": 2.6 if bold else 1.0, "alpha": 1.0 if bold else 0.7,
                 "color": "black" if bold else f"C{i % 10}", "zorder": 3 if bold else 2,
                 "label": _legend(table, g.group, cls, kind.metric, ci)}
        if kind.markers:
            style.update(marker="o", ms=5 if bold else 3)
        (ax.step(x, y, where="post", **style) if kind.step else ax.plot(x, y, **style))
    kind.reference(ax, pooled.onehot()[:, k])
    title = f"{pooled.target} = {cls}" if len(pooled.classes) == 2 else f"{pooled.target}: {cls} vs rest"
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.02), xlabel=kind.xlabel, ylabel=kind.ylabel,
           title=f"{kind.title}, {title}")
    ax.set_aspect("equal")
    ax.grid(True, color="0.9", lw=0.6)
    ax.legend(loc=kind.legend_loc, fontsize=7.5, framealpha=0.9)


def plot_target(folds: list[Predictions], pooled: Predictions, classes: list[str],
                table: pd.DataFrame, out_dir: Path, ci: float) -> list[Path]:
    """Write one figure per plot kind for one target, one panel per class; returns the paths."""
    written = []
    ncols = min(3, len(classes))
    nrows = -(-len(classes) // ncols)
    with rc_context({"svg.hashsalt": "slidepredict", "font.size": 9}):
        for name, kind in PLOTS.items():
            fig = Figure(figsize=(5.6 * ncols, 5.4 * nrows), layout="constrained")
            FigureCanvasAgg(fig)
            axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
            for ax, cls in zip(axes, classes):
                _panel(ax, kind, folds, pooled, cls, table, ci)
            for ax in axes[len(classes):]:
                ax.set_axis_off()
            if len(classes) > 2:
                brier = kind.metric == "brier"  # one multi-class score, not a class average
                macro = table[(table["group"] == pooled.group) & (table["class"] == (OVERALL if brier else MACRO))
                              & (table["metric"] == kind.metric)].iloc[0]
                summary = f"multi-class Brier {macro['value']:.3f}" if brier else (
                    f"macro average: {format_value(kind.metric, macro, ci)}")
                fig.suptitle(f"{pooled.target}, {pooled.group} {summary}", fontsize=11)
            for fmt in FORMATS:
                path = out_dir / f"{name}-{safe_name(pooled.target)}.{fmt}"
                fig.savefig(path, dpi=150, metadata={"Date": None} if fmt == "svg" else None)
                written.append(path)
    return written


def plot_comparison(models: list, classes: list[str], table: pd.DataFrame, out_dir: Path, stem: str) -> list[str]:
    """ROC curves of every model on the same patients, one panel per class, the paired differences below."""
    names = []
    ncols = min(3, len(classes))
    nrows = -(-len(classes) // ncols)
    with rc_context({"svg.hashsalt": "slidepredict", "font.size": 9}):
        fig = Figure(figsize=(5.6 * ncols, 6.2 * nrows), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, cls in zip(axes, classes):
            for m in models:
                k = list(m.preds.classes).index(cls)
                y = (m.preds.labels == cls).astype(int)
                fpr, tpr = _roc(y, m.preds.probs[:, k])
                auc = table.loc[(table["class"] == cls) & (table["model_a"] == m.name), "auroc_a"]
                auc = auc if len(auc) else table.loc[(table["class"] == cls) & (table["model_b"] == m.name), "auroc_b"]
                ax.plot(fpr, tpr, lw=2, label=f"{m.name}: AUROC {float(auc.iloc[0]):.3f}")
            _chance(ax, y)
            rows = table[table["class"] == cls]
            diffs = "\n".join(f"{r.model_a} - {r.model_b}: {r.difference:+.3f}, DeLong p = {r.delong_p:.3g}"
                              for r in rows.itertuples())
            ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01),
                   title=f"{models[0].preds.target}: {cls} (n = {len(y)}, paired)")
            ax.text(0.98, 0.02, diffs, ha="right", va="bottom", fontsize=8, transform=ax.transAxes)
            ax.legend(loc="center right", fontsize=8)
        for ax in axes[len(classes):]:
            ax.set_axis_off()
        for fmt in FORMATS:
            name = f"{stem}.{fmt}"
            fig.savefig(out_dir / name, dpi=150, metadata={"Date": None} if fmt == "svg" else None)
            names.append(name)
    return names
