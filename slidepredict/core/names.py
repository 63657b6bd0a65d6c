"""One rule for turning labels (targets, classes, folds, models) into file names."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(label: object, fallback: str = "unnamed") -> str:
    """``MSI-H`` and ``CD8+`` stay, ``wt/mut`` -> ``wt_mut``; never empty, never a leading dot (no ``..``)."""
    return _UNSAFE.sub("_", str(label)).strip("._") or fallback
