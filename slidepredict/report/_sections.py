"""Report sections: each finds its inputs in the run folder and renders an HTML fragment.

All user-controlled text (patient IDs, class names, file names, config values) goes through
Jinja2's autoescaping; images are embedded as data URIs so the page is one file.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup

from slidepredict.core.registry import Registry
from slidepredict.layout import COHORT_FILE, FOLD_PREFIX, PREDS_FILE
from slidepredict.stats.operating import CARRIED

MAX_PRED_ROWS = 500

THUMB_PX = 360


@dataclass
class Section:
    """A titled block of the page; ``html`` is already escaped/safe."""

    key: str
    title: str
    html: Markup


SectionFn = Callable[[Path, Any], "Section | None"]
# The page shows the sections in registration order.
SECTIONS: Registry[SectionFn] = Registry("report section")
register_section = SECTIONS.register


def _rel(path: Path, run_dir: Path) -> str:
    rel = path.relative_to(run_dir).as_posix()
    return "run folder" if rel == "." else rel


def image_data_uri(path: Path, max_px: int | None = None) -> str:
    """PNG data URI of an image file, shrunk to ``max_px`` on its long side when given."""
    from PIL import Image

    if max_px is None and path.suffix.lower() == ".png":
        data = path.read_bytes()
    else:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if max_px:
                im.thumbnail((max_px, max_px))
            buf = io.BytesIO()
            im.save(buf, format="PNG", optimize=True)
            data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _files(run_dir: Path, pattern: str) -> list[Path]:
    return sorted(p for p in run_dir.rglob(pattern) if p.is_file() and ".partial" not in p.name)


def _rendered(env: Any, key: str, title: str, template: str, **context: Any) -> Section:
    """A section whose body is one template rendered with ``context`` (autoescaped)."""
    return Section(key, title, Markup(env.get_template(template).render(**context)))


@register_section("config")
def config_section(run_dir: Path, env: Any) -> Section | None:
    cfgs = _files(run_dir, "config.resolved.yaml") or _files(run_dir, "config.yaml")
    if not cfgs:
        return None
    text = cfgs[0].read_text(errors="replace")
    html = env.from_string("<p>{{ name }}</p><details><summary>Resolved configuration</summary><pre>{{ text }}</pre></details>").render(
        name=_rel(cfgs[0], run_dir), text=text
    )
    return Section("config", "Run", Markup(html))


@register_section("cohort")
def cohort_section(run_dir: Path, env: Any) -> Section | None:
    files = _files(run_dir, COHORT_FILE)
    if not files:
        return None
    blocks = []
    for f in files:
        data = json.loads(f.read_text())
        blocks.append({"where": _rel(f.parent, run_dir), "data": data})
    return _rendered(env, "cohort", "Cohort", "cohort.html", blocks=blocks)


def _fmt_ci(value: float, low: float, high: float) -> str:
    if value != value:  # NaN
        return "n/a"
    return f"{value:.3f}" if low != low else f"{value:.3f} ({low:.2f}-{high:.2f})"


def metrics_summary(df: Any) -> tuple[list[str], list[list[str]]]:
    """One row per target/class/group: the figures a reader compares, CIs inline."""
    columns = ["target", "class", "group", "n", "AUROC (95% CI)", "AUPRC (95% CI)", "Brier", "calibration error",
               "sens@0.5", "spec@0.5"]
    decisions = [("brier", None), ("ece", None), ("sensitivity", "0.5"), ("specificity", "0.5")]
    if "threshold" in df and (df["threshold"].astype(str) == CARRIED).any():  # cut-offs from the training cohort
        columns += [f"{CARRIED} cut-off", f"sens@{CARRIED}", f"spec@{CARRIED}"]
        decisions += [("threshold", CARRIED), ("sensitivity", CARRIED), ("specificity", CARRIED)]
    rows = []
    for (target, cls, group), g in df.groupby(["target", "class", "group"], sort=False):
        if cls == "overall":
            continue
        def pick(metric: str, threshold: str | None = None) -> Any:
            sel = g[g["metric"] == metric]
            if threshold is not None and "threshold" in g:
                sel = sel[sel["threshold"].astype(str) == threshold]
            return sel.iloc[0] if len(sel) else None
        cells = [str(target), str(cls), str(group)]
        first = g.iloc[0]
        cells.append(str(int(first["n"])) if first["n"] == first["n"] else "")
        for metric in ("auroc", "auprc"):
            r = pick(metric)
            cells.append(_fmt_ci(r["value"], r["ci_low"], r["ci_high"]) if r is not None else "")
        for metric, thr in decisions:
            r = pick(metric, thr)
            cells.append(f"{r['value']:.3f}" if r is not None and r["value"] == r["value"] else "")
        rows.append(cells)
    return columns, rows + _spread_rows(df, len(columns))


def _spread_rows(df: Any, width: int) -> list[list[str]]:
    """Per target and class, the folds' (or groups') own AUROCs as mean +- SD, next to the pooled CI."""
    rows = []
    auroc = df[(df["metric"] == "auroc") & (df["group"] != "pooled") & (df["class"] != "overall")]
    for (target, cls), g in auroc.groupby(["target", "class"], sort=False):
        values = g["value"].astype(float).dropna()
        if len(values) > 1 and (df["group"] == "pooled").any():
            cell = f"{values.mean():.3f} ± {values.std(ddof=0):.3f} ({len(values)} groups)"
            rows.append([str(target), str(cls), "mean ± SD of groups", "", cell] + [""] * (width - 5))
    return rows


@register_section("deployment")
def deployment_section(run_dir: Path, env: Any) -> Section | None:
    """What each deployment was: which models, whether its patients were external, which cut-off it carried."""
    from slidepredict.deploy.ensemble import SUMMARY_FILE

    files = _files(run_dir, SUMMARY_FILE)
    if not files:
        return None
    blocks = []
    for f in files:
        d = json.loads(f.read_text())
        seen = sorted(set().union(*(set(v["patients"]) for v in d.get("training_overlap", {}).values())))
        point = d.get("operating_point") or {}
        blocks.append({
            "where": _rel(f.parent, run_dir), "models": ", ".join(m["name"] for m in d["models"]),
            "ensemble": d.get("ensemble") or "single model", "patients": d["cohort"]["patients"],
            "overlap": len(seen), "overlap_examples": ", ".join(seen[:5]) + (", ..." if len(seen) > 5 else ""),
            "operating_point": point.get("chosen_on", ""), "stats": (d.get("stats") or {}).get("headline", {}).get("text", ""),
            "stats_skipped": d.get("stats_skipped") or "",
        })
    return _rendered(env, "deployment", "Deployment", "deployment.html", blocks=blocks)


def values_summary(df: Any) -> tuple[list[str], list[list[str]]]:
    """A continuous target's figures: one row per target/group, CIs inline."""
    from slidepredict.stats.regression import DISPLAY

    columns = ["target", "group", "n", *(f"{name} (95% CI)" for name in DISPLAY.values())]
    rows = []
    for (target, group), g in df.groupby(["target", "group"], sort=False):
        cells = [str(target), str(group), str(int(g["n"].iloc[0]))]
        for metric in DISPLAY:
            r = g[g["metric"] == metric]
            cells.append(_fmt_ci(*r[["value", "ci_low", "ci_high"]].iloc[0]) if len(r) else "")
        rows.append(cells)
    return columns, rows


def risk_summary(df: Any) -> tuple[list[str], list[list[str]]]:
    """A survival target's figures: C-index, hazard ratios and the risk groups' log-rank test per group."""
    columns = ["target", "group", "n", "events", "C-index (95% CI)", "Uno's C (95% CI) up to time", "HR per SD of risk (95% CI)", "risk cut-off",
               "log-rank p", "HR high vs low (95% CI)"]
    rows = []
    for (target, group), g in df.groupby(["target", "group"], sort=False):
        by = g.set_index("metric")
        def ci(metric: str) -> str:
            return _fmt_ci(*by.loc[metric, ["value", "ci_low", "ci_high"]]) if metric in by.index else ""
        def uno() -> str:
            return f"{ci('c_index_uno')} to {by.loc['c_index_uno', 'threshold'][4:]}" if "c_index_uno" in by.index else ""
        cut = f"{by.loc['threshold', 'value']:.3g} ({by.loc['threshold', 'threshold']})" if "threshold" in by.index else ""
        p = f"{by.loc['logrank_p', 'value']:.2g}" if "logrank_p" in by.index else ""
        first = g.iloc[0]
        rows.append([str(target), str(group), str(int(first["n"])), str(int(first["n_pos"])), ci("c_index"),
                     uno(), ci("hr_per_sd"), cut, p, ci("hr_high_vs_low")])
    return columns, rows


@register_section("metrics")
def metrics_section(run_dir: Path, env: Any) -> Section | None:
    import pandas as pd

    files = _files(run_dir, "metrics.csv")
    if not files:
        return None
    tables = []
    for f in files:
        df = pd.read_csv(f, dtype={"threshold": str})
        if {"target", "class", "group", "metric", "value"} <= set(df.columns) and (df["metric"] == "c_index").any():
            columns, rows = risk_summary(df)
        elif {"target", "class", "group", "metric", "value"} <= set(df.columns) and (df["metric"] == "pearson_r").any():
            columns, rows = values_summary(df)
        elif {"target", "class", "group", "metric", "value"} <= set(df.columns):
            columns, rows = metrics_summary(df)
        else:
            columns, rows = list(df.columns), df.astype(str).values.tolist()
        tables.append({"where": _rel(f.parent, run_dir), "href": _rel(f, run_dir), "columns": columns, "rows": rows})
    plots = [
        {"name": _rel(p, run_dir), "uri": image_data_uri(p)}
        for f in files
        for p in sorted(f.parent.glob("*.png"))
    ]
    return _rendered(env, "metrics", "Performance", "metrics.html", tables=tables, plots=plots)


@register_section("predictions")
def predictions_section(run_dir: Path, env: Any) -> Section | None:
    import pandas as pd

    files = [f for f in _files(run_dir, PREDS_FILE) if FOLD_PREFIX not in f.parent.name]
    if not files:
        return None
    tables = []
    for f in files:
        df = pd.read_csv(f)
        tables.append({
            "where": _rel(f, run_dir),
            "columns": list(df.columns),
            "rows": df.head(MAX_PRED_ROWS).round(3).astype(str).values.tolist(),
            "more": max(0, len(df) - MAX_PRED_ROWS),
        })
    return _rendered(env, "predictions", "Patient predictions", "predictions.html", tables=tables)


@register_section("heatmaps")
def heatmaps_section(run_dir: Path, env: Any) -> Section | None:
    pngs = _files(run_dir, "*_heatmap*.png")
    if not pngs:
        return None
    items = []
    for p in pngs:
        geo = sorted(p.parent.glob("*.geojson"))
        items.append({
            "name": p.stem,
            "href": _rel(p, run_dir),
            "uri": image_data_uri(p, THUMB_PX),
            "geojson": [_rel(g, run_dir) for g in geo],
            "drawn_by": _drawn_by(p.parent),
        })
    return _rendered(env, "heatmaps", "Heatmaps", "heatmaps.html", items=items, rule=_RULE_TEXT)


_RULE_TEXT = ("A patient of a cross-validated cohort is drawn by the fold model that held it out; a patient no model "
              "saw (external) by all models, averaged; a patient the drawing model trained on is marked in-sample, "
              "and its map and probability are not a validation.")


def _drawn_by(folder: Path) -> str:
    """``held out (fold-2)`` from the slide's heatmaps.json; empty for maps drawn before it was recorded."""
    from slidepredict.heatmaps.api import DONE_FILE

    try:
        drawn = json.loads((folder / DONE_FILE).read_text()).get("drawn_by") or {}
    except (OSError, ValueError):
        return ""
    return f"{drawn['status']} ({drawn['model']})" if {"status", "model"} <= drawn.keys() else ""


@register_section("qc")
def qc_section(run_dir: Path, env: Any) -> Section | None:
    """One line per slide (method, tissue area, tiles kept and dropped by reason, failure) and the QC images."""
    from slidepredict.tiling.grid import DROP_REASONS as QC_REASONS

    pngs = [p for p in _files(run_dir, "*.png") if p.parent.name == "qc"]
    if not pngs:
        return None
    rows = []
    for p in pngs:
        try:
            q = json.loads(p.with_suffix(".json").read_text())
        except (OSError, ValueError):
            continue
        dropped = q.get("dropped") or {}
        rows.append([q.get("slide", p.stem), q.get("method", ""), f"{q['tissue_mm2']:.2f}" if "tissue_mm2" in q else "",
                     str(q.get("kept", "")), *(str(dropped.get(r, "")) for r in QC_REASONS), q.get("failure") or ""])
    items = [{"name": p.stem, "href": _rel(p, run_dir), "uri": image_data_uri(p, THUMB_PX // 2), "geojson": []} for p in pngs[:200]]
    columns = ["slide", "method", "tissue mm2", "tiles kept", *(f"dropped: {r}" for r in QC_REASONS), "failed"]
    return _rendered(env, "qc", "Tissue detection and tiling (QC)", "qc.html", items=items, columns=columns, rows=rows)

