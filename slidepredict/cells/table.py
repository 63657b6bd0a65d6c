"""An image cohort: a folder of microscopy images and a table with one row per image.

The table names each image (``IMAGE``, its path relative to the folder; the extension may be left
out), its label column(s), and optionally where it came from on a plate: ``PLATE``, ``WELL``,
``COMPOUND``, ``CONCENTRATION``, ``TIMEPOINT``, ``CONTROL`` and ``MPP``. Everything a screen's
statistics rely on is checked here, once, with one line naming the file and the fix: images the
table does not list, rows whose image is missing, wells outside the plate, a control label that
occurs nowhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slidepredict.cells.plate import PlateFormat, parse_well, plate_format
from slidepredict.cohort.tables import read_table, require_columns
from slidepredict.core.errors import CohortError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
IMAGE, PLATE, WELL, COMPOUND, CONCENTRATION, TIMEPOINT, CONTROL, MPP = (
    "IMAGE", "PLATE", "WELL", "COMPOUND", "CONCENTRATION", "TIMEPOINT", "CONTROL", "MPP")
BAG = "BAG"  # bags.csv: the image or PLATE:WELL each row's prediction is about


@dataclass
class ImageCohort:
    """The checked table (one row per image, ``path`` added, wells as 'A01') and where it came from."""

    table: Any  # pandas DataFrame
    image_dir: Path
    source: Path
    plate: PlateFormat

    @property
    def paths(self) -> list[Path]:
        return [Path(p) for p in self.table["path"]]


def _examples(items: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(f"'{i}'" for i in list(items)[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def list_images(image_dir: Path) -> dict[str, Path]:
    """Every image under ``image_dir`` by its path relative to it (POSIX separators)."""
    if not image_dir.is_dir():
        raise CohortError(f"image folder not found: {image_dir}")
    return {p.relative_to(image_dir).as_posix(): p for p in sorted(image_dir.rglob("*"))
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def _match(names: Any, found: dict[str, Path], source: Path, image_dir: Path) -> list[Path]:
    """The file of each table row; the extension may be left out when only one file has that stem."""
    by_stem: dict[str, list[Path]] = {}
    for rel, path in found.items():
        by_stem.setdefault(rel.rsplit(".", 1)[0], []).append(path)
    paths, missing = [], []
    for name in names:
        rel = str(name).replace("\\", "/")
        path = found.get(rel) or (by_stem[rel][0] if len(by_stem.get(rel, [])) == 1 else None)
        if path is None:
            missing.append(rel)
        paths.append(path)
    if missing:
        raise CohortError(f"{len(missing)} row(s) of {source.name} name images not in {image_dir}: "
                          f"{_examples(missing)}; fix the names or remove the rows")
    return paths


def _check_wells(df: Any, plate: PlateFormat, source: Path) -> Any:
    """Wells as 'A01'; a well outside the plate stops the run (it would vanish from per-well statistics)."""
    parsed = [parse_well(w, plate) if isinstance(w, str) else None for w in df[WELL]]
    bad = [(w, img) for w, img, p in zip(df[WELL], df[IMAGE], parsed) if p is None]
    if bad:
        well, image = bad[0]
        raise CohortError(f"'{WELL}' in {source.name} has '{well}' (image '{image}'), not a well of "
                          f"{plate.describe()}; fix the well or set --plate-format")
    return [plate.well_name(r, c) for r, c in parsed]  # type: ignore[misc]


def read_image_table(table: str | os.PathLike[str], image_dir: str | os.PathLike[str], labels: Sequence[str] = (),
                     plate_wells: int = 96, control: str | None = None) -> ImageCohort:
    """Read and check an image table against its folder; ``control`` must occur in ``CONTROL`` (or ``COMPOUND``)."""
    source, image_dir = Path(table), Path(image_dir)
    plate = plate_format(plate_wells)
    df = read_table(source)
    require_columns(df, [IMAGE, *labels], source, "image table")
    if df[IMAGE].isna().any():
        raise CohortError(f"{source.name}: row {int(df[IMAGE].isna().argmax()) + 2} has no {IMAGE}; "
                          "name an image in every row")
    dupes = df[IMAGE][df[IMAGE].duplicated()].tolist()
    if dupes:
        raise CohortError(f"{source.name} lists {_examples(dupes)} more than once; one row per image")
    found = list_images(image_dir)
    if not found:
        raise CohortError(f"{image_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    df["path"] = [str(p) for p in _match(df[IMAGE], found, source, image_dir)]
    unlisted = sorted(rel for rel, p in found.items() if str(p) not in set(df["path"]))
    if unlisted:
        raise CohortError(f"{len(unlisted)} image(s) in {image_dir} have no row in {source.name}: "
                          f"{_examples(unlisted)}; add rows for them or move them out of the folder")
    if WELL in df.columns:
        df[WELL] = _check_wells(df, plate, source)
    if MPP in df.columns:
        import pandas as pd

        mpp = pd.to_numeric(df[MPP], errors="coerce")
        bad = df[IMAGE][(mpp.isna() & df[MPP].notna()) | (mpp <= 0)].tolist()
        if bad:
            raise CohortError(f"'{MPP}' in {source.name} must be a positive number of microns per pixel; "
                              f"image {_examples(bad, 1)} has '{df[MPP][df[IMAGE] == bad[0]].iloc[0]}'")
        df[MPP] = mpp
    if control is not None:
        column = CONTROL if CONTROL in df.columns else COMPOUND if COMPOUND in df.columns else None
        if column is None:
            raise CohortError(f"a control '{control}' was given but {source.name} has neither a {CONTROL} "
                              f"nor a {COMPOUND} column")
        values = sorted(df[column].dropna().astype(str).unique())
        if control not in values:
            raise CohortError(f"control '{control}' occurs nowhere in '{column}' of {source.name} "
                              f"(values: {_examples(values, 6)}); check the spelling")
    return ImageCohort(table=df, image_dir=image_dir, source=source, plate=plate)
