"""JSON that every parser accepts: no bare NaN or Infinity anywhere in what slidepredict writes.

Python's ``json`` writes ``NaN`` by default, which is not JSON: QuPath 0.4 refuses a GeoJSON with
one, as do strict parsers (JavaScript, Java's Gson in strict mode, jq). Non-finite numbers become
``null`` (a missing value) and writing then uses ``allow_nan=False``, so a slip raises instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def finite(obj: Any) -> Any:
    """``obj`` with every NaN/inf float (Python or numpy) replaced by None, numpy scalars as Python numbers."""
    if isinstance(obj, Mapping):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return finite(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`finite` ``(obj)`` with ``allow_nan=False``."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
