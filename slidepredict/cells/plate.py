"""Microplate formats and well names: ``B07``, ``b7`` and ``AF48`` parsed once, checked against the plate.

A screen's plate map names wells; a typo (``Q05`` on a 96-well plate) or a plate format set wrong
would silently drop wells from the per-well statistics and the plate heatmaps, so wells are
validated when the table is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from slidepredict.core.errors import CohortError

_WELL = re.compile(r"^([A-Za-z]{1,2})0*(\d{1,2})$")


@dataclass(frozen=True)
class PlateFormat:
    """Rows (letters A, B, ... AF) by columns (1, 2, ...)."""

    wells: int
    rows: int
    cols: int

    def row_name(self, r: int) -> str:
        """0 -> 'A', 25 -> 'Z', 26 -> 'AA' (1536-well plates have 32 rows)."""
        return chr(65 + r) if r < 26 else "A" + chr(65 + r - 26)

    def well_name(self, r: int, c: int) -> str:
        """Zero-based row and column -> 'A01'."""
        return f"{self.row_name(r)}{c + 1:02d}"

    def describe(self) -> str:
        return f"a {self.wells}-well plate (rows A-{self.row_name(self.rows - 1)}, columns 1-{self.cols})"


PLATES = {n: PlateFormat(n, r, c) for n, r, c in ((6, 2, 3), (12, 3, 4), (24, 4, 6), (48, 6, 8), (96, 8, 12),
                                                   (384, 16, 24), (1536, 32, 48))}


def plate_format(wells: int) -> PlateFormat:
    """The format with that many wells; one line listing the known ones otherwise."""
    if wells not in PLATES:
        raise CohortError(f"unknown plate format {wells}; --plate-format is one of {', '.join(map(str, PLATES))}")
    return PLATES[wells]


def parse_well(name: str, plate: PlateFormat) -> tuple[int, int] | None:
    """'B07' -> (1, 6), zero-based; None when the name is not a well of ``plate``."""
    m = _WELL.match(str(name).strip())
    if not m:
        return None
    letters, col = m.group(1).upper(), int(m.group(2))
    row = ord(letters[0]) - 65 if len(letters) == 1 else 26 + ord(letters[1]) - 65 if letters[0] == "A" else -1
    if not (0 <= row < plate.rows and 1 <= col <= plate.cols):
        return None
    return row, col - 1
