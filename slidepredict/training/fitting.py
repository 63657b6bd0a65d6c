"""Fit one model on a cohort: inner validation split of the given patients, early stopping, best weights saved."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slidepredict.cohort.build import Cohort
from slidepredict.core.errors import CohortError
from slidepredict.training.checkpoint import ModelMeta, save_checkpoint
from slidepredict.training.predict import LoadedModel, load_model
from slidepredict.training.settings import TrainSettings

log = logging.getLogger(__name__)

def check_trainable(cohort: Cohort, min_per_class: int = 2, why: str = "for the inner validation split") -> None:
    """A labelled cohort with at least two classes, each with ``min_per_class`` patients."""
    if cohort.labels is None or cohort.target is None:
        raise CohortError("training needs a target column (--target) and a clinical table (--clini)")
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


def inner_split(cohort: Cohort, val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Stratified training/validation split of the training patients (the test fold never takes part)."""
    from sklearn.model_selection import train_test_split

    n_val = max(len(cohort.categories), int(round(val_fraction * len(cohort))))
    train, val = train_test_split(
        cohort.patients, test_size=n_val, stratify=cohort.labels, random_state=seed
    )
    return sorted(train), sorted(val)


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


def fit(
    cohort: Cohort, config: TrainSettings, ckpt_path: str | os.PathLike[str], description: str = "training",
    callbacks: Sequence[Any] = (),
) -> LoadedModel:
    """Train on ``cohort`` (all of it is training data; validation patients are split off inside).

    Extra Lightning ``callbacks`` (timing, reporting) run alongside early stopping.
    """
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping

    from slidepredict.core.device import resolve_device
    from slidepredict.core.progress import is_quiet
    from slidepredict.training.data import bag_loader
    from slidepredict.training.module import KeepBest, LitMIL

    check_trainable(cohort)
    train_ids, val_ids = inner_split(cohort, config.val_fraction, config.seed)
    train, val = cohort.subset(train_ids), cohort.subset(val_ids)
    hparams = dict(
        model=config.model, in_dim=cohort.spec.dim, n_classes=len(cohort.categories),
        model_hparams=dict(config.model_hparams), lr=config.lr, weight_decay=config.weight_decay,
        class_weights=class_weights(train.labels, len(cohort.categories)),  # type: ignore[arg-type]
    )
    with quiet_lightning():
        L.seed_everything(config.seed, workers=True, verbose=False)
        lit = LitMIL(**hparams)
        keep = KeepBest("val_loss")
        trainer = L.Trainer(
            max_epochs=config.epochs, accelerator=resolve_device(config.device).type, devices=1, deterministic="warn",
            logger=False, enable_checkpointing=False, enable_model_summary=False,
            enable_progress_bar=not is_quiet(), num_sanity_val_steps=0, log_every_n_steps=1,
            callbacks=[EarlyStopping("val_loss", patience=config.patience), keep, *callbacks],
            default_root_dir=str(Path(ckpt_path).parent),
        )
        loader_args = dict(bag_size=config.bag_size, batch_size=config.batch_size, seed=config.seed, num_workers=config.workers)
        log.info("%s: %s on %d patients (%d for validation), up to %d epochs", description, config.model,
                 len(train), len(val), config.epochs)
        trainer.fit(lit, bag_loader(train, train=True, **loader_args), bag_loader(val, train=False, **loader_args))
    if keep.best_state is None:
        raise CohortError(f"{description}: no validation epoch completed; check the cohort and --epochs")
    log.info("%s: best val_loss %.4f at epoch %d (stopped after %d)", description, keep.best_score,
             keep.best_epoch, trainer.current_epoch)
    meta = ModelMeta(
        model=config.model, model_hparams=dict(lit.head.hparams), target=str(cohort.target),
        categories=list(cohort.categories), features=cohort.spec.to_dict(), train_patients=train_ids,
        val_patients=val_ids, train_config=config.model_dump(mode="json"), best_epoch=keep.best_epoch,
        best_val_loss=keep.best_score,
    )
    save_checkpoint(ckpt_path, keep.best_state, meta, dict(hparams))
    return load_model(ckpt_path)
