"""Per-tile scores of one slide: attention rank-normalised within the slide, and per-class tile scores.

Raw attention sums to one over a bag, so its scale depends on how many tiles a slide has;
ranks make slides comparable and give overlays a fixed 0..1 colour scale. The class score
of a tile is the head's verdict on a bag made of that tile alone (softmax of its tile logits),
which for the attention head decomposes the patient logit exactly (see ``mil.attention``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from slidepredict.core.errors import FeatureFileError
from slidepredict.featurefile import FeatureBag, positions_um
from slidepredict.featurefile.spec import microns_per_px
from slidepredict.heatmaps.models import Drawer
from slidepredict.training.predict import display_scale, predict_bag

ATTENTION = "attention"
COORD_COLUMNS = ("x", "y", "width", "height")


@dataclass
class TileScores:
    """Everything drawn or exported for one slide; coordinates are level-0 pixels."""

    coords: np.ndarray  # (N, 2) top-left x, y
    size0: int  # tile edge in level-0 px
    attention: np.ndarray  # (N,) rank-normalised to (0, 1]
    attention_raw: np.ndarray  # (N,) as the head returned it (sums to 1)
    class_scores: np.ndarray  # (N, C) per-tile class probabilities
    categories: list[str]
    target: str
    probs: np.ndarray  # (C,) the slide's prediction, or its patient's when the slide table is known
    patient: str | None = None
    drawer: Drawer | None = None  # the model(s) behind every number here, and whether the patient was held out
    value_range: tuple[float, float] | None = None  # continuous/survival: the colour scale; None: 0..1
    measure: str = "value"  # what a one-output model predicts: a value, or a survival risk

    @property
    def prediction(self) -> str:
        if self.value_range is not None:
            return f"{float(self.probs[0]):.3g}"
        return self.categories[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.probs))

    @property
    def stated(self) -> str:
        """``MSI = MSI-H (p = 0.83)`` or ``SCORE = 4.2``: the prediction as a title states it."""
        if self.value_range is not None:
            return f"{self.target} {self.measure} = {self.prediction}" if self.measure == "risk" else \
                f"{self.target} = {self.prediction}"
        return f"{self.target} = {self.prediction} (p = {self.confidence:.2f})"

    def maps(self) -> dict[str, np.ndarray]:
        """Name -> per-tile value: one entry per class (0..1; a continuous target's value in its units, one entry),
        plus attention (the overlay registry)."""
        out = {c: self.class_scores[:, j] for j, c in enumerate(self.categories)}
        out[ATTENTION] = self.attention
        return out

    def columns(self) -> dict[str, np.ndarray]:
        """The ``tile-scores.csv`` columns (docs/formats.md), in order; GeoJSON measurements reuse the names."""
        n = len(self.coords)
        cols: dict[str, np.ndarray] = {
            "x": self.coords[:, 0], "y": self.coords[:, 1],
            "width": np.full(n, self.size0, dtype=np.int64), "height": np.full(n, self.size0, dtype=np.int64),
            ATTENTION: self.attention, "attention_raw": self.attention_raw,
        }
        cols.update({c: self.class_scores[:, j] for j, c in enumerate(self.categories)})
        return cols

    def frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.columns())


def rank_normalise(values: np.ndarray) -> np.ndarray:
    """Average ranks scaled to (0, 1]: the top tile is 1 whatever the bag size; ties share a rank."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    return rankdata(values, method="average") / values.size


def tile_size_level0(attrs: dict[str, Any], slide_mpp: float, source: str) -> int:
    """Tile edge in level-0 px from the feature file, falling back to microns / slide MPP."""
    if attrs.get("tile_size_level0") not in (None, "none"):
        return int(round(float(attrs["tile_size_level0"])))
    um = attrs.get("tile_size_um")
    if um not in (None, "none") and math.isfinite(float(um)):
        return int(round(float(um) / slide_mpp))
    raise FeatureFileError(
        f"{source}: no tile size recorded (attrs tile_size_level0 or tile_size_um); "
        "re-extract the features with `slidepredict extract`"
    )


def check_same_slide(attrs: dict[str, Any], dimensions: tuple[int, int], source: str, slide_name: str) -> None:
    """Refuse features made from another slide of the same name (wrong folder), which would misplace every tile."""
    w, h = attrs.get("slide_width"), attrs.get("slide_height")
    if w in (None, "none") or h in (None, "none"):
        return
    if (int(w), int(h)) != tuple(dimensions):
        raise FeatureFileError(
            f"{source} was extracted from a {int(w)} x {int(h)} px slide but {slide_name} is "
            f"{dimensions[0]} x {dimensions[1]} px; point --features at this slide's feature files"
        )


def score_slide(drawer: Drawer, bag: FeatureBag, slide_mpp: float) -> TileScores:
    """Run the drawing model(s) on one slide's complete bag and keep the per-tile parts.

    With several models (a fold ensemble on an external slide) probabilities, raw attention and
    tile scores are each the mean over the models, as `deploy` averages patient probabilities.
    """
    source = str(bag.path)
    if bag.features is None or bag.coords is None:
        raise FeatureFileError(f"{source}: has no tile coordinates, so tiles cannot be placed on the slide")
    if len(bag.coords) == 0:
        raise FeatureFileError(f"{source}: holds no tiles; re-run `slidepredict extract` for this slide")
    for loaded in drawer.models:
        loaded.check_features(bag.spec, source)
    where = positions_um(bag.coords, microns_per_px(bag.attrs))
    parts = [predict_bag(loaded, bag.features, where) for loaded in drawer.models]
    probs, att, tiles = (np.mean([np.asarray(p[i], dtype=np.float64) for p in parts], axis=0) for i in range(3))
    first = drawer.models[0]
    kind = first.meta.target_kind
    continuous = kind != "categorical"  # one output: a value in the target's units, or a survival risk
    return TileScores(
        coords=np.asarray(bag.coords, dtype=np.int64), size0=tile_size_level0(bag.attrs, slide_mpp, source),
        attention=rank_normalise(att), attention_raw=att, class_scores=tiles,
        categories=[first.meta.target] if continuous else first.categories, target=first.meta.target, probs=probs,
        drawer=drawer, value_range=value_range(display_scale(first.meta)) if continuous else None,
        measure="risk" if kind == "survival" else "value",
    )


def value_range(scale: list[float]) -> tuple[float, float]:
    """The colour scale of a continuous target's (or a survival risk's) maps: the training mean +- 2 SD, the same on
    every slide."""
    mean, sd = scale
    return mean - 2 * sd, mean + 2 * sd
