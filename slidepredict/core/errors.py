"""Errors a user can cause. The CLI prints them as one line, without a traceback."""

from __future__ import annotations


class SlidePredictError(Exception):
    """Base class: a problem with the user's input or environment, explained in one line."""


class SlideError(SlidePredictError):
    """A slide cannot be opened or read."""


class MPPError(SlideError):
    """A slide's resolution (microns per pixel) is unknown."""


class NoTissueError(SlidePredictError):
    """No tissue (or no usable tile) was found on a slide; carries what was found, for its QC image."""

    def __init__(self, message: str, tissue: object = None, plan: object = None) -> None:
        super().__init__(message)
        self.tissue = tissue  # tiling.tissue.TissueMask, when the mask was computed
        self.plan = plan  # tiling.grid.TilePlan, when tiles were planned (all dropped)


class FeatureFileError(SlidePredictError):
    """A feature or coordinate file is missing, incomplete or incompatible."""


class ConfigError(SlidePredictError):
    """A configuration file or option is invalid."""


class CohortError(SlidePredictError):
    """Clinical/slide tables and features cannot be combined into a cohort."""
