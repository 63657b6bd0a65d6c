"""One self-contained HTML page per run: cohort, metrics, plots, predictions, heatmaps.

Sections are registered functions that look for their own files in the run folder and
return nothing when those files are absent, so the same report works for a full
``run``, a lone ``crossval`` folder or a ``deploy`` folder.
"""

from slidepredict.report._render import REPORT_NAME, build_report
from slidepredict.report._sections import SECTIONS, register_section

__all__ = ["REPORT_NAME", "SECTIONS", "build_report", "register_section"]
