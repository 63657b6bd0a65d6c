"""One self-contained HTML page per run: cohort, metrics, plots, predictions, heatmaps.

Sections are registered functions that look for their own files in the run folder and
return nothing when those files are absent, so the same report works for a full
``run``, a lone ``crossval`` folder or a ``deploy`` folder.
"""

from slidepredict.core.lazy import lazy_exports

_API = {
    **dict.fromkeys(("REPORT_NAME", "build_report"), "slidepredict.report._render"),
    **dict.fromkeys(("SECTIONS", "register_section"), "slidepredict.report._sections"),
    "ReportSettings": "slidepredict.report.settings",
}
__getattr__ = lazy_exports(__name__, _API)
__all__ = sorted(_API)
