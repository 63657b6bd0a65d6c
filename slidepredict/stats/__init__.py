"""Statistics of patient-level predictions: AUROC/AUPRC with bootstrap CIs, thresholds, calibration, plots."""

from slidepredict.stats.api import POOLED, StatsResult, compute_stats
from slidepredict.stats.tables import Predictions, PredictionsError, load_all, read_predictions

__all__ = [
    "POOLED",
    "Predictions",
    "PredictionsError",
    "StatsResult",
    "compute_stats",
    "load_all",
    "read_predictions",
]
