"""Embed every unit (image, tile or cell) of an image cohort into the slide workflow's feature files.

Each image becomes one ``<image>.h5`` (``features`` (N, D), ``coords`` the units' top-left corners
in image pixels, attributes as in docs/formats.md plus the unit kind and crop size), written
atomically and skipped on a rerun with the same settings, exactly like a slide's. A ``bags.csv``
next to them maps each feature file to its bag: the image itself, or its well (``PLATE:WELL``),
so cross-validation, deployment, statistics and heatmaps of the slide workflow run on cells
unchanged, with the image table as the clinical table (``--patient-col BAG``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slidepredict.cells.images import Normalisation, cohort_ranges, load_rgb
from slidepredict.cells.table import BAG, IMAGE, MPP, PLATE, WELL, ImageCohort, read_image_table
from slidepredict.cells.units import UnitSettings, crop, make_units
from slidepredict.core import batch
from slidepredict.core.digest import file_sha256
from slidepredict.core.errors import CohortError
from slidepredict.featurefile import COORDS, TUNED_ATTR, FEATURE_DATASETS, FEATURES, clean_partials, write_h5_atomic, write_once
from slidepredict.features.extraction import Runner
from slidepredict.layout import NORM_FILE
from slidepredict.slide import file_mpp

log = logging.getLogger("slidepredict")
BAGS_FILE = "bags.csv"
BAG_KINDS = ("image", "well")


def feature_stem(image: str) -> str:
    """'plate 1/A01_s2.tif' -> 'plate 1__A01_s2': one flat folder of feature files, one per image."""
    return Path(str(image).replace("\\", "/")).with_suffix("").as_posix().replace("/", "__")


def bag_ids(cohort: ImageCohort, bag: str) -> list[str]:
    """The bag of each image: itself, or its plate and well (an image table without WELL cannot bag by well)."""
    df = cohort.table
    if bag == "image":
        return [str(v) for v in df[IMAGE]]
    if bag != "well":
        raise CohortError(f"unknown bag '{bag}'; --bag is one of {', '.join(BAG_KINDS)}")
    if WELL not in df.columns:
        raise CohortError(f"--bag well needs a {WELL} column in {cohort.source.name}")
    plates = df[PLATE].fillna("").astype(str) if PLATE in df.columns else [""] * len(df)
    return [f"{p}:{w}" if p else str(w) for p, w in zip(plates, df[WELL])]


def embed_image(path: Path, name: str, target: Path, runner: Runner, units: UnitSettings, norm: Normalisation,
                attrs: dict) -> str:
    """One image's units -> one feature file; returns batch.DONE or SKIPPED (complete with the same settings)."""
    px = int(runner.encoder.cfg.input_px)

    def work() -> None:
        rgb = load_rgb(path, norm)
        boxes = make_units(rgb, path, name, units)
        dim = runner.encoder.cfg.dim
        feats = np.zeros((len(boxes), dim), np.float32)
        for start in range(0, len(boxes), runner.params.batch_size):
            part = boxes[start : start + runner.params.batch_size]
            tiles = torch.from_numpy(np.stack([crop(rgb, b, px) for b in part]))
            feats[start : start + len(part)] = runner.forward(tiles).numpy()
        size = int(boxes[0, 2]) if len(boxes) else units.size
        extra = {"n_tiles": len(boxes), "tile_size_level0": size, "slide_width": int(rgb.shape[1]),
                 "slide_height": int(rgb.shape[0]), "precision": runner.precision}
        write_h5_atomic(target, {FEATURES: feats.astype(runner.params.dtype), COORDS: boxes[:, :2]}, {**attrs, **extra})
        if not len(boxes):
            log.warning("%s: no %s found", name, units.kind)

    return write_once(target, attrs, work, FEATURE_DATASETS)


def plate_rows(cohort: ImageCohort, plates: list[str] | None) -> Any:
    """Which table rows to embed: all, or those of the named plates (each must be in PLATE)."""
    df = cohort.table
    if not plates:
        return np.ones(len(df), dtype=bool)
    if PLATE not in df.columns:
        raise CohortError(f"--plate needs a {PLATE} column in {cohort.source.name}")
    known = sorted(df[PLATE].dropna().astype(str).unique())
    missing = [p for p in plates if p not in known]
    if missing:
        raise CohortError(f"plate(s) {', '.join(map(repr, missing))} not in {PLATE} of {cohort.source.name} "
                          f"(plates: {', '.join(known)}); check --plate")
    return df[PLATE].astype(str).isin(plates).to_numpy()


def embed_cohort(cohort: ImageCohort, out_dir: str | os.PathLike[str], runner: Runner, units: UnitSettings,
                 norm: Normalisation = Normalisation(), bag: str = "image", mpp: float | None = None,
                 plates: list[str] | None = None) -> batch.BatchResult:
    """Feature files for the images of ``cohort`` (of ``plates``, or all) in ``out_dir/features``, and ``bags.csv``.

    ``bags.csv`` and the cohort intensity range always cover the whole table, so jobs that embed one
    plate each write identical ones and their feature files form one cohort.
    """
    import pandas as pd

    from slidepredict.core.atomic import write_text_atomic

    bags = bag_ids(cohort, bag)
    selected = plate_rows(cohort, plates)
    out = batch.check_writable(out_dir)
    features = out / "features"
    features.mkdir(exist_ok=True)
    clean_partials(features)
    enc = runner.encoder
    base = {"encoder": enc.name, "encoder_hash": enc.encoder_hash, "tile_size_px": int(enc.cfg.input_px),
            "stain_norm": "none", "unit": units.kind, "unit_size": int(units.size)}
    if enc.tuning is not None:
        base["encoder_tuning"] = (f"fine-tuned for {enc.tuning['target']} on {len(enc.tuned_on)} images "
                                  f"({enc.weights.path})")
    df = cohort.table
    if norm.scope == "cohort" and norm.ranges is None:
        norm = replace(norm, ranges=cohort_ranges([Path(p) for p in df["path"]], norm))
    base["normalisation"] = norm.describe()
    if norm.ranges:
        flags = " ".join(f"--intensity-range {v:g}" for pair in norm.ranges for v in pair)
        log.info("Intensity range %s (in %s; `%s` embeds other plates alike)",
                 ", ".join(f"{lo:g}-{hi:g}" for lo, hi in norm.ranges), NORM_FILE, flags)
    stems = [feature_stem(v) for v in df[IMAGE]]
    mpps = df[MPP] if MPP in df.columns else [np.nan] * len(df)
    per_image = {Path(p): (str(name), stem, float(m) if np.isfinite(m) else mpp)
                 for p, name, stem, m, keep in zip(df["path"], df[IMAGE], stems, mpps, selected) if keep}
    has_table_mpp = {Path(p): bool(np.isfinite(m)) for p, m in zip(df["path"], mpps)}

    def work(path: Path) -> str:
        name, stem, image_mpp = per_image[path]
        if not has_table_mpp[path]:  # the table's MPP first, then the file's own, then --mpp
            recorded = file_mpp(path)
            image_mpp = recorded[0] if recorded else image_mpp
        attrs = dict(base)
        if enc.tuning is not None:  # crossval refuses to test on units the encoder was tuned on
            attrs[TUNED_ATTR] = file_sha256(path) in enc.tuned_on
        if image_mpp:  # without a resolution, positions stay in pixels and tile sizes unrecorded
            attrs["mpp"] = float(image_mpp)
            if units.kind != "image":  # a whole image's size varies from image to image
                attrs["tile_size_um"] = float(units.size * image_mpp)
        return embed_image(path, name, features / f"{stem}.h5", runner, units, norm, attrs)

    result = batch.run_per_slide(list(per_image), work, f"Embedding {units.kind} units with {enc.name}")
    table = df.drop(columns=["path"]).assign(**{BAG: bags, "FILENAME": stems})
    write_text_atomic(out / BAGS_FILE, table.to_csv(index=False))
    write_text_atomic(out / NORM_FILE, json.dumps({"normalisation": base["normalisation"], "scope": norm.scope,
                                                   "ranges": [list(r) for r in norm.ranges or []]}, indent=2))
    return result


def recorded_ranges(path: Path) -> list[float]:
    """LO HI per channel, flat, from another cohort's normalisation.json (it must hold a fixed range)."""
    try:
        ranges = json.loads(Path(path).read_text())["ranges"]
        flat = [float(v) for pair in ranges for v in pair]
    except FileNotFoundError:
        raise CohortError(f"{path}: not found; --intensity-from takes the {NORM_FILE} a `slidepredict cells` "
                          "run wrote") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise CohortError(f"{path}: not a {NORM_FILE} of `slidepredict cells` (no 'ranges')") from None
    if not flat:
        raise CohortError(f"{path}: its cohort was normalised per image (no fixed range to reuse); embed it "
                          "with --intensity-scope cohort or give --intensity-range")
    return flat


def unit_settings(cells: Any) -> UnitSettings:
    """The `cells:` settings' units, with a centroid table read and checked (settings object in)."""
    from slidepredict.cohort.tables import read_table, require_columns

    centroids = None
    if cells.centroids is not None:
        centroids = read_table(cells.centroids)
        require_columns(centroids, [IMAGE, "X", "Y"], Path(cells.centroids), "centroid table")
        centroids = centroids.assign(X=centroids["X"].astype(float), Y=centroids["Y"].astype(float))
    return UnitSettings(kind=cells.unit, size=cells.unit_size, min_area=cells.min_area, masks=cells.masks,
                        centroids=centroids)


def normalisation(cells: Any) -> Normalisation:
    """The `cells:` settings' intensity normalisation (a fixed range given, or read from another run)."""
    ranges = recorded_ranges(cells.intensity_from) if cells.intensity_from is not None else cells.intensity_range
    return Normalisation(low=cells.low, high=cells.high, channels=tuple(cells.channels) if cells.channels else None,
                         scope=cells.scope, ranges=None if ranges is None else tuple(zip(ranges[::2], ranges[1::2])))


def embed_images(cells: Any, extract: Any, out: str | os.PathLike[str]) -> batch.BatchResult:
    """`slidepredict cells`: check the table, load the encoder once, embed every image (settings objects in)."""
    from slidepredict.features._builder import load_encoder

    cohort = read_image_table(cells.table, cells.images, plate_wells=cells.plate_format)
    plate_rows(cohort, cells.plates)  # a wrong --plate fails before the encoder loads
    units, norm = unit_settings(cells), normalisation(cells)
    runner = Runner(load_encoder(extract.encoder, extract.weights), extract)  # fails before any output
    runner.check_tile_size(int(runner.encoder.cfg.input_px))
    return embed_cohort(cohort, out, runner, units, norm, bag=cells.bag, mpp=cells.mpp, plates=cells.plates)
