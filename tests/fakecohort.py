"""Generated feature cohorts with a known answer, for training, deployment, stats and heatmap tests.

Positive patients (every category but the first) carry a planted signal in a spatially
clustered minority of their tiles; everything else is noise. ``truth`` says which tiles were
planted, so tests can check both patient predictions and per-tile attention.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from slidepredict.featurefile import write_h5_atomic

TILE_PX = 224  # level-0 pixels per tile in generated coords


@dataclass
class CohortTruth:
    labels: dict[str, str]  # patient -> category
    planted: dict[str, np.ndarray] = field(default_factory=dict)  # slide stem -> bool per tile
    slides: dict[str, list[str]] = field(default_factory=dict)  # patient -> slide stems
    directions: np.ndarray | None = None  # (n_categories, dim) signal per category (row 0 unused)


def make_feature_cohort(
    tmp_path: Path,
    n_patients: int = 40,
    n_tiles: int = 64,
    dim: int = 32,
    seed: int = 0,
    signal_fraction: float = 0.15,
    *,
    categories: tuple[str, ...] = ("neg", "pos"),
    target: str = "TARGET",
    strength: float = 3.0,
    shift: float = 0.0,
    slides_per_patient: int = 1,
    encoder: str | None = "fake-encoder",
    encoder_hash: str = "fakehash0",
    nested: bool = False,
    xlsx: bool = False,
    dtype: str = "float32",
) -> tuple[Path, Path, Path, CohortTruth]:
    """Write ``n_patients`` patients' h5 feature files plus clinical and slide tables.

    Labels cycle through ``categories`` so every class is equally frequent. ``shift`` adds a
    constant offset to every feature (a stain/scanner shift for external-cohort tests);
    ``encoder=None`` writes STAMP/CLAM-style files without attributes.
    """
    rng = np.random.default_rng(seed)
    directions = np.random.default_rng(12345).normal(size=(len(categories), dim))  # same across seeds
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    features_dir = tmp_path / "features"
    truth = CohortTruth(labels={}, directions=directions)
    slide_rows = []
    side = int(np.ceil(np.sqrt(n_tiles)))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n_tiles]
    for i in range(n_patients):
        patient = f"PAT-{seed:02d}-{i:04d}"
        label = i % len(categories)
        truth.labels[patient] = categories[label]
        for s in range(slides_per_patient):
            stem = f"{patient}-S{s}"
            feats = rng.normal(size=(n_tiles, dim)) + shift
            planted = np.zeros(n_tiles, dtype=bool)
            if label > 0:  # a compact region: the tiles nearest a random centre
                centre = grid[rng.integers(n_tiles)]
                order = np.argsort(((grid - centre) ** 2).sum(1), kind="stable")
                planted[order[: max(1, round(signal_fraction * n_tiles))]] = True
                feats[planted] += strength * directions[label]
            truth.planted[stem] = planted
            truth.slides.setdefault(patient, []).append(stem)
            folder = features_dir / f"batch{i % 2}" if nested else features_dir
            attrs = {} if encoder is None else {
                "encoder": encoder, "encoder_hash": encoder_hash, "tile_size_um": 256.0,
                "tile_size_px": 224, "tile_size_level0": TILE_PX, "mpp": 0.5,
                "slide_width": side * TILE_PX, "slide_height": side * TILE_PX, "stain_norm": "none",
            }
            key = "features" if encoder is not None else "feats"
            write_h5_atomic(folder / f"{stem}.h5", {key: feats.astype(dtype), "coords": (grid * TILE_PX).astype(np.int64)}, attrs)
            slide_rows.append({"PATIENT": patient, "FILENAME": f"{stem}.svs"})
    clini = pd.DataFrame({"PATIENT": list(truth.labels), target: list(truth.labels.values())})
    slides = pd.DataFrame(slide_rows)
    suffix = ".xlsx" if xlsx else ".csv"
    clini_path, slide_path = tmp_path / f"clini{suffix}", tmp_path / f"slides{suffix}"
    for df, path in ((clini, clini_path), (slides, slide_path)):
        df.to_excel(path, index=False) if xlsx else df.to_csv(path, index=False)
    return clini_path, slide_path, features_dir, truth


def set_attrs(paths: Iterable[Path], **attrs: object) -> None:
    """Change attributes of written feature files in place; None removes one (files of other tools lack it)."""
    for path in paths:
        with h5py.File(path, "r+") as f:
            for key, value in attrs.items():
                if value is None:
                    f.attrs.pop(key, None)
                else:
                    f.attrs[key] = value
