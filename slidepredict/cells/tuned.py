"""`slidepredict finetune`: an encoder tuned per target on an image cohort, or cross-validated with one per fold.

An encoder tuned on every image has seen the labels of every image, so a cross-validation of its
features would test on images it learned from. With ``crossval`` each fold therefore gets its own
encoder, tuned on that fold's training images only, the whole cohort is embedded with it, and the
fold's MIL head is trained and tested by the ordinary :func:`~slidepredict.training.folds.crossval`
(which refuses test images an encoder was tuned on). The same folds are run with the frozen
encoder as the reference a user needs to judge whether tuning helped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from slidepredict.cells.extract import BAG, BAGS_FILE, bag_ids, embed_cohort, normalisation, unit_settings
from slidepredict.cells.finetune import RECORD_FILE, finetune_encoder, resolve_norm
from slidepredict.cells.table import IMAGE, ImageCohort, read_image_table
from slidepredict.cohort.build import Cohort
from slidepredict.core.atomic import write_text_atomic
from slidepredict.core.errors import CohortError, ConfigError
from slidepredict.core.settings import for_target
from slidepredict.featurefile import FeatureSpec
from slidepredict.layout import COHORT_FILE, PREDS_FILE, SPLITS_FILE, fold_dir

log = logging.getLogger("slidepredict")
FROZEN = "frozen"  # <out>/<target>/frozen: the same folds with the untuned encoder
FROZEN_CELLS = "frozen-cells"  # <out>/frozen-cells: the cohort embedded by the untuned encoder (shared by targets)


def kept_epoch(rec: dict[str, Any]) -> str:
    """Which epoch of a tuning record was kept, and its validation accuracy, in words."""
    rows = {r["epoch"]: r for r in rec["history"]}
    best, epochs = rec["best_epoch"], max(rows)
    val = (f", validation accuracy {rows[best]['val_accuracy']:.2f} on {rec['val_units']} units"
           if "val_accuracy" in rows[best] else "")
    if best == 0:
        return f"no epoch of {epochs} beat the untuned encoder with a fitted head on validation: untuned weights kept{val}"
    return f"epoch {best} of {epochs} kept{val}"


def bag_cohort(table: Any, target: str, group: str | None) -> Cohort:
    """Bags with one label each (and a group), before any embedding: what inner splits are drawn from."""
    if target not in table.columns:
        raise CohortError(f"the image table has no column '{target}' to fine-tune for (columns: "
                          f"{', '.join(map(str, table.columns))}); check --target")
    df = table.dropna(subset=[target]).assign(**{target: lambda d: d[target].astype(str)})
    per_bag = df.groupby(BAG)[target].agg(lambda v: sorted(set(v)))
    mixed = [(b, v) for b, v in per_bag.items() if len(v) > 1]
    if mixed:
        raise CohortError(f"bag '{mixed[0][0]}' holds images labelled {', '.join(mixed[0][1])} for '{target}'; every "
                          "image of a well needs one label (or use --bag image)")
    patients = sorted(per_bag.index)
    categories = sorted({v[0] for v in per_bag})
    groups = None
    if group is not None:
        if group not in df.columns:
            raise CohortError(f"--group {group}: no such column in the image table")
        first = df.groupby(BAG)[group].first()
        groups = np.array([str(first[b]) for b in patients])
    return Cohort(patients=patients, slides={p: () for p in patients}, spec=FeatureSpec("none", "none", 0),
                  target=target, categories=categories, kind="categorical", group_name=group, groups=groups,
                  labels=np.array([categories.index(per_bag[b][0]) for b in patients], np.int64))


def _images_of(table: Any, bags: list[str]) -> list[str]:
    return [str(i) for i in table.loc[table[BAG].isin(bags), IMAGE]]


def _tune(ctx: dict[str, Any], target: str, bags: Cohort, out_dir: Path) -> Path:
    """Tune on the images of ``bags``, choosing the epoch on an inner validation split of them (grouped alike)."""
    from slidepredict.training.splits import inner_split

    training = ctx["training"]
    train, val = inner_split(bags, training.val_fraction, training.seed)
    return finetune_encoder(ctx["images"], target, _images_of(ctx["table"], train), _images_of(ctx["table"], val),
                            ctx["units"], ctx["norm"], ctx["finetune"], ctx["extract"], training.seed, out_dir)


def _embed(ctx: dict[str, Any], weights: Path | str | None, out: Path) -> Path:
    """The whole cohort embedded by the encoder with ``weights`` into ``out`` (its bags.csv returned)."""
    from slidepredict.features._builder import load_encoder
    from slidepredict.features.extraction import Runner

    cells, extract = ctx["cells"], ctx["extract"]
    runner = Runner(load_encoder(extract.encoder, weights), extract)
    embed_cohort(ctx["images"], out, runner, ctx["units"], ctx["norm"], bag=cells.bag, mpp=cells.mpp)
    return out / BAGS_FILE


def _cohort(ctx: dict[str, Any], cells_dir: Path, target: str) -> Cohort:
    from slidepredict.cohort.build import build_cohort
    from slidepredict.cohort.groups import with_groups

    bags = cells_dir / BAGS_FILE
    cohort = build_cohort(cells_dir / "features", bags, bags, target=target, patient_col=BAG, filename_col="FILENAME")
    return with_groups(cohort, ctx["training"].group, bags, BAG)


def _crossval(ctx: dict[str, Any], target: str, out: Path, frozen_dir: Path) -> str:
    """Frozen reference first (it fixes the folds), then one tuned encoder per fold, then the pooled summary."""
    from slidepredict.training.folds import baseline_note, crossval, pooled_auroc

    training = ctx["training"]
    if not (frozen_dir / BAGS_FILE).is_file():
        _embed(ctx, ctx["extract"].weights, frozen_dir)
    frozen = _cohort(ctx, frozen_dir, target)
    root = out / target
    pooling = training.baseline_pooling()
    reference = crossval(frozen, root / FROZEN, training, folds=training.folds, baseline=pooling,
                         leave_group_out=training.leave_group_out, cutoff=training.cutoff)
    record = (root / FROZEN / SPLITS_FILE).read_text()
    if (root / SPLITS_FILE).is_file() and (root / SPLITS_FILE).read_text() != record:
        raise ConfigError(f"{root / SPLITS_FILE} differs from the frozen reference's folds; use a new --out folder")
    write_text_atomic(root / SPLITS_FILE, record)
    splits = json.loads(record)["splits"]
    for k, split in enumerate(splits):
        folder = fold_dir(root, k)
        if (folder / PREDS_FILE).is_file():
            continue
        log.info("%s: fold %d of %d, fine-tuning on its %d training bags", target, k + 1, len(splits), len(split["train"]))
        weights = _tune(ctx, target, frozen.subset(split["train"]), folder / "encoder")
        _embed(ctx, weights, folder / "cells")  # every image: the fold's test images by an encoder that never saw them
        crossval(_cohort(ctx, folder / "cells", target), root, training, folds=len(splits), fold=k,
                 leave_group_out=training.leave_group_out)
    tuned = _cohort(ctx, fold_dir(root, len(splits) - 1) / "cells", target)
    pooled = crossval(tuned, root, training, folds=len(splits), target_sensitivity=training.target_sensitivity,
                      leave_group_out=training.leave_group_out, cutoff=training.cutoff)
    score = pooled_auroc(pooled, target, tuned.categories)
    ref = pooled_auroc(reference, target, frozen.categories)
    note = baseline_note(root / FROZEN, pooling, target).replace("same folds", "frozen features, same folds")
    return (f"{target}: {len(splits)}-fold cross-validation of {len(tuned)} bags, encoder fine-tuned in each fold on "
            f"its training images ({tuned_folds(root)}): pooled AUROC {score:.3f}; frozen encoder, same folds: "
            f"{ref:.3f}{note} -> {root / PREDS_FILE}")


def tuned_folds(root: Path) -> str:
    """In how many folds a tuned epoch beat the untuned encoder on validation: where none did, that fold's
    "tuned" encoder is the untuned one, and the comparison with the frozen encoder says less."""
    kept = [json.loads(p.read_text())["best_epoch"] > 0 for p in sorted(root.glob(f"fold-*/encoder/{RECORD_FILE}"))]
    return f"tuned weights kept in {sum(kept)} of {len(kept)} folds, the untuned ones where no epoch beat them"


def frozen_note(root: Path, target: str) -> str:
    """``"; encoder fine-tuned per fold, the frozen encoder on the same folds: AUROC 0.91"`` (or "" without one)."""
    from slidepredict.training.folds import pooled_auroc

    preds = root / FROZEN / PREDS_FILE
    if not preds.is_file():
        return ""
    import pandas as pd

    categories = json.loads((root / FROZEN / COHORT_FILE).read_text())["categories"]
    score = pooled_auroc(pd.read_csv(preds, dtype={"PATIENT": str, target: str}), target, categories)
    return f"; encoder fine-tuned per fold ({tuned_folds(root)}), the frozen encoder on the same folds: AUROC {score:.2f}"


def run_finetune(cells: Any, extract: Any, finetune: Any, training: Any, out: str | Path, crossval: bool = False,
                 frozen_cells: Path | None = None) -> Iterator[str]:
    """Per target: one encoder tuned on every image (for the final model), or a cross-validation tuning per fold.

    ``frozen_cells`` is where the untuned encoder's embedding of the cohort is (or goes; default
    ``<out>/frozen-cells``): `slidepredict run` passes the one its extract stage made.
    """
    images: ImageCohort = read_image_table(cells.table, cells.images, labels=training.targets,
                                           plate_wells=cells.plate_format)
    table = images.table.assign(**{BAG: bag_ids(images, cells.bag)})
    ctx = {"cells": cells, "extract": extract, "finetune": finetune, "training": training, "images": images,
           "table": table, "units": unit_settings(cells), "norm": resolve_norm(images, normalisation(cells))}
    out = Path(out)
    for target in dict.fromkeys(training.targets):
        kind = for_target(training.target_type, target) or "categorical"
        if kind != "categorical":
            raise ConfigError(f"fine-tuning learns classes; target '{target}' is {kind}")
        bags = bag_cohort(table, target, training.group)
        if crossval:
            yield _crossval(ctx, target, out, frozen_cells or out / FROZEN_CELLS)
            continue
        weights = _tune(ctx, target, bags, out / target)
        rec = json.loads((out / target / RECORD_FILE).read_text())
        yield (f"{target}: {extract.encoder} fine-tuned ({', '.join(rec['blocks'])}) on {rec['units']} units of "
               f"{rec['n_train_images']} images, {kept_epoch(rec)} -> "
               f"{weights}; embed with `slidepredict cells --encoder {extract.encoder} --weights {weights}` "
               f"(its features are not for cross-validation: use --crossval)")
