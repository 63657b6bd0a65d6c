"""Clinical and slide tables (CSV, TSV or XLSX), read the same way by every stage.

Tables come from Excel in every locale: a ``.csv`` may be separated by ``;`` (German, French
Excel) or tabs, start with a byte-order mark, end lines with CRLF, or be saved in Windows-1252.
All of that is detected here, once, so no stage has to guess.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slidepredict.core.errors import CohortError

log = logging.getLogger(__name__)
SEPARATORS = ",;\t|"
ENCODINGS = ("utf-8-sig", "cp1252")  # UTF-8 (with or without BOM), then what Windows Excel writes
_DECIMAL_ID = re.compile(r"^(-?\d+)\.0+$")  # 12.0: an integer ID that went through a number format


def _decode(path: Path) -> tuple[str, str]:
    """The file's text and the encoding that read it."""
    raw = path.read_bytes()
    for enc in ENCODINGS:
        try:
            return raw.decode(enc), enc
        except UnicodeDecodeError:
            continue
    raise CohortError(f"{path}: not a text table (neither UTF-8 nor Windows-1252); save it as CSV UTF-8")


def sniff_separator(text: str) -> str:
    """The separator of a delimited text: the candidate splitting the header into most columns (quotes respected)."""
    header = text.splitlines()[0] if text else ""
    counts = {sep: len(next(csv.reader([header], delimiter=sep))) for sep in SEPARATORS}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] > 1 else ","


def _read_text_table(path: Path) -> Any:
    import io

    import pandas as pd

    text, enc = _decode(path)
    if not text.strip():
        raise CohortError(f"{path} is empty; it needs a header row and one row per patient or slide")
    sep = sniff_separator(text)
    if sep != "," or enc != "utf-8-sig":
        log.debug("%s: read with separator %r, encoding %s", path.name, sep, enc)
    rows = csv.reader(io.StringIO(text), delimiter=sep)
    width = len(next(rows))
    for line, row in enumerate(rows, start=2):
        if len(row) > width and any(cell.strip() for cell in row[width:]):
            raise CohortError(f"{path}: row {line} has {len(row)} fields but the header has {width}; "
                              "quote cells that contain the separator")
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, sep=sep, keep_default_na=True, index_col=False)
    except pd.errors.ParserError as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise CohortError(f"{path} is not a consistent table ({reason}); check for unquoted separators in cells") from None


def read_table(path: str | os.PathLike[str]) -> Any:
    """CSV/TSV/TXT or XLSX as strings (so '007' stays '007' and 1 never becomes 1.0); blanks become NaN."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise CohortError(f"table not found: {path}")
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        df = pd.read_excel(path, dtype=str)
    elif path.suffix.lower() in (".csv", ".tsv", ".txt"):
        df = _read_text_table(path)
    else:
        raise CohortError(f"{path}: unsupported table format '{path.suffix}'; use .csv or .xlsx")
    df.columns = [str(c).strip() for c in df.columns]
    if len(df.columns) == 1 and any(s in df.columns[0] for s in ";\t|,"):
        raise CohortError(
            f"{path} was read as a single column named '{df.columns[0]}'; its separator was not recognised "
            "(quotes around the whole header?); save it as CSV with one separator"
        )
    return df.apply(lambda col: col.str.strip()).replace("", np.nan)


def require_columns(df: Any, columns: Sequence[str], path: Path, what: str) -> None:
    """One line naming the missing column, the file and the columns that are there."""
    for col in columns:
        if col not in df.columns:
            raise CohortError(
                f"{what} column '{col}' not in {path.name} (columns: {', '.join(map(str, df.columns))}); "
                "check the spelling or set the column name option"
            )


def integer_ids(ids: Any, path: Path, column: str) -> Any:
    """IDs such as ``12.0`` (an integer that went through a number format) as ``12``, with a warning.

    The same patient is then ``12`` in a slide table and ``12.0`` in a clinical table exported from
    a spreadsheet; leading zeros ('007') and any other ID are left as they are.
    """
    changed = ids.str.fullmatch(_DECIMAL_ID).fillna(False).astype(bool)
    if changed.any():
        example = ids[changed].iloc[0]
        log.warning("%s: %d %s values look like numbers with a decimal part (e.g. '%s'); read as integers ('%s')",
                    path.name, int(changed.sum()), column, example, _DECIMAL_ID.sub(r"\1", example))
        ids = ids.where(~changed, ids.str.replace(_DECIMAL_ID, r"\1", regex=True))
    return ids
