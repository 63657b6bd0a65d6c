"""Cohorts: clinical and slide tables joined to feature files, one bag of tiles per patient.

Names are imported on first use, so reading ``CohortSettings`` stays cheap.
"""

from slidepredict.core.lazy import lazy_exports

_API = {
    **dict.fromkeys(("Cohort", "DropReport", "build_cohort"), "slidepredict.cohort.build"),
    **dict.fromkeys(("read_table", "require_columns"), "slidepredict.cohort.tables"),
    "CohortSettings": "slidepredict.cohort.settings",
}
__getattr__ = lazy_exports(__name__, _API)
__all__ = sorted(_API)
