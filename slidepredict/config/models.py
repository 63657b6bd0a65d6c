"""The run configuration: each stage's settings model is one section of :class:`RunConfig`.

The section classes live with their stages (``slidepredict/<stage>/settings.py``) and are the
stages' parameter objects; field descriptions double as the comments of ``slidepredict init``'s
template, the docs' config reference and the flags' help, so these can never drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import model_validator

from slidepredict.cells.settings import CellSettings, ClusterSettings, FinetuneSettings, ScreenSettings
from slidepredict.cohort.settings import CohortSettings
from slidepredict.core.settings import Settings, setting
from slidepredict.deploy.settings import DeploySettings
from slidepredict.features.settings import ExtractSettings
from slidepredict.heatmaps.settings import HeatmapSettings
from slidepredict.report.settings import ReportSettings
from slidepredict.stats.settings import StatsSettings
from slidepredict.tiling.settings import TilingSettings
from slidepredict.training.settings import TrainingSettings


class RunConfig(Settings):
    """A whole workflow: the stages present are run in order by `slidepredict run`."""

    output_dir: Path = setting(
        description="Everything the run writes goes here (resolved config and log too).",
        run_only="each command's --out defaults to its folder under output_dir")
    cohort: CohortSettings
    tiling: TilingSettings = setting(default_factory=TilingSettings)
    extract: ExtractSettings = setting(default_factory=ExtractSettings)
    training: TrainingSettings | None = None
    deploy: DeploySettings | None = None
    stats: StatsSettings = setting(default_factory=StatsSettings)
    heatmaps: HeatmapSettings = setting(default_factory=HeatmapSettings)
    report: ReportSettings = setting(default_factory=ReportSettings)
    cells: CellSettings | None = None
    screen: ScreenSettings | None = None
    clusters: ClusterSettings | None = None
    finetune: FinetuneSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _image_cohort_needs_no_slides(cls, data: Any) -> Any:
        """A config with a `cells:` image cohort need not repeat its images as a slide cohort."""
        if isinstance(data, dict) and isinstance(data.get("cells"), dict) and "cohort" not in data:
            images = data["cells"].get("images")
            if images is not None:
                data = {**data, "cohort": {"slides_dir": images}}
        return data
