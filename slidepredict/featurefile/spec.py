"""What must match between the feature files of one cohort, and between features and a model.

A :class:`FeatureSpec` comes from a feature file's attributes (docs/formats.md) or from a
checkpoint's ``features`` dict. A setting that is not recorded is *unknown* and matches any
value: CLAM, TRIDENT and STAMP files record none of them, and checkpoints written before
``stain_norm`` joined the spec lack it. Refusing those would lock out every external cohort
and every older model, while the dimension check still catches most wrong encoders; a
setting recorded on both sides with two values is always an error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from slidepredict.core.errors import CohortError, FeatureFileError

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
TUNED_ATTR = "encoder_tuned_on_image"  # written (True/False) by an encoder fine-tuned on an image cohort

# Compared settings, in the order their mismatches are reported (the most telling first).
COMPARED = ("encoder", "encoder_hash", "dim", "tile_size_um", "tile_size_px", "stain_norm")

_COHORT_FIX = "re-extract all slides with one encoder and tile size"
_COHORT_MESSAGES = {
    "encoder": "feature files of two encoders in one cohort: '{a}' ({pa}) and '{b}' ({pb}); {fix}",
    "encoder_hash": "feature files of encoder '{spec.encoder}' with different weights in one cohort: "
    "hash {a} ({pa}) and {b} ({pb}); {fix}",
    "dim": "feature files of different sizes in one cohort: {a} ({pa}) and {b} ({pb}); {fix}",
    "tile_size_um": "feature files of different tile sizes in one cohort: {a} um ({pa}) and {b} um ({pb}); {fix}",
}
_MODEL_ENCODER = (
    "features in {source} come from encoder '{have.encoder}' (hash {have.encoder_hash}) but model {model} "
    "was trained on '{want.encoder}' (hash {want.encoder_hash}); {fix}"
)
_MODEL_MESSAGES = {
    "encoder": _MODEL_ENCODER,
    "encoder_hash": _MODEL_ENCODER,
    "dim": "features in {source} have {a} dimensions but model {model} expects {b} (encoder '{want.encoder}'); {fix}",
    "tile_size_um": "features in {source} use {a} um tiles but model {model} was trained on {b} um tiles; {fix}",
}
# Settings whose mismatch messages name the attribute itself and the extraction flag that sets it.
_FLAGS = {"tile_size_px": "--tile-px", "stain_norm": "--stain-norm"}
_COHORT_NAMED = "features in {pa} use {name}={a!r} but {pb} use {b!r}; re-extract one of them with the same {flag}"
_MODEL_NAMED = (
    "features in {source} use {name}={a!r} but model {model} was trained on {name}={b!r}; "
    "re-extract them with {flag} {b}"
)


def is_known(value: Any) -> bool:
    """False for a setting a file or checkpoint does not record (see the module docstring)."""
    return value is not None and value != UNKNOWN


def _same(a: Any, b: Any) -> bool:
    if not (is_known(a) and is_known(b)):
        return True
    if isinstance(a, float) or isinstance(b, float):
        return bool(np.isclose(float(a), float(b)))
    return bool(a == b)


@dataclass(frozen=True)
class FeatureSpec:
    """What must match between feature files of one cohort, and between a cohort and a checkpoint."""

    encoder: str
    encoder_hash: str
    dim: int
    tile_size_um: float | None = None
    tile_size_px: int | None = None
    stain_norm: str | None = None

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], dim: int) -> FeatureSpec:
        """From a feature file's attributes; missing ones (files of other tools) stay unknown."""
        um, px, stain = attrs.get("tile_size_um"), attrs.get("tile_size_px"), attrs.get("stain_norm")
        return cls(
            encoder=str(attrs.get("encoder", UNKNOWN)),
            encoder_hash=str(attrs.get("encoder_hash", UNKNOWN)),
            dim=int(dim),
            tile_size_um=None if um is None else float(um),
            tile_size_px=None if px is None else int(px),
            stain_norm=None if stain is None else str(stain),
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> FeatureSpec:
        """The spec of one feature file, read without loading its features."""
        from slidepredict.featurefile.read import probe_feature_file

        return probe_feature_file(Path(path)).spec

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FeatureSpec:
        """From a checkpoint's ``features``: keys an older version did not write stay unknown, newer ones are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """Plain types, for checkpoints, JSON summaries and the report."""
        return asdict(self)

    def describe(self) -> str:
        """One line for messages that show a whole spec."""
        um, px = (v if is_known(v) else UNKNOWN for v in (self.tile_size_um, self.tile_size_px))
        stain = f"stain_norm={self.stain_norm!r}" if is_known(self.stain_norm) else "stain_norm unknown"
        return f"'{self.encoder}' (hash {self.encoder_hash}, {self.dim} dims, {um} um / {px} px tiles, {stain})"

    def conflict(self, other: FeatureSpec) -> str | None:
        """The first setting both specs record with different values, or None when they are compatible."""
        return next((n for n in COMPARED if not _same(getattr(self, n), getattr(other, n))), None)


@dataclass(frozen=True)
class SlideFeatures:
    """A feature file found for a slide, with what probing it told us."""

    path: Path
    n_tiles: int
    spec: FeatureSpec
    um_per_px: float | None = None  # microns per level-0 pixel of its coords (None: the file does not say)
    tuned_on: bool = False  # its encoder was fine-tuned on this very image (never a held-out test bag)


def microns_per_px(attrs: Mapping[str, Any]) -> float | None:
    """Microns per level-0 pixel from a feature file's attributes: ``mpp``, else tile microns / tile level-0 px."""
    def known(name: str) -> float | None:
        v = attrs.get(name)
        try:
            f = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        return f if np.isfinite(f) and f > 0 else None

    if (mpp := known("mpp")) is not None:
        return mpp
    um, px = known("tile_size_um"), known("tile_size_level0")
    return um / px if um is not None and px is not None else None


def _first_of_each(files: Sequence[SlideFeatures], name: str) -> dict[Any, SlideFeatures]:
    """Known value of one setting -> the first file that has it."""
    seen: dict[Any, SlideFeatures] = {}
    for s in files:
        value = getattr(s.spec, name)
        if is_known(value):
            seen.setdefault(value, s)
    return seen


def _cohort_message(name: str, a: Any, fa: SlideFeatures, b: Any, fb: SlideFeatures) -> str:
    if name in _FLAGS:
        return _COHORT_NAMED.format(pa=fa.path, pb=fb.path, name=name, a=a, b=b, flag=_FLAGS[name])
    return _COHORT_MESSAGES[name].format(a=a, pa=fa.path, b=b, pb=fb.path, spec=fa.spec, fix=_COHORT_FIX)


def common_spec(files: Sequence[SlideFeatures]) -> FeatureSpec:
    """The one feature setting of a cohort; two known values of any compared setting are an error.

    Each setting of the result is the first known value among the files, so a cohort that
    mixes our files with other tools' still records (and checkpoints keep) what is known.
    """
    seen = {name: _first_of_each(files, name) for name in COMPARED}
    for name, values in seen.items():
        if len(values) > 1:
            (a, fa), (b, fb) = list(values.items())[:2]
            raise CohortError(_cohort_message(name, a, fa, b, fb))
    spec = FeatureSpec(**{name: next(iter(values), getattr(files[0].spec, name)) for name, values in seen.items()})
    n_known = sum(is_known(s.spec.encoder) for s in files)
    if n_known and n_known < len(files):
        log.warning("%d of %d feature files record no encoder; assuming they match '%s'",
                    len(files) - n_known, len(files), spec.encoder)
    return spec


def check_model_features(
    have: FeatureSpec, want: FeatureSpec, source: str | os.PathLike[str], model: str | os.PathLike[str]
) -> None:
    """Refuse features (``have``, from ``source``) made differently from those ``model`` was trained on (``want``)."""
    name = have.conflict(want)
    if name is not None:
        a, b = getattr(have, name), getattr(want, name)
        if name in _FLAGS:
            message = _MODEL_NAMED.format(source=source, name=name, a=a, b=b, model=model, flag=_FLAGS[name])
        else:
            fix = f"extract features with encoder '{want.encoder}' at {want.tile_size_um} um tiles"
            message = _MODEL_MESSAGES[name].format(source=source, a=a, b=b, model=model, have=have, want=want, fix=fix)
        raise FeatureFileError(message)
    if have.encoder != want.encoder:  # one side unknown, else conflict() would have named it
        log.warning("cannot verify the encoder of %s (no encoder recorded); model expects '%s'", source, want.encoder)
