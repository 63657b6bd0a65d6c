"""The `deploy:` section: an external cohort the trained models are validated on."""

from __future__ import annotations

from pathlib import Path

from slidepredict.core.settings import Settings, setting


class DeploySettings(Settings):
    """An external cohort to validate on (the fold ensemble, or the final model, is applied)."""

    slides_dir: Path = setting(
        description="Folder with the external cohort's slides.",
        run_only="`run` tiles and embeds them into external/; by hand: `slidepredict extract SLIDES --out ...`")
    clini_table: Path | None = setting(
        None, "Clinical table of the external cohort (null: predictions only).", flag="--clini")
    slide_table: Path | None = setting(None, "Slide table of the external cohort.", flag="--slides-table")
    mpp: float | None = setting(
        None, "MPP for external slides whose file lacks it.", gt=0,
        run_only="`run` tiles the external slides with it; by hand: `slidepredict extract --mpp`")
