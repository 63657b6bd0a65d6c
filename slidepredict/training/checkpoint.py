"""Model checkpoints: a Lightning-format dict of plain types plus slidepredict metadata, loadable with weights_only=True.

What deployment and heatmaps must know to use a model safely (class order, target, encoder,
tile size, who it was trained on) travels inside the file, never in a side-car.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from slidepredict.core.atomic import atomic_path
from slidepredict._version import __version__
from slidepredict.core.errors import SlidePredictError
from slidepredict.featurefile import FeatureSpec

CHECKPOINT_FORMAT = 1
META_KEY = "slidepredict"


class CheckpointError(SlidePredictError):
    """A model file is missing, unsafe, or from an incompatible version."""


@dataclass
class ModelMeta:
    model: str
    model_hparams: dict[str, Any]
    target: str
    categories: list[str]
    features: dict[str, Any]  # FeatureSpec.to_dict()
    train_patients: list[str]
    val_patients: list[str] = field(default_factory=list)
    train_config: dict[str, Any] = field(default_factory=dict)
    best_step: int = -1
    monitor: str = ""  # the inner-validation score that chose the weights (lower is better)
    best_val_score: float = float("nan")
    target_kind: str = "categorical"  # cohort.targets.KINDS; checkpoints before target types are categorical
    target_scale: list[float] = field(default_factory=list)  # continuous: [mean, SD] the output is scaled back by
    survival_columns: list[str] = field(default_factory=list)  # survival: the (time, event) columns trained on
    slides: dict[str, str] = field(default_factory=dict)  # feature-file stem -> patient, of every slide it saw
    slidepredict_version: str = __version__
    format: int = CHECKPOINT_FORMAT

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec.from_dict(self.features)

    @property
    def n_outputs(self) -> int:
        """Logits the head has: one per class, or one value for a continuous target."""
        return len(self.categories) if self.target_kind == "categorical" else 1

    def patient_of_slide(self, stem: str) -> str | None:
        """The patient a slide belonged to when this model saw it; None: the model never saw that slide."""
        return self.slides.get(stem)

    @property
    def patients(self) -> set[str]:
        """Every patient whose data shaped the model (training and inner validation)."""
        return set(self.train_patients) | set(self.val_patients)


def save_checkpoint(
    path: str | os.PathLike[str], state_dict: dict[str, torch.Tensor], meta: ModelMeta,
    lightning_hparams: dict[str, Any],
) -> Path:
    """Write atomically; keys follow Lightning's layout so ``LitMIL.load_from_checkpoint`` also works."""
    import lightning

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "state_dict": {f"head.{k}": v.detach().cpu() for k, v in state_dict.items()},
        "hyper_parameters": lightning_hparams,
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": meta.best_step,
        META_KEY: asdict(meta),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], ModelMeta]:
    """Head weights and metadata; refuses files that need pickle or come from a newer format."""
    import pickle

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(f"{path}: not a slidepredict checkpoint that loads safely ({reason})") from None
    if not isinstance(payload, dict) or META_KEY not in payload:
        raise CheckpointError(f"{path}: not a slidepredict checkpoint (no '{META_KEY}' metadata)")
    raw = dict(payload[META_KEY])
    if int(raw.get("format", 0)) > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} was written by slidepredict {raw.get('slidepredict_version')} (checkpoint format "
            f"{raw.get('format')}); this is slidepredict {__version__}: upgrade slidepredict to load it"
        )
    known = set(ModelMeta.__dataclass_fields__)
    meta = ModelMeta(**{k: v for k, v in raw.items() if k in known})
    prefix = "head."
    state = {k[len(prefix):]: v for k, v in payload["state_dict"].items() if k.startswith(prefix)}
    return state, meta
