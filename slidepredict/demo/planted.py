"""Feature-level cohorts with a weak, localised planted signal: what real biomarker prediction looks like.

A positive patient differs from a negative one in a small share of its tiles (the *witness rate*),
and only in "morphology" dimensions. Negative slides carry most of the same total amount of that
morphology spread thinly over all their tiles, so slide means barely differ between the classes:
the signal is in which tiles are unusual, not in the average. Everything else a lazy method could use
is matched between the classes or swamped by noise: each slide gets its own stain offset on the colour
dimensions (larger than the signal's small colour effect) and its own preparation offset on
all dimensions; tissue composition (a mixture of tissue types) is drawn the same way for both
classes; pen marks and blurred bands hit tiles of both classes alike. So the patient mean of
any feature barely separates the classes, while the right tiles do.

The files are real feature files (``docs/formats.md``) that ``build_cohort`` reads, plus
``clini.csv``, ``slide.csv`` and ``witness.npz`` (which tiles carry the signal, per slide).
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from slidepredict.demo.outcomes import outcomes_of_shares

ENCODER = "planted-features"
TILE_UM, TILE_PX = 256.0, 224
CLASSES = ("NEG", "POS")


@dataclass(frozen=True)
class PlantedSpec:
    """One cohort's difficulty; the defaults are the 40-patient, 5%-witness setting of the validity benchmark."""

    n_patients: int = 40
    witness_rate: float = 0.05  # share of a positive patient's tiles that carry the signal
    tiles: tuple[int, int] = (20, 40)  # tissue tiles per slide (uniform)
    second_slide: float = 0.25  # share of patients with two slides
    dim: int = 32
    signal_dims: int = 4  # the "morphology" dimensions the witness tiles move in
    signal_shift: float = 5.0  # length of the witness tiles' move, in units of tile noise
    signal_colour: float = 0.1  # the signal's colour effect, well below the stain variation
    colour_dims: int = 6
    stain_sd: float = 0.8  # per-slide stain offset on the colour dimensions
    prep_sd: float = 0.3  # per-slide preparation offset on every dimension
    tissue_types: int = 4
    mean_cap: float = 0.05  # slide means differ between the classes at most as much as at this witness rate
    label_noise: float = 0.0  # share of negatives with a witness tile, and of positives without one
    artefacts: float = 0.05  # share of tiles with pen ink (colour) or blur (texture), either class
    positive_fraction: float = 0.5
    stain_protocol: float = 0.0  # mean stain offset of the whole cohort (an external site: e.g. 1.0)
    graded: bool = False  # every patient's share drawn from 0 .. 2 x witness_rate; POS above witness_rate
    seed: int = 0
    prefix: str = "PT"

    @property
    def diffuse(self) -> float:
        """Share of the signal's total amount a non-carrying slide spreads thinly over all its tiles.

        Above ``mean_cap`` the witness tiles alone would move a positive slide's mean far enough for
        mean pooling (or one patient-mean feature) to find; negatives carrying the excess keep the
        class difference in slide means at the ``mean_cap`` level whatever the witness rate.
        """
        return max(0.0, 1.0 - self.mean_cap / self.witness_rate) if self.witness_rate > 0 else 0.0

    def graded_shift(self, share: float) -> float:
        """Graded cohorts: the thin shift of all tiles that keeps slide means within ``mean_cap`` of each other.

        A slide whose witness share is ``share`` also moves every tile by ``diffuse`` of what the
        highest share (2 x witness_rate) would add over its own, so slide means change with the
        share only at the ``mean_cap`` rate, as between the classes of a categorical cohort.
        """
        return self.diffuse * self.signal_shift * max(0.0, 2 * self.witness_rate - share)

    def external(self, n_patients: int | None = None) -> PlantedSpec:
        """The same biology at another site: other stain protocol, other patients and IDs."""
        return replace(self, n_patients=n_patients or self.n_patients, stain_protocol=1.0, seed=self.seed + 10_000,
                       prefix=f"{self.prefix}X")


@dataclass
class PlantedCohort:
    """Where a generated cohort lives, and its ground truth."""

    root: Path
    features: Path
    clini_table: Path
    slide_table: Path
    target: str
    labels: dict[str, str]
    witness: dict[str, np.ndarray]  # slide stem -> bool per tile, in file order


class _World:
    """What is shared by every cohort of one benchmark: tissue types and the signal's direction."""

    def __init__(self, spec: PlantedSpec) -> None:
        rng = np.random.default_rng(12345)  # fixed: training and external cohorts share the biology
        d, c, k = spec.dim, spec.colour_dims, spec.signal_dims
        self.type_means = rng.normal(0.0, 1.0, (spec.tissue_types, d))
        self.signal = np.zeros(d)
        morph = rng.choice(np.arange(c, d), size=k, replace=False)
        self.signal[morph] = rng.choice([-1.0, 1.0], size=k) / np.sqrt(k)
        self.signal[:c] = spec.signal_colour / np.sqrt(c)
        self.stain_direction = rng.normal(0.0, 1.0, c) / np.sqrt(c)
        self.blur_dims = rng.choice(np.arange(c, d), size=max(1, d // 8), replace=False)


def _slide(rng: np.random.Generator, spec: PlantedSpec, world: _World, carries: bool,
           share: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tile features (N, D) float32 and which tiles are witnesses.

    A slide that carries the signal moves ``witness_rate`` of its tiles far along the signal
    direction; one that does not moves all its tiles a little, by ``spec.diffuse`` of that total
    amount, so slide means differ only faintly: mostly the distribution over tiles differs.
    A graded cohort gives the slide its patient's ``share`` of witness tiles instead
    (:meth:`PlantedSpec.graded_shift`).
    """
    n = int(rng.integers(spec.tiles[0], spec.tiles[1] + 1))
    mix = rng.dirichlet(np.full(spec.tissue_types, 2.0))
    types = rng.choice(spec.tissue_types, size=n, p=mix)
    x = world.type_means[types] + rng.normal(0.0, 1.0, (n, spec.dim))
    x += rng.normal(0.0, spec.prep_sd, spec.dim)
    stain = rng.normal(spec.stain_protocol, spec.stain_sd) * world.stain_direction + rng.normal(0, spec.stain_sd / 2, spec.colour_dims)
    x[:, : spec.colour_dims] += stain
    witness = np.zeros(n, dtype=bool)
    k = max(1, int(round(spec.witness_rate * n))) if spec.witness_rate > 0 else 0
    if share is not None:
        k = int(round(share * n))
        witness[rng.choice(n, size=k, replace=False)] = True
        x[witness] += spec.signal_shift * world.signal
        x += spec.graded_shift(k / n) * world.signal
    elif carries and k:
        witness[rng.choice(n, size=k, replace=False)] = True
        x[witness] += spec.signal_shift * world.signal
    else:
        x += spec.diffuse * spec.signal_shift * (k / n) * world.signal
    odd = rng.random(n) < spec.artefacts
    pen = odd & (rng.random(n) < 0.5)
    x[pen, : spec.colour_dims] += rng.normal(4.0, 1.0, (int(pen.sum()), 1))
    x[np.ix_(odd & ~pen, world.blur_dims)] -= 3.0
    return x.astype(np.float32), witness


def make_planted_cohort(out_dir: str | os.PathLike[str], spec: PlantedSpec = PlantedSpec(), target: str = "TARGET") -> PlantedCohort:
    """Write a cohort of feature files with a planted signal (deterministic in ``spec.seed``)."""
    from slidepredict.featurefile import slide_h5_path, write_h5_atomic

    root = Path(out_dir)
    features = root / "features"
    features.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    world = _World(spec)
    positive = np.zeros(spec.n_patients, dtype=bool)
    positive[rng.permutation(spec.n_patients)[: int(round(spec.n_patients * spec.positive_fraction))]] = True
    flipped = rng.random(spec.n_patients) < spec.label_noise
    shares = rng.uniform(0.0, 2 * spec.witness_rate, spec.n_patients) if spec.graded else None
    realised: list[float] = []
    cohort = PlantedCohort(root, features, root / "clini.csv", root / "slide.csv", target, {}, {})
    slide_rows = []
    for i in range(spec.n_patients):
        patient = f"{spec.prefix}-{i + 1:04d}"
        if shares is not None:
            positive[i] = shares[i] > spec.witness_rate
        cohort.labels[patient] = CLASSES[int(positive[i])]
        carries = positive[i] != flipped[i]  # label noise: the tissue disagrees with the label
        flags = []
        for s in range(2 if rng.random() < spec.second_slide else 1):
            stem = f"{patient}-{s + 1}"
            feats, witness = _slide(rng, spec, world, bool(carries), None if shares is None else float(shares[i]))
            flags.append(witness)
            coords = np.stack([np.arange(len(feats)) % 8, np.arange(len(feats)) // 8], axis=1).astype(np.int64) * 512
            write_h5_atomic(slide_h5_path(features, stem), {"features": feats, "coords": coords}, {
                "encoder": ENCODER, "encoder_hash": f"planted-{spec.dim}", "tile_size_um": TILE_UM,
                "tile_size_px": TILE_PX, "tile_size_level0": 512, "mpp": 0.5, "stain_norm": "none",
                "slide_width": 4096, "slide_height": 512 * (len(feats) // 8 + 1),
            })
            cohort.witness[stem] = witness
            slide_rows.append([patient, stem])
        realised.append(float(np.concatenate(flags).mean()))
    columns = {target: list(cohort.labels.values())}
    if spec.graded:  # the continuous score and survival follow each patient's realised witness share
        columns.update(outcomes_of_shares(np.array(realised), spec.seed))
    _write_csv(cohort.clini_table, ["PATIENT", *columns], [[p, *row] for p, *row in zip(cohort.labels, *columns.values())])
    _write_csv(cohort.slide_table, ["PATIENT", "FILENAME"], slide_rows)
    np.savez_compressed(root / "witness.npz", **cohort.witness)
    (root / "spec.txt").write_text(repr(asdict(spec)) + "\n")
    return cohort


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
