"""`compute_stats`: predictions files in, a folder of tables and figures out.

All inputs are validated before anything is written, and outputs are staged in a hidden
folder and moved into place at the end, so an error never leaves a half-written folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from slidepredict.core.atomic import staged_folder
from slidepredict.core.settings import for_target
from slidepredict.stats.metrics import MACRO, calibration_text, confusion, evaluate, format_value
from slidepredict.stats.operating import CARRIED
from slidepredict.stats.plots import plot_target
from slidepredict.core.names import safe_name
from slidepredict.stats.predictions import Predictions, PredictionsError, check_no_degenerate_class, complete, load_all

log = logging.getLogger(__name__)

POOLED = "pooled"
METRICS_CSV = "metrics.csv"


@dataclass
class StatsResult:
    """What `compute_stats` wrote, plus the headline figure a demo or report prints first."""

    table: pd.DataFrame
    metrics_csv: Path
    plots: list[Path]
    confusion: dict[tuple[str, str], Path]  # (target, group) -> csv
    headlines: dict[str, dict] = field(default_factory=dict)  # per target

    @property
    def headline(self) -> dict:
        """Headline of the first target: pooled AUROC of the positive class (macro if multi-class)."""
        return next(iter(self.headlines.values()))


def pool(groups: list[Predictions]) -> Predictions:
    """All groups of a target as one; a patient seen in several files stays one bootstrap unit."""
    first = groups[0]
    return replace(
        first, group=POOLED,
        **{k: np.concatenate([getattr(g, k) for g in groups]) for k in ("patients", "labels", "predicted", "probs")},
    )


def positive_class(pooled: Predictions, requested: str | None) -> str:
    """The class a binary target is plotted and headlined for: the requested one, else the rarer."""
    if requested is not None:
        if requested not in pooled.classes:
            raise PredictionsError(
                f"--positive '{requested}' is not a class of target '{pooled.target}' "
                f"(classes: {', '.join(pooled.classes)})."
            )
        return requested
    counts = [int((pooled.labels == c).sum()) for c in pooled.classes]
    # Ties go to the later column, as `<target>_<positive>` usually comes last.
    return pooled.classes[len(counts) - 1 - int(np.argmin(counts[::-1]))]


def _carried_text(table: pd.DataFrame, target: str, cls: str) -> tuple[dict[str, float] | None, str]:
    """Sensitivity and specificity of ``cls`` at the carried cut-off (pooled), and their text; none without one."""
    sel = table[(table["target"] == target) & (table["class"] == cls) & (table["group"] == POOLED)
                & (table["threshold"] == CARRIED)]
    if sel.empty:
        return None, ""
    fig = {m: float(sel.loc[sel["metric"] == m, "value"].iloc[0]) for m in ("threshold", "sensitivity", "specificity")}
    return fig, (f"; at the carried cut-off {fig['threshold']:.3f}: sensitivity {fig['sensitivity']:.2f}, "
                 f"specificity {fig['specificity']:.2f}")


def headline(table: pd.DataFrame, target: str, cls: str, ci: float) -> dict:
    """The one figure a demo or report leads with, as plain Python values plus ready text."""
    rows = table[(table["target"] == target) & (table["class"] == cls) & (table["metric"] == "auroc")]
    row = rows[rows["group"] == POOLED].iloc[0]
    per_group = rows[rows["group"] != POOLED]["value"].astype(float).dropna()
    carried, carried_text = _carried_text(table, target, cls)
    return {
        "carried": carried, "carried_text": carried_text,
        "per_group": (f"{per_group.mean():.2f} +- {per_group.std(ddof=0):.2f} over {len(per_group)} groups"
                      if len(per_group) > 1 else None),
        "target": target, "class": cls, "group": POOLED, "metric": "auroc",
        "value": float(row["value"]), "ci_low": float(row["ci_low"]), "ci_high": float(row["ci_high"]),
        "ci": ci, "n": int(row["n"]),
        "n_bootstrap": None if np.isnan(row["n_bootstrap"]) else int(row["n_bootstrap"]),
        "text": format_value("auroc", row, ci) + _calibration_text(table, target, cls),
    }


def _calibration_text(table: pd.DataFrame, target: str, cls: str) -> str:
    """The headline class's pooled Brier score and calibration error; for a multi-class macro row the multi-class Brier."""
    sel = table[(table["target"] == target) & (table["group"] == POOLED)]
    own = sel[sel["class"] == cls].set_index("metric")["value"]
    if "brier" in own.index:
        return calibration_text(float(own["brier"]), float(own["ece"]))
    overall = sel[(sel["metric"] == "brier")]["value"]
    return calibration_text(float(overall.iloc[0])) if len(overall) else ""


def file_kind(path: Path) -> str:
    """``categorical``, ``continuous`` or ``survival``: what a predictions file's columns say it holds."""
    from slidepredict.stats.regression import continuous_target
    from slidepredict.stats.survival import survival_target

    try:
        head = pd.read_csv(path, nrows=50, dtype={"PATIENT": str})
    except (OSError, ValueError, pd.errors.ParserError):
        return "categorical"  # the categorical reader reports what is wrong with the file
    if survival_target(head) is not None:
        return "survival"
    return "continuous" if continuous_target(head) is not None else "categorical"


def is_continuous(path: Path) -> bool:
    """Whether a predictions file is a continuous target's (numeric predictions, no class columns)."""
    return file_kind(path) == "continuous"


def _publish_other(kind: str, paths: list[Path], out_dir: Path, n_bootstrap: int, seed: int, ci: float,
                   by: str | None, carried: Mapping[str, Mapping[str, float]] | None) -> StatsResult:
    """``compute_stats`` for continuous or survival targets: metrics.csv, a scatter or KM plot per target."""
    from slidepredict.stats.predictions import file_labels
    from slidepredict.stats.regression import value_stats
    from slidepredict.stats.survival import survival_stats

    with staged_folder(out_dir, ".stats-") as staging:
        labels = file_labels(paths)
        if kind == "survival":
            table, plots, headlines = survival_stats(paths, labels, n_bootstrap, seed, ci, by, staging,
                                                     {k: dict(v) for k, v in (carried or {}).items()})
        else:
            table, plots, headlines = value_stats(paths, labels, n_bootstrap, seed, ci, by, staging)
        table.to_csv(staging / METRICS_CSV, index=False, float_format="%.6g")
        final = _publish(out_dir, [staging / METRICS_CSV, *plots])
    for h in headlines.values():
        log.info("%s: %s (n=%d, pooled)%s", h["target"], h["text"], h["n"], h["carried_text"])
    return StatsResult(table=table, metrics_csv=final[0], plots=final[1:], confusion={}, headlines=headlines)


def _check_options(n_bootstrap: int, ci: float) -> None:
    if n_bootstrap < 0:
        raise PredictionsError(f"--n-bootstrap must be 0 (no CIs) or more, got {n_bootstrap}.")
    if not 0.0 < ci < 1.0:
        raise PredictionsError(f"--ci must be between 0 and 1 (e.g. 0.95), got {ci}.")


def _publish(out_dir: Path, written: list[Path]) -> list[Path]:
    """Move staged files into place; each move is atomic, and nothing is staged in out_dir itself."""
    final = []
    for path in written:
        os.replace(path, out_dir / path.name)
        final.append(out_dir / path.name)
    return final


def compute_stats(
    pred_files: list[Path],
    out_dir: Path,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    positive: str | Mapping[str, str] | None = None,
    carried: Mapping[str, Mapping[str, float]] | None = None,
    by: str | None = None,
) -> StatsResult:
    """Per target, class and group (file/fold and pooled): metrics with CIs, confusion, plots.

    ``positive`` is one class for every binary target, or a per-target mapping (the `stats.positive` setting).
    ``carried`` (target -> class -> cut-off) adds the figures at cut-offs chosen on other data
    (``stats/operating.py``), the ones to quote for an external cohort. ``by`` names a column
    (e.g. the site) whose values replace the folds as the groups; a group lacking a class has no
    figures of its own but is pooled.
    """
    _check_options(n_bootstrap, ci)
    kinds = {Path(p): file_kind(Path(p)) for p in pred_files}
    if len(set(kinds.values())) > 1:
        (first, k1), (other, k2) = next(iter(kinds.items())), next((p, k) for p, k in kinds.items() if k != kinds[Path(pred_files[0])])
        raise PredictionsError(f"'{first}' holds a {k1} target's predictions and '{other}' a {k2} one's; "
                               "evaluate them in separate runs.")
    kind = next(iter(kinds.values()), "categorical")
    if kind != "categorical":
        return _publish_other(kind, [Path(p) for p in pred_files], Path(out_dir), n_bootstrap, seed, ci, by, carried)
    by_target = load_all([Path(p) for p in pred_files], by)
    plans = []  # (fold groups, pooled group, classes to plot); all choices checked before any work
    for groups in by_target.values():
        pooled = pool(groups)
        check_no_degenerate_class(pooled)
        lacking = [g.group for g in groups if not complete(g)]
        if lacking:
            log.warning("%s: %d groups lack a class and are only pooled (%s)", pooled.target, len(lacking),
                        ", ".join(lacking[:5]))
            groups = [g for g in groups if complete(g)]
        chosen = positive_class(pooled, for_target(positive, pooled.target) if isinstance(positive, Mapping) else positive)
        shown = [chosen] if len(pooled.classes) == 2 else list(pooled.classes)
        plans.append((groups if len(groups) > 1 else [], pooled, shown))
    tables, matrices = [], {}
    for folds, pooled, _ in plans:
        for g in folds + [pooled]:
            tables.append(evaluate(g, n_bootstrap, seed, ci, (carried or {}).get(g.target)))
            matrices[(g.target, g.group)] = confusion(g)
    table = pd.concat(tables, ignore_index=True)
    headlines = {
        pooled.target: headline(table, pooled.target, shown[0] if len(shown) == 1 else MACRO, ci)
        for _, pooled, shown in plans
    }

    out_dir = Path(out_dir)
    with staged_folder(out_dir, ".stats-") as staging:
        written = [staging / METRICS_CSV]
        table.to_csv(written[0], index=False, float_format="%.6g")
        confusion_paths = {}
        for (target, group), matrix in matrices.items():
            path = staging / f"confusion-{safe_name(target)}-{safe_name(group)}.csv"
            matrix.to_csv(path)
            confusion_paths[(target, group)] = out_dir / path.name
            written.append(path)
        plots = []
        for folds, pooled, shown in plans:
            plots += plot_target(folds, pooled, shown, table, staging, ci)
        final = _publish(out_dir, written + plots)
    for h in headlines.values():
        log.info("%s: %s (n=%d, pooled)%s", h["target"], h["text"], h["n"], h["carried_text"])
    return StatsResult(
        table=table, metrics_csv=final[0], plots=final[len(written):],
        confusion=confusion_paths, headlines=headlines,
    )
