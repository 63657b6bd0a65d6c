"""Assemble the sections into one page, written atomically next to the run's outputs."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from slidepredict._version import __version__
from slidepredict.core.atomic import write_text_atomic
from slidepredict.core.errors import SlidePredictError
from slidepredict.report._sections import SECTIONS, Section
from slidepredict.report import _cells  # noqa: F401  (registers the screen and clusters sections)

from slidepredict.layout import REPORT_FILE as REPORT_NAME
_TEMPLATES = Path(__file__).with_name("templates")


def _env():  # type: ignore[no-untyped-def]
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(
        loader=FileSystemLoader(str(_TEMPLATES)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build_report(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, title: str | None = None) -> Path:
    """Render ``report.html`` for a run folder and return its path.

    Fails in one line when the folder holds nothing a report could show, rather than
    writing an empty page.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise SlidePredictError(f"run folder not found: {run}")
    env = _env()
    sections: list[Section] = [s for fn in SECTIONS.values() if (s := fn(run, env)) is not None]
    if not sections:
        raise SlidePredictError(
            f"{run}: nothing to report (no metrics.csv, patient-preds.csv, heatmaps, cohort.json, hits.csv or "
            "clusters.csv found); run crossval/deploy/stats/heatmaps (or screen/clusters) first"
        )
    html = env.get_template("page.html").render(
        title=title or f"slidepredict report: {run.resolve().name}",
        sections=sections,
        version=__version__,
        created=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    )
    return write_text_atomic(Path(out) if out else run / REPORT_NAME, html)
