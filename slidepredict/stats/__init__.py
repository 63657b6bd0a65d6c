"""Statistics of patient-level predictions: AUROC/AUPRC with bootstrap CIs, thresholds, calibration, plots."""

from slidepredict.core.lazy import lazy_exports

_API = {
    **dict.fromkeys(("POOLED", "StatsResult", "compute_stats"), "slidepredict.stats.api"),
    **dict.fromkeys(("Predictions", "PredictionsError", "load_all", "read_predictions"), "slidepredict.stats.predictions"),
    "StatsSettings": "slidepredict.stats.settings",
}
__getattr__ = lazy_exports(__name__, _API)
__all__ = sorted(_API)
