"""The `cohort:` section: the training cohort's slides and tables, and how their columns are named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slidepredict.core.errors import ConfigError
from slidepredict.core.settings import Settings, setting


class CohortSettings(Settings):
    """Where the slides and the tables of the training cohort are."""

    slides_dir: Path = setting(description="Folder with the slides (searched recursively).", flag="--slides")
    clini_table: Path | None = setting(
        None, "Clinical table (CSV/XLSX): PATIENT plus one column per target.", flag="--clini")
    slide_table: Path | None = setting(
        None, "Slide table (CSV/XLSX): PATIENT, FILENAME (with or without extension).", flag="--slides-table")
    patient_col: str = setting("PATIENT", "Patient ID column in both tables.")
    filename_col: str = setting("FILENAME", "Slide file name column in the slide table.")
    mpp: float | None = setting(None, "Microns per pixel for slides whose file lacks it (null: read from the file).", gt=0)
    mpp_override: bool = setting(
        False, "Use `mpp` for every slide, replacing the resolution its file records (each file's own is logged).")

    def mpp_choice(self) -> Any:
        """What ``open_slide`` gets: the file's own MPP, `mpp` as a fallback, or `mpp` as an override."""
        from slidepredict.slide import MPPOverride

        if self.mpp_override and self.mpp is None:
            raise ConfigError("--mpp-override needs --mpp VALUE (the resolution to use for every slide)")
        return MPPOverride(self.mpp) if self.mpp_override else self.mpp
