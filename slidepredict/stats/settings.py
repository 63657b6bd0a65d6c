"""The `stats:` section: bootstrap confidence intervals and the class a binary target reports."""

from __future__ import annotations

from slidepredict.core.settings import Settings, setting


class StatsSettings(Settings):
    """Metrics with patient-level bootstrap confidence intervals."""

    n_bootstrap: int = setting(1000, "Patient-level bootstrap resamples for the CIs (0: no CIs).", ge=0)
    seed: int = setting(0, "Bootstrap seed, for reproducible CIs.")
    ci: float = setting(0.95, "Confidence level of the intervals.", gt=0, lt=1)
    positive: dict[str, str] = setting(
        default_factory=dict, per_target=True,
        description="Class to report and plot per binary target, e.g. {MSI: MSI-H} (default: the rarer class).")
    by: str | None = setting(
        None, "Column of the predictions to break the figures down by instead of the folds, e.g. SITE "
        "(crossval writes the `training.group` column); groups lacking a class are only pooled.")
