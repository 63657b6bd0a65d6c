"""Synthetic microscopy images of cells with known classes and positions (tests, benchmarks, the cells demo).

Each image is a field of view of one well: nuclei drawn as blurred, textured ellipses on a dark
background with camera noise, written as 16-bit single-channel TIFF (fluorescence) or 8-bit PNG.
A class sets the nuclei's shape (``round``: small and round; ``elongated``: larger, stretched;
``fragmented``: several small bright pieces, as in apoptosis; ``giant``: large and round, the rare
sub-population a share of the treated wells' cells belong to), so a classifier must read morphology,
not brightness: every image is scaled to the same intensity range. The table of the cohort
(``images.csv``) has IMAGE, LABEL, PLATE, WELL, MPP and CONTROL; the true centres and which cells
are rare are returned.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

SHAPES = ("round", "elongated", "fragmented", "giant")
# semi-axis ranges (px) of a shape's ellipse; the others are small and round
AXES = {"elongated": ((9.0, 11.0), (4.0, 5.0)), "giant": ((10.5, 12.0), (10.5, 12.0))}


@dataclass(frozen=True)
class CellImageSpec:
    """One synthetic image cohort."""

    wells: tuple[str, ...] = ("A01", "A02", "B01", "B02")
    images_per_well: int = 2
    size: int = 256  # pixels, square
    cells: tuple[int, int] = (12, 20)  # per image
    classes: tuple[str, ...] = ("round", "elongated")  # by well, round-robin
    mpp: float = 0.65
    bit_depth: int = 16
    seed: int = 0
    treated: tuple[str, ...] = ()  # wells whose CONTROL is 'treated' (the others: 'DMSO')
    rare_shape: str = "giant"  # a rare sub-population of the treated wells
    rare_share: float = 0.0  # share of a treated well's cells that are rare
    purity: float = 1.0  # share of a class's cells drawn with its shape; the rest look alive (round)


@dataclass
class CellImages:
    root: Path
    table: Path
    centres: dict[str, np.ndarray] = field(default_factory=dict)  # IMAGE -> (N, 2) x, y
    rare: dict[str, np.ndarray] = field(default_factory=dict)  # IMAGE -> (N,) bool


def _nucleus(canvas: np.ndarray, rng: np.random.Generator, x: float, y: float, shape: str) -> None:
    """Add one nucleus (intensity ~1) around (x, y)."""
    h, w = canvas.shape
    yy, xx = np.mgrid[0:h, 0:w]
    pieces = [(x, y, 1.0)]
    if shape == "fragmented":
        pieces = [(x + rng.normal(0, 4), y + rng.normal(0, 4), 0.45) for _ in range(int(rng.integers(3, 6)))]
    for px, py, scale in pieces:
        (a_lo, a_hi), (b_lo, b_hi) = AXES.get(shape, ((5.0, 6.5), (5.0, 6.5)))
        a, b = scale * rng.uniform(a_lo, a_hi), scale * rng.uniform(b_lo, b_hi)
        t = rng.uniform(0, np.pi)
        u = ((xx - px) * np.cos(t) + (yy - py) * np.sin(t)) / a
        v = (-(xx - px) * np.sin(t) + (yy - py) * np.cos(t)) / b
        r2 = u**2 + v**2
        inside = r2 < 1.5
        canvas[inside] += rng.uniform(0.8, 1.0) / (1.0 + np.exp(8.0 * (r2[inside] - 1.0)))


def _place(rng: np.random.Generator, n: int, size: int, gap: float = 30.0) -> np.ndarray:
    """Up to ``n`` centres at least ``gap`` px apart and 16 px inside the border."""
    centres: list[tuple[float, float]] = []
    for _ in range(n * 50):
        c = rng.uniform(16, size - 16, 2)
        if all((c[0] - x) ** 2 + (c[1] - y) ** 2 >= gap**2 for x, y in centres):
            centres.append((float(c[0]), float(c[1])))
            if len(centres) == n:
                break
    return np.array(centres, dtype=np.float64).reshape(-1, 2)


def draw_field(path: Path, rng: np.random.Generator, size: int, n_cells: tuple[int, int],
               shape_of: Callable[[int], list[str]], bit_depth: int = 16) -> np.ndarray:
    """Draw one field of view whose cells take the shapes ``shape_of(n)`` gives; returns the centres."""
    from PIL import Image

    centres = _place(rng, int(rng.integers(n_cells[0], n_cells[1] + 1)), size)
    canvas = np.zeros((size, size))
    for (x, y), shape in zip(centres, shape_of(len(centres))):
        _nucleus(canvas, rng, x, y, shape)
    canvas = canvas + rng.normal(0.05, 0.02, canvas.shape)
    canvas = np.clip(canvas / 1.6, 0, 1)  # a fixed scale, as a camera has: no field is stretched to its own maximum
    if bit_depth == 16:
        import tifffile

        tifffile.imwrite(path, (200 + canvas * 3000).astype(np.uint16))
    else:
        Image.fromarray((canvas * 255).astype(np.uint8)).save(path)
    return centres


def write_table(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def make_cell_images(out_dir: str | os.PathLike[str], spec: CellImageSpec = CellImageSpec()) -> CellImages:
    """Write the images and ``images.csv``; deterministic in ``spec.seed``."""
    root = Path(out_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    made = CellImages(root, root / "images.csv")
    rows = []
    for w, well in enumerate(spec.wells):
        label = spec.classes[w % len(spec.classes)]
        share = spec.rare_share if well in spec.treated else 0.0
        for i in range(spec.images_per_well):
            name = f"{well}_s{i + 1}.tif" if spec.bit_depth == 16 else f"{well}_s{i + 1}.png"
            drawn: list[np.ndarray] = []

            def shapes(n: int) -> list[str]:
                drawn.append(rng.random(n) < share)
                own = rng.random(n) < spec.purity if spec.purity < 1 else np.ones(n, bool)  # old cohorts unchanged
                return [spec.rare_shape if odd else label if mine else "round" for odd, mine in zip(drawn[0], own)]

            made.centres[name] = draw_field(root / "images" / name, rng, spec.size, spec.cells, shapes, spec.bit_depth)
            made.rare[name] = drawn[0]
            rows.append([name, label, "P1", well, f"{spec.mpp:g}", "treated" if well in spec.treated else "DMSO"])
    write_table(made.table, ["IMAGE", "LABEL", "PLATE", "WELL", "MPP", "CONTROL"], rows)
    return made
