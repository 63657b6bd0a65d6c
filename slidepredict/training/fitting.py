"""Fit one model on a cohort: inner validation split of the given patients, early stopping, best weights saved."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from slidepredict.cohort.build import Cohort
from slidepredict.training.splits import inner_split
from slidepredict.core.errors import CohortError
from slidepredict.training.checkpoint import ModelMeta, save_checkpoint
from slidepredict.training.predict import LoadedModel, load_model
from slidepredict.training.settings import TrainSettings

log = logging.getLogger(__name__)
# What early stopping, the best weights and the choice of start watch, per target type (module.py says why).
MONITORS = {"categorical": "val_brier", "continuous": "val_mse", "survival": "val_discordance"}
MONITOR = MONITORS["categorical"]
# A constant prediction's score: K classes; for a continuous target standardised on the training split, ~1.
# Survival: 1 - Harrell's C on the inner validation split; a constant risk orders no pair, 0.5.
CHANCE = {"val_brier": lambda k: 1.0 - 1.0 / k, "val_loss": np.log, "val_mse": lambda k: 1.0,
          "val_discordance": lambda k: 0.5}


def check_trainable(cohort: Cohort, min_per_class: int = 2, why: str = "for the inner validation split") -> None:
    """A labelled cohort with at least two classes, each with ``min_per_class`` patients."""
    if cohort.labels is None or cohort.target is None:
        raise CohortError("training needs a target column (--target) and a clinical table (--clini)")
    if cohort.kind == "survival":
        events = int(cohort.labels[:, 1].sum())  # type: ignore[index]
        if events < 2 * min_per_class:
            raise CohortError(
                f"survival target '{cohort.target}' has {events} event{'s' if events != 1 else ''} among "
                f"{len(cohort)} patients ({len(cohort) - events} censored); at least {2 * min_per_class} are needed {why}")
        return
    if cohort.kind == "continuous":
        if len(cohort) < 2 * min_per_class or float(np.ptp(cohort.labels)) == 0.0:
            value = f"all {len(cohort)} patients have {cohort.labels[0]:g}" if len(cohort) else "no patients"
            raise CohortError(f"continuous target '{cohort.target}' does not vary ({value}); "
                              f"a regression needs different values {why}")
        return
    counts = cohort.class_counts()
    present = {c: n for c, n in counts.items() if n > 0}
    if len(present) < 2:
        only = ", ".join(f"'{c}' ({n} patients)" for c, n in present.items())
        raise CohortError(
            f"target '{cohort.target}' has a single class after dropping unusable rows: {only}; "
            "a classifier needs at least two classes"
        )
    for cat, n in counts.items():
        if n < min_per_class:
            raise CohortError(
                f"class '{cat}' of target '{cohort.target}' has {n} patient{'s' if n != 1 else ''}; "
                f"at least {min_per_class} are needed {why}"
            )


def target_scale(cohort: Cohort) -> list[float]:
    """[mean, SD] of a continuous target on ``cohort`` (the inner training split); [] for classes."""
    if cohort.kind != "continuous":
        return []
    values = np.asarray(cohort.labels, dtype=np.float64)
    return [float(values.mean()), float(values.std()) or 1.0]


def class_weights(labels: np.ndarray, n_classes: int) -> list[float]:
    """Inverse class frequency, normalised so a balanced cohort gets weights of 1."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    return (len(labels) / (n_classes * np.maximum(counts, 1))).tolist()


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """No accelerator banners or worker-count hints; real warnings still show."""
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    lg = logging.getLogger("lightning.pytorch")
    level = lg.level
    lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=PossibleUserWarning)
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        lg.setLevel(level)


def feature_statistics(cohort: Cohort, seed: int, per_patient: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation of (up to ``per_patient`` sampled) tiles of ``cohort``.

    Called on the inner training split only, so no validation or test patient shapes the model.
    """
    rng = np.random.default_rng(seed)
    total = total_sq = None
    count = 0
    for patient in cohort.patients:
        feats, _ = cohort.load_bag(patient, per_patient, rng)
        x = feats.astype(np.float64)
        total = x.sum(0) if total is None else total + x.sum(0)
        total_sq = (x * x).sum(0) if total_sq is None else total_sq + (x * x).sum(0)
        count += len(x)
    mean = total / max(count, 1)
    var = np.maximum(total_sq / max(count, 1) - mean * mean, 0.0)
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def _run(
    train: Cohort, val: Cohort, config: TrainSettings, hparams: dict[str, Any], stats: tuple[np.ndarray, np.ndarray],
    seed: int, max_steps: int, callbacks: Sequence[Any], root: Path, monitor: str = MONITOR,
) -> tuple[Any, Any, Any]:
    """One training run from initialisation ``seed``: the module, the best-weights keeper and the trainer."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping

    from slidepredict.core.device import resolve_device
    from slidepredict.core.progress import is_quiet
    from slidepredict.training.data import bag_loader
    from slidepredict.training.module import KeepBest, LitMIL

    L.seed_everything(seed, workers=True, verbose=False)
    lit = LitMIL(**hparams)
    lit.head.set_standardisation(*stats)
    keep = KeepBest(monitor)
    trainer = L.Trainer(
        max_steps=max_steps, max_epochs=-1, min_steps=min(config.min_steps, max_steps),
        val_check_interval=min(config.val_every, max_steps), check_val_every_n_epoch=None,
        accelerator=resolve_device(config.device).type, devices=1, deterministic="warn",
        logger=False, enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=not is_quiet(), num_sanity_val_steps=0, log_every_n_steps=config.val_every,
        callbacks=[EarlyStopping(monitor, patience=config.patience, check_on_train_epoch_end=False), keep, *callbacks],
        default_root_dir=str(root),
    )
    loader_args = dict(bag_size=config.bag_size, batch_size=config.batch_size, seed=seed, num_workers=config.workers)
    trainer.fit(lit, bag_loader(train, train=True, **loader_args), bag_loader(val, train=False, **loader_args))
    return lit, keep, trainer


def _pick_start(train: Cohort, val: Cohort, config: TrainSettings, hparams: dict[str, Any],
                stats: tuple[np.ndarray, np.ndarray], root: Path, description: str, monitor: str = MONITOR) -> int:
    """The initialisation seed with the best inner-validation score after ``min_steps`` (at most ``steps``).

    A weak signal is often found from some starts and not others. When none of the ``restarts``
    gets below 90% of the chance level (the score of a constant prediction), as many further
    starts are tried before giving up on luck.
    """
    chance = 0.9 * float(CHANCE[monitor](hparams["n_classes"]))
    trials: list[tuple[float, int]] = []
    for r in range(2 * config.restarts):
        if r == config.restarts and min(trials)[0] < chance:
            break
        seed = config.seed + 1000 * r
        _, trial, _ = _run(train, val, config, hparams, stats, seed, min(config.min_steps, config.steps), (), root,
                           monitor)
        trials.append((trial.best_score, seed))
    best = min(trials)
    log.info("%s: restart %s %s (chance %.3f); continuing from seed %d", description, monitor,
             ", ".join(f"{score:.3f}" for score, _ in trials), chance / 0.9, best[1])
    return best[1]


def fit(
    cohort: Cohort, config: TrainSettings, ckpt_path: str | os.PathLike[str], description: str = "training",
    callbacks: Sequence[Any] = (),
) -> LoadedModel:
    """Train on ``cohort`` (all of it is training data; validation patients are split off inside).

    Training runs for ``config.steps`` optimiser steps at most, validating every ``val_every``
    steps; it stops after ``patience`` validations without a lower inner-validation loss, but
    never before ``min_steps``. The weights of the best validation are kept. With ``restarts``
    above 1, that many initialisations are first trained for ``min_steps`` and the one with the
    lowest inner-validation loss is trained to the end: finding a signal carried by a few tiles
    depends on where training starts, and the inner split (never the test fold) tells which
    start found it. Extra Lightning ``callbacks`` (timing, reporting) run alongside.
    """
    check_trainable(cohort)
    train_ids, val_ids = inner_split(cohort, config.val_fraction, config.seed)
    train, val = cohort.subset(train_ids), cohort.subset(val_ids)
    scale = target_scale(train)
    if scale:  # a continuous target is learnt standardised with the training split's mean and SD
        train, val = (replace(c, labels=(c.labels - scale[0]) / scale[1]) for c in (train, val))  # type: ignore[operator]
    categorical = cohort.kind == "categorical"
    hparams = dict(
        model=config.model, in_dim=cohort.spec.dim, n_classes=len(cohort.categories) if categorical else 1,
        model_hparams=dict(config.model_hparams), lr=config.lr, weight_decay=config.weight_decay,
        feature_noise=config.feature_noise, kind=cohort.kind,
        class_weights=class_weights(train.labels, len(cohort.categories)) if categorical else None,  # type: ignore[arg-type]
    )
    monitor = MONITORS[cohort.kind]
    stats = feature_statistics(train, config.seed)
    root = Path(ckpt_path).parent
    log.info("%s: %s on %d patients (%d for validation), up to %d steps", description, config.model,
             len(train), len(val), config.steps)
    seed = config.seed
    with quiet_lightning():
        if config.restarts > 1 and config.min_steps > 0:
            seed = _pick_start(train, val, config, hparams, stats, root, description, monitor)
        lit, keep, trainer = _run(train, val, config, hparams, stats, seed, config.steps, callbacks, root, monitor)
    if keep.best_state is None:
        raise CohortError(f"{description}: no validation completed; check the cohort and --steps")
    log.info("%s: best %s %.4f at step %d (stopped after %d)", description, monitor, keep.best_score,
             keep.best_step, trainer.global_step)
    meta = ModelMeta(
        model=config.model, model_hparams=dict(lit.head.hparams), target=str(cohort.target),
        categories=list(cohort.categories), features=cohort.spec.to_dict(), train_patients=train_ids,
        val_patients=val_ids, train_config=config.model_dump(mode="json"), best_step=keep.best_step,
        monitor=monitor, best_val_score=keep.best_score, target_kind=cohort.kind, target_scale=scale,
        survival_columns=list(cohort.survival_columns or ()),
        slides={f.path.stem: p for p in [*train_ids, *val_ids] for f in cohort.slides[p]},
    )
    save_checkpoint(ckpt_path, keep.best_state, meta, dict(hparams))
    if cohort.kind == "survival":  # the training risks' mean and SD put every model's risks on one scale
        from slidepredict.training.predict import predict_cohort

        risks = predict_cohort(load_model(ckpt_path), cohort.subset(train_ids), description="training risks")["risk"]  # raw: no scale yet
        meta = replace(meta, target_scale=[float(risks.mean()), float(risks.std()) or 1.0])
        save_checkpoint(ckpt_path, keep.best_state, meta, dict(hparams))
    return load_model(ckpt_path)
