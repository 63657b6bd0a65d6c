"""slidepredict: biomarker prediction from H&E whole-slide images.

Stages live in their own modules (slide, tissue, tiling, features, cohort, mil,
training, deploy, stats, heatmaps, report); importing the package stays cheap so
that the CLI starts fast.
"""

from slidepredict._version import __version__

__all__ = ["__version__"]
