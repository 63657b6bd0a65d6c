"""Clinical and slide tables (CSV or XLSX), read the same way by every stage."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slidepredict.core.errors import CohortError


def read_table(path: str | os.PathLike[str]) -> Any:
    """CSV or XLSX as strings (so '007' stays '007' and 1 never becomes 1.0); blanks become NaN."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise CohortError(f"table not found: {path}")
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        df = pd.read_excel(path, dtype=str)
    elif path.suffix.lower() in (".csv", ".tsv", ".txt"):
        df = pd.read_csv(path, dtype=str, sep=None if path.suffix.lower() != ".csv" else ",", engine="python")
    else:
        raise CohortError(f"{path}: unsupported table format '{path.suffix}'; use .csv or .xlsx")
    df.columns = [str(c).strip() for c in df.columns]
    return df.apply(lambda col: col.str.strip()).replace("", np.nan)


def require_columns(df: Any, columns: Sequence[str], path: Path, what: str) -> None:
    """One line naming the missing column, the file and the columns that are there."""
    for col in columns:
        if col not in df.columns:
            raise CohortError(
                f"{what} column '{col}' not in {path.name} (columns: {', '.join(map(str, df.columns))}); "
                "check the spelling or set the column name option"
            )
