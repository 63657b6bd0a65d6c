"""Apply trained models (one, or an ensemble such as all cross-validation folds) to an external cohort.

Everything that can be wrong with the inputs (checkpoints that do not belong together, features
from another encoder or tile size, tables that do not join) is checked before the output folder
is created, so a refused run leaves nothing behind. Predictions files are written atomically;
with labels, statistics follow in ``<out>/stats``, on the patients no model trained on (the
``in_training`` column marks the others, which statistics leave out).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from slidepredict.core import jsonio
from slidepredict.cohort.build import Cohort, build_cohort
from slidepredict.core.errors import ConfigError, SlidePredictError
from slidepredict.training.checkpoint import CheckpointError
from slidepredict.core.atomic import write_text_atomic
from slidepredict.layout import FOLD_PREFIX, MODEL_FILE, PREDS_FILE
from slidepredict.stats import operating
from slidepredict.stats.operating import OperatingPoint
from slidepredict.stats.predictions import IN_TRAINING
from slidepredict.training.predict import (
    RISK, LoadedModel, load_model, predict_cohort, predictions_frame, risk_frame, values_frame,
)

log = logging.getLogger(__name__)

SUMMARY_FILE = "deploy-summary.json"
STATS_DIR = "stats"
MODEL_COL = "model"
ENSEMBLE = "ensemble"
_OVERLAP_EXAMPLES = 5


class EnsembleError(SlidePredictError):
    """Checkpoints that cannot be averaged: other target, classes or features."""


@dataclass
class Member:
    """One model of the ensemble and the name its predictions folder gets."""

    name: str
    loaded: LoadedModel


@dataclass
class DeployResult:
    """Where deployment wrote its files, and the headline statistic when labels were known."""

    out_dir: Path
    preds: Path  # ensembled patient-preds.csv
    member_preds: dict[str, Path]
    summary: Path
    n_patients: int
    overlap: dict[str, list[str]] = field(default_factory=dict)  # member -> deployment patients it was trained on
    stats_dir: Path | None = None
    headline: dict[str, Any] | None = None
    stats_skipped: str | None = None  # why statistics did not run, when labels were given
    operating_point: OperatingPoint | None = None  # cut-offs carried from the models' training cohort


def expand_models(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Checkpoint files; a crossval folder stands for its ``fold-*/model.ckpt``, a train folder for its ``model.ckpt``."""
    if not paths:
        raise CheckpointError("no model given; pass --model CKPT (or a crossval output folder)")
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            out.append(path)  # a missing file is reported by load_checkpoint with its path
            continue
        folds = sorted(path.glob(f"{FOLD_PREFIX}*/{MODEL_FILE}"), key=lambda p: _fold_number(p.parent.name))
        found = folds or ([path / MODEL_FILE] if (path / MODEL_FILE).is_file() else [])
        if not found:
            raise CheckpointError(
                f"no model checkpoints in folder {path} (expected fold-*/{MODEL_FILE} from `slidepredict crossval` "
                f"or {MODEL_FILE} from `slidepredict train`); pass the .ckpt file itself"
            )
        out += found
    return list(dict.fromkeys(p.resolve() for p in out))


def _fold_number(name: str) -> tuple[int, str]:
    tail = name.rsplit("-", 1)[-1]
    return (int(tail), name) if tail.isdigit() else (-1, name)


def member_names(paths: Sequence[Path]) -> list[str]:
    """Folder-safe unique names: ``fold-0`` for ``cv/fold-0/model.ckpt``, the file stem otherwise."""
    from slidepredict.core.names import safe_name

    names = [safe_name(p.parent.name if p.name == MODEL_FILE else p.stem) for p in paths]
    clash = {n for n in names if names.count(n) > 1 or n == STATS_DIR}
    return [f"{i}-{n}" if n in clash else n for i, n in enumerate(names)]


def check_ensemble(members: Sequence[Member]) -> None:
    """Averaging probabilities is only meaningful for models of one target, class order and feature space."""
    first = members[0]
    ref = first.loaded.meta
    for m in members[1:]:
        meta = m.loaded.meta
        checks = (
            ("targets", ref.target, meta.target, ref.target != meta.target),
            ("classes", ", ".join(ref.categories), ", ".join(meta.categories), ref.categories != meta.categories),
            ("features", ref.spec.describe(), meta.spec.describe(), ref.spec.conflict(meta.spec) is not None),
        )
        clash = next(((what, a, b) for what, a, b, differ in checks if differ), None)
        if clash:
            what, a, b = clash
            raise EnsembleError(
                f"cannot ensemble {first.loaded.path} and {m.loaded.path}: they have different {what} "
                f"({a} vs {b}); deploy them in separate runs"
            )


def load_members(models: Sequence[str | os.PathLike[str]], device: str = "auto") -> list[Member]:
    """Every checkpoint, checked to belong to one ensemble; ``device`` is auto | cpu | cuda."""
    paths = expand_models(models)
    members = [Member(name, load_model(p, device)) for name, p in zip(member_names(paths), paths)]
    check_ensemble(members)
    return members


def load_deploy_cohort(
    members: Sequence[Member], features_dir: str | os.PathLike[str], clini: str | os.PathLike[str] | None,
    slide_table: str | os.PathLike[str] | None, target: str | None, patient_col: str, filename_col: str,
) -> Cohort:
    """The cohort, labelled with the models' classes when a clinical table is given; features checked against every model."""
    meta = members[0].loaded.meta
    label_col = None if clini is None else (target or meta.target)
    time_col, event_col = meta.survival_columns or (None, None)  # survival: the training cohort's column names
    cohort = build_cohort(
        features_dir, slide_table=slide_table, clini_table=clini, target=label_col,
        categories=meta.categories if label_col else None, patient_col=patient_col, filename_col=filename_col,
        kind=meta.target_kind, time_col=time_col, event_col=event_col,
    )
    if label_col is not None:
        cohort = replace(cohort, target=meta.target)  # labels from --target, columns named as the model's target
    example = cohort.slides[cohort.patients[0]][0].path
    for m in members:
        m.loaded.check_features(cohort.spec, example)
    return cohort


def training_overlap(members: Sequence[Member], cohort: Cohort) -> dict[str, list[str]]:
    """Deployment patients each model saw in training: their predictions are not external validation."""
    here = set(cohort.patients)
    overlap = {m.name: sorted(here & m.loaded.meta.patients) for m in members}
    for name, shared in overlap.items():
        if shared:
            more = ", ..." if len(shared) > _OVERLAP_EXAMPLES else ""
            log.warning(
                "%d of %d deployment patients were used to train model %s (%s%s); "
                "their predictions are not an external validation",
                len(shared), len(cohort), name, ", ".join(shared[:_OVERLAP_EXAMPLES]), more,
            )
    return {k: v for k, v in overlap.items() if v}


def ensemble_frame(frames: Sequence[Any], members: Sequence[Member], cohort: Cohort) -> Any:
    """Mean of the members' class probabilities per patient (``pred``: the class with the highest mean), or of
    their predicted values for a continuous target."""
    meta = members[0].loaded.meta
    truth = frames[0][meta.target].tolist() if meta.target in frames[0].columns else None
    if meta.target_kind == "survival":
        risk = np.mean([f[RISK].to_numpy(dtype=np.float64) for f in frames], axis=0)
        df = risk_frame(cohort.patients, risk, meta.target, cohort.labels if f"{meta.target}_time" in frames[0] else None)
    elif meta.target_kind == "continuous":
        values = np.mean([f["pred"].to_numpy(dtype=np.float64) for f in frames], axis=0)
        df = values_frame(cohort.patients, values, meta.target, truth)
    else:
        cols = [f"{meta.target}_{c}" for c in meta.categories]
        probs = np.mean([f[cols].to_numpy(dtype=np.float64) for f in frames], axis=0)
        df = predictions_frame(cohort.patients, probs, list(meta.categories), meta.target, truth)
    df[MODEL_COL] = ENSEMBLE if len(members) > 1 else members[0].name
    seen = set().union(*(m.loaded.meta.patients for m in members))
    df[IN_TRAINING] = [p in seen for p in cohort.patients]
    return df


def _run_stats(preds: Path, out_dir: Path, n_bootstrap: int, seed: int, ci: float,
               positive: str | None, point: OperatingPoint | None) -> tuple[dict[str, Any] | None, str | None]:
    """Statistics of the ensembled predictions; a cohort they cannot be computed for keeps its predictions."""
    from slidepredict.stats import compute_stats
    from slidepredict.stats.predictions import PredictionsError

    carried = None if point is None else {point.target: point.thresholds}
    try:
        result = compute_stats([preds], out_dir, n_bootstrap=n_bootstrap, seed=seed, ci=ci, positive=positive,
                               carried=carried)
    except PredictionsError as exc:
        log.warning("statistics skipped: %s", exc)
        return None, str(exc)
    return result.headline, None


def deploy(
    models: Sequence[str | os.PathLike[str]],
    features_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    clini: str | os.PathLike[str] | None = None,
    slide_table: str | os.PathLike[str] | None = None,
    target: str | None = None,
    patient_col: str = "PATIENT",
    filename_col: str = "FILENAME",
    device: str = "auto",
    n_bootstrap: int = 1000,
    seed: int = 0,
    positive: str | None = None,
    ci: float = 0.95,
) -> DeployResult:
    """Predict every patient with each model and their mean; statistics follow when labels are known.

    ``target`` names the clinical-table column with the true labels (default: the models' target).
    Without a clinical table every patient of the slide table (or every feature file) is predicted.
    ``positive`` is the class statistics headline for a binary target (default: the rarer class).
    """
    from slidepredict.core.batch import check_writable

    members = load_members(models, device)
    categories = members[0].loaded.meta.categories
    if positive is not None and positive not in categories:
        raise ConfigError(f"--positive '{positive}' is not a class of the model (classes: {', '.join(categories)})")
    cohort = load_deploy_cohort(members, features_dir, clini, slide_table, target, patient_col, filename_col)
    overlap = training_overlap(members, cohort)
    point = operating.for_models([m.loaded.path for m in members], members[0].loaded.meta.target)
    if point is None:
        log.info("no operating point stored with the models: figures at 0.5 and in-sample cut-offs only")
    frames = []
    for m in members:
        df = predict_cohort(m.loaded, cohort, description=f"deploying {m.name}")
        df[MODEL_COL] = m.name
        df[IN_TRAINING] = [p in m.loaded.meta.patients for p in cohort.patients]
        frames.append(df)
    ensembled = ensemble_frame(frames, members, cohort)

    out = check_writable(out_dir)
    member_preds = {m.name: write_text_atomic(out / m.name / PREDS_FILE, f.to_csv(index=False)) for m, f in zip(members, frames)}
    preds = write_text_atomic(out / PREDS_FILE, ensembled.to_csv(index=False))
    headline, skipped = None, None
    stats_dir = out / STATS_DIR if cohort.labels is not None else None
    if stats_dir is not None and ensembled[IN_TRAINING].all():
        skipped = (f"every one of the {len(cohort)} deployment patients was used to train the models; "
                   "there is nothing to validate on")
        log.warning("statistics skipped: %s", skipped)
    elif stats_dir is not None:
        headline, skipped = _run_stats(preds, stats_dir, n_bootstrap, seed, ci, positive, point)
    result = DeployResult(
        out_dir=out, preds=preds, member_preds=member_preds, summary=out / SUMMARY_FILE, n_patients=len(cohort),
        overlap=overlap, stats_dir=stats_dir if headline else None, headline=headline, stats_skipped=skipped,
        operating_point=point,
    )
    write_text_atomic(result.summary, jsonio.dumps(_summary(result, members, cohort), indent=1))
    return result


def _summary(result: DeployResult, members: Sequence[Member], cohort: Cohort) -> dict[str, Any]:
    """Provenance of a deployment, for the report and for anyone reading the folder later."""
    return {
        "target": members[0].loaded.meta.target,
        "classes": list(members[0].loaded.meta.categories),
        "models": [{"name": m.name, "path": str(m.loaded.path), "trained_on": len(m.loaded.meta.patients),
                    "slidepredict_version": m.loaded.meta.slidepredict_version} for m in members],
        "ensemble": "mean of class probabilities" if len(members) > 1 else None,
        "labelled": cohort.labels is not None,
        "cohort": cohort.summary(),
        "training_overlap": {k: {"count": len(v), "patients": v} for k, v in result.overlap.items()},
        "preds": str(result.preds),
        "stats": None if result.headline is None else {"dir": str(result.stats_dir), "headline": result.headline},
        "stats_skipped": result.stats_skipped,
        "operating_point": None if result.operating_point is None else asdict(result.operating_point),
    }
