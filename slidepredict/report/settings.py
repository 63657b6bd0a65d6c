"""The `report:` section."""

from __future__ import annotations

from slidepredict.core.settings import Settings, setting


class ReportSettings(Settings):
    """The HTML report."""

    enabled: bool = setting(True, "Write report.html into the output folder.",
                            run_only="`slidepredict report` always writes the page")
    title: str | None = setting(None, "Page title (default: the output folder's name).")
