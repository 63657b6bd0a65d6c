"""Report sections of image cohorts: a screen's hits, dose-response fits and plate maps; sub-population clusters.

Like every section they look for their own files (``hits.csv`` of `slidepredict screen`,
``clusters.csv`` of `slidepredict clusters`) anywhere in the run folder and are left out without them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slidepredict.report._sections import THUMB_PX, Section, _files, _rel, _rendered, image_data_uri, register_section

MAX_HIT_ROWS = 50


def _table(df: Any, caption: str, file: str, limit: int = MAX_HIT_ROWS) -> dict[str, Any]:
    """A table block: the first ``limit`` rows, numbers to 3 significant digits, NaN shown as '-'."""
    shown = df.head(limit).map(lambda v: f"{v:.3g}" if isinstance(v, float) and v == v else
                               ("-" if isinstance(v, float) else str(v)))
    return {"caption": caption, "columns": list(df.columns), "rows": shown.values.tolist(),
            "more": max(0, len(df) - limit), "file": file}


def _figures(paths: list[Path], run_dir: Path) -> list[dict[str, str]]:
    return [{"name": p.name, "href": _rel(p, run_dir), "uri": image_data_uri(p, 2 * THUMB_PX)} for p in paths]


@register_section("screen")
def screen_section(run_dir: Path, env: Any) -> Section | None:
    """Hits (sorted by robust z), 4PL fits with EC50 CIs, the dose-response plot and the plate heatmaps."""
    import pandas as pd

    blocks = []
    for hits_file in _files(run_dir, "hits.csv"):
        folder = hits_file.parent
        hits = pd.read_csv(hits_file)
        called = int(hits["hit"].sum()) if "hit" in hits.columns else 0
        tables = [_table(hits, f"Compound-doses by robust z ({called} hit(s))", _rel(hits_file, run_dir))]
        fits_file = folder / "dose-response.csv"
        if fits_file.is_file():
            tables.append(_table(pd.read_csv(fits_file), "Dose-response (4-parameter logistic; EC50 with 95% CI)",
                                 _rel(fits_file, run_dir)))
        figures = [p for p in [folder / "dose-response.png", *sorted(folder.glob("plate-*.png"))] if p.is_file()]
        blocks.append({"where": _rel(folder, run_dir), "tables": tables, "figures": _figures(figures, run_dir),
                       "note": "Scores against each plate's negative-control wells: robust z = (score - control "
                               "median) / (1.4826 x control MAD); SSMD against the control mean and variance."})
    if not blocks:
        return None
    return _rendered(env, "screen", "Screen", "tables_figures.html", blocks=blocks)


@register_section("clusters")
def clusters_section(run_dir: Path, env: Any) -> Section | None:
    """Each cluster's share, its association with the two groups (FDR) and the montage of example units."""
    import pandas as pd

    blocks = []
    for table_file in _files(run_dir, "clusters.csv"):
        folder = table_file.parent
        try:
            info = json.loads((folder / "clusters.json").read_text())
            per = f" ({info['sample']})" if "sample" in info else ""
            note = f"k = {info['k']} chosen by {info['chosen_by']} over {info['units']} units of {info['samples']} samples{per}."
        except (OSError, ValueError, KeyError):
            note = ""
        figures = [p for p in [folder / "montage.png"] if p.is_file()]
        blocks.append({"where": _rel(folder, run_dir), "note": note, "figures": _figures(figures, run_dir),
                       "tables": [_table(pd.read_csv(table_file), "Clusters: share of units, mean per-sample share "
                                         "per group, Mann-Whitney p, Benjamini-Hochberg FDR; rare_enriched: under 5% "
                                         "of units and enriched in one group", _rel(table_file, run_dir))]})
    if not blocks:
        return None
    return _rendered(env, "clusters", "Sub-populations (clusters)", "tables_figures.html", blocks=blocks)
