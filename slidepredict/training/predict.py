"""Inference for deploy, crossval and heatmaps: load a checkpoint, check features match it, predict."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slidepredict.cohort.build import Cohort
from slidepredict.core.errors import FeatureFileError
from slidepredict.featurefile import FeatureSpec, check_model_features
from slidepredict.mil import MILHead, create_mil
from slidepredict.mil._registry import missing_hparams
from slidepredict.core.progress import track
from slidepredict.training.checkpoint import CheckpointError, ModelMeta, load_checkpoint
from slidepredict.training.data import bag_loader


@dataclass
class LoadedModel:
    """A head in eval mode plus everything needed to use it correctly."""

    model: MILHead
    meta: ModelMeta
    path: Path

    @property
    def categories(self) -> list[str]:
        return list(self.meta.categories)

    def check_features(self, spec: FeatureSpec, source: str | os.PathLike[str]) -> None:
        """Refuse features from another encoder, weights, size, tile size or stain normalisation than the model's."""
        check_model_features(spec, self.meta.spec, source, self.path)


def load_model(path: str | os.PathLike[str], device: str = "cpu") -> LoadedModel:
    """Rebuild the head from its checkpoint (``weights_only=True``) in eval mode on ``device`` (auto|cpu|cuda)."""
    from slidepredict.core.device import resolve_device

    state, meta = load_checkpoint(path)
    missing = missing_hparams(meta.model, meta.model_hparams)
    if missing:
        raise CheckpointError(
            f"{path}: this {meta.model} head was trained by slidepredict {meta.slidepredict_version}, "
            f"whose {meta.model} head was built differently (no '{missing[0]}'); retrain it with this version"
        )
    model = create_mil(meta.model, meta.spec.dim, meta.n_outputs, **meta.model_hparams)
    # Checkpoints from before feature standardisation carry no statistics: they saw raw features.
    model.load_state_dict({"feat_mean": model.feat_mean, "feat_std": model.feat_std, **state})
    return LoadedModel(model=model.eval().to(resolve_device(device)), meta=meta, path=Path(path))


def output_value(meta: ModelMeta, raw: torch.Tensor) -> torch.Tensor:
    """A one-output head's raw output as users read it: a continuous target's value in its units, or a survival
    risk standardised to the model's own training patients (mean 0, SD 1).

    The Cox loss is blind to shifts and each fold model ends with its own risk spread (SDs of 1.7 and 0.1 seen
    in one cross-validation), so raw risks of different models cannot be pooled, averaged or cut at one
    median; standardised ones can. A survival model being fitted has no scale yet (``[]``): raw risks.
    """
    if not meta.target_scale:
        return raw
    mean, sd = meta.target_scale
    return raw * sd + mean if meta.target_kind == "continuous" else (raw - mean) / sd


def display_scale(meta: ModelMeta) -> list[float]:
    """[mean, SD] of what a one-output model outputs on its training patients: the heatmaps' colour scale."""
    return list(meta.target_scale) if meta.target_kind == "continuous" else [0.0, 1.0]


def _device(loaded: LoadedModel) -> torch.device:
    return next(loaded.model.parameters()).device


@torch.inference_mode()
def predict_bag(
    loaded: LoadedModel, feats: np.ndarray | torch.Tensor, coords: np.ndarray | torch.Tensor | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One complete bag -> class probabilities (C,), attention (N,) summing to 1, per-tile class probabilities (N, C).

    For a continuous target: the predicted value (1,) and each tile's own value (N, 1), in the target's units;
    for a survival target: the standardised risk (1,) and each tile's own risk (N, 1) on the same scale.
    ``coords`` are tile positions in microns (``Cohort.load_bag``, ``featurefile.positions_um``).
    Per-tile probabilities are the softmax of the head's per-tile logits: the model's verdict on
    a bag made of that tile alone.
    """
    dev = _device(loaded)
    x = torch.as_tensor(np.asarray(feats, dtype=np.float32), device=dev)
    if x.ndim != 2 or x.shape[1] != loaded.meta.spec.dim:
        raise FeatureFileError(f"expected features of shape (N, {loaded.meta.spec.dim}), got {tuple(x.shape)}")
    c = None if coords is None else torch.as_tensor(np.asarray(coords, dtype=np.float32), device=dev)[None]
    mask = torch.ones(1, x.shape[0], dtype=torch.bool, device=dev)
    out = loaded.model(x[None], c, mask)
    if loaded.meta.target_kind != "categorical":  # a value in the target's units, or a standardised risk
        return (output_value(loaded.meta, out.logits[0]).cpu().numpy(), out.attention[0].cpu().numpy(),
                output_value(loaded.meta, out.tile_scores[0]).cpu().numpy())
    probs = torch.softmax(out.logits[0], -1)
    tiles = torch.softmax(out.tile_scores[0], -1)
    return probs.cpu().numpy(), out.attention[0].cpu().numpy(), tiles.cpu().numpy()


def predictions_frame(patients: list[str], probs: np.ndarray, categories: list[str], target: str,
                      truth: list[str] | None) -> Any:
    """The ``patient-preds.csv`` layout of docs/formats.md (the fold column is added by crossval)."""
    import pandas as pd

    df = pd.DataFrame({"PATIENT": patients})
    if truth is not None:
        df[target] = truth
    df["pred"] = [categories[i] for i in probs.argmax(1)]
    for j, cat in enumerate(categories):
        df[f"{target}_{cat}"] = probs[:, j]
    return df


@torch.inference_mode()
def predict_cohort(loaded: LoadedModel, cohort: Cohort, description: str = "predicting") -> Any:
    """Complete-bag predictions for every patient; labels are included when the cohort has the model's target.

    Categorical: class probabilities. Continuous: the predicted value in the target's units. Survival: the risk
    standardised to the model's training patients (:func:`output_value`).
    """
    loaded.check_features(cohort.spec, f"cohort {cohort.slides[cohort.patients[0]][0].path.parent}")
    loader = bag_loader(cohort, train=False)
    dev = _device(loaded)
    kind = loaded.meta.target_kind
    continuous = kind != "categorical"  # one output: a value, or a survival risk
    out_dim = 1 if continuous else len(loaded.categories)
    outputs = np.zeros((len(cohort), out_dim), dtype=np.float64)
    for batch in track(loader, description, total=len(cohort)):
        coords = None if batch.coords is None else batch.coords.to(dev)
        out = loaded.model(batch.feats.to(dev), coords, batch.mask.to(dev))
        scores = output_value(loaded.meta, out.logits) if continuous else torch.softmax(out.logits, -1)
        outputs[batch.index.numpy()] = scores.double().cpu().numpy()
    same = cohort.labels is not None and cohort.target == loaded.meta.target
    if kind == "survival":
        truth_rows = cohort.labels if same and cohort.kind == "survival" else None
        return risk_frame(cohort.patients, outputs[:, 0], loaded.meta.target, truth_rows)
    if continuous:
        truth = [float(v) for v in cohort.labels] if same and cohort.kind == "continuous" else None  # type: ignore[union-attr]
        return values_frame(cohort.patients, outputs[:, 0], loaded.meta.target, truth)
    truth = [cohort.categories[i] for i in cohort.labels] if same else None  # type: ignore[union-attr]
    return predictions_frame(cohort.patients, outputs, loaded.categories, loaded.meta.target, truth)


def values_frame(patients: list[str], values: np.ndarray, target: str, truth: list[float] | None) -> Any:
    """``patient-preds.csv`` of a continuous target: PATIENT, <target> (true value), pred (predicted value)."""
    import pandas as pd

    df = pd.DataFrame({"PATIENT": patients})
    if truth is not None:
        df[target] = truth
    df["pred"] = np.asarray(values, dtype=np.float64)
    return df


RISK = "risk"  # a survival target's predictions column: higher = shorter survival, standardised per model


def risk_frame(patients: list[str], risk: np.ndarray, target: str, truth: np.ndarray | None) -> Any:
    """``patient-preds.csv`` of a survival target: PATIENT, <target>_time, <target>_event, risk."""
    import pandas as pd

    df = pd.DataFrame({"PATIENT": patients})
    if truth is not None:
        df[f"{target}_time"] = truth[:, 0]
        df[f"{target}_event"] = truth[:, 1].astype(int)
    df[RISK] = np.asarray(risk, dtype=np.float64)
    return df
