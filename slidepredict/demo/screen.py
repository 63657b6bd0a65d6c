"""A synthetic drug screen with a known answer: reference wells to train on, a plate to screen.

Reference plate ``R1`` (folder ``reference/``, table ``reference.csv`` with ``MODE``): wells of
living cells (small round nuclei) and of apoptotic cells (fragmented nuclei). Screen plate ``S1``
(folder ``screen/``, table ``screen.csv`` with COMPOUND, CONCENTRATION and CONTROL): DMSO control
wells, a compound ``HIT`` whose share of apoptotic cells follows a four-parameter logistic in its
concentration with a planted EC50, and a compound ``INERT`` at the same doses that does nothing
to the modes; in every treated well a small share of cells (2.5%, 2% of all cells) has giant nuclei, a rare
population for the sub-population analysis to find.
A well-level classifier trained on the reference wells and run over the screen must find HIT, not
INERT, and an EC50 near the planted one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slidepredict.demo.cells import draw_field, write_table

ALIVE, APOPTOTIC, RARE = "round", "fragmented", "giant"  # nuclear shapes: two modes and a rare population


@dataclass(frozen=True)
class ScreenSpec:
    """One synthetic screen."""

    ec50: float = 0.8  # uM, planted for HIT
    hill: float = 1.5
    bottom: float = 0.05  # apoptotic share without drug (and in DMSO / INERT wells)
    top: float = 0.85  # apoptotic share at saturating HIT
    doses: tuple[float, ...] = tuple(float(0.01 * 3.0**i) for i in range(8))  # 0.01 .. 21.9 uM
    replicates: int = 2  # wells per compound and dose
    controls: int = 8  # DMSO wells
    reference_wells: int = 8  # per mode
    images_per_well: int = 2
    cells: tuple[int, int] = (26, 32)
    size: int = 256
    mpp: float = 0.65
    rare_share: float = 0.025  # share of a treated well's cells in a rare population (giant nuclei)
    seed: int = 0


@dataclass
class Screen:
    root: Path
    reference: Path  # table of the reference plate
    screen: Path  # table of the screen plate
    share: dict[str, float] = field(default_factory=dict)  # screen well -> planted apoptotic share


def apoptotic_share(dose: float, s: ScreenSpec) -> float:
    """The planted 4PL: share of apoptotic cells at ``dose`` uM of HIT."""
    return s.bottom + (s.top - s.bottom) / (1.0 + (s.ec50 / dose) ** s.hill) if dose > 0 else s.bottom


def _wells(n: int, skip: int = 0) -> list[str]:
    return [f"{'ABCDEFGH'[i // 12]}{i % 12 + 1:02d}" for i in range(skip, skip + n)]


def make_screen(out_dir: str | os.PathLike[str], spec: ScreenSpec = ScreenSpec()) -> Screen:
    """Write both plates' images and tables; deterministic in ``spec.seed``."""
    root = Path(out_dir)
    rng = np.random.default_rng(spec.seed)
    made = Screen(root, root / "reference.csv", root / "screen.csv")

    def shapes(n: int, share: float, rare: float) -> list[str]:
        drawn = rng.random(n)
        return [RARE if d < rare else APOPTOTIC if d < rare + share * (1 - rare) else ALIVE for d in drawn]

    def images(folder: str, well: str, share: float, rare: float = 0.0) -> list[str]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        names = []
        for i in range(spec.images_per_well):
            name = f"{well}_s{i + 1}.tif"
            draw_field(root / folder / name, rng, spec.size, spec.cells, lambda n: shapes(n, share, rare))
            names.append(name)
        return names

    rows = []
    for w, well in enumerate(_wells(2 * spec.reference_wells)):
        mode = "apoptotic" if w % 2 else "alive"
        rows += [[name, mode, "R1", well, f"{spec.mpp:g}"] for name in images("reference", well, float(w % 2))]
    write_table(made.reference, ["IMAGE", "MODE", "PLATE", "WELL", "MPP"], rows)
    layout = [("DMSO", 0.0)] * spec.controls + [(c, d) for c in ("HIT", "INERT") for d in spec.doses
                                                for _ in range(spec.replicates)]
    rows = []
    for well, (compound, dose) in zip(_wells(len(layout)), layout):
        made.share[well] = apoptotic_share(dose, spec) if compound == "HIT" else spec.bottom
        control = "DMSO" if compound == "DMSO" else "treated"
        rows += [[name, "S1", well, compound, f"{dose:g}", control, f"{spec.mpp:g}"]
                 for name in images("screen", well, made.share[well], spec.rare_share if control == "treated" else 0.0)]
    write_table(made.screen, ["IMAGE", "PLATE", "WELL", "COMPOUND", "CONCENTRATION", "CONTROL", "MPP"], rows)
    return made
