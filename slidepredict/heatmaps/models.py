"""Which model draws each patient's heatmap, and whether that patient was held out from it.

A heatmap is only as honest as its model's distance from the patient. Given a cross-validation
folder, every patient of the training cohort is drawn by the fold model that did not see it
(its test fold), so the map and its patient probability are held-out results; a patient no
model saw (an external cohort) is drawn by all of them, per-tile scores averaged; a patient
every model saw is drawn by all of them and labelled in-sample. "Saw" means the model's
training or inner-validation patients, as stored in its checkpoint, so the rule needs no
``splits.json`` and holds for any set of checkpoints. Without a slide table a slide's patient is the one
its models recorded for that feature file (:meth:`HeatmapModels.for_slide`), never guessed from its name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slidepredict.core.digest import file_sha256
from slidepredict.core.errors import SlidePredictError
from slidepredict.layout import FOLD_PREFIX
from slidepredict.training.predict import LoadedModel

HELD_OUT = "held out"
IN_SAMPLE = "in-sample"


@dataclass(frozen=True)
class Drawer:
    """The model(s) whose per-tile scores are averaged for one patient."""

    names: tuple[str, ...]
    models: tuple[LoadedModel, ...]
    shas: tuple[str, ...]
    held_out: bool  # no model in ``models`` trained (or validated) on the patient
    of_total: int  # how many models were given, so "1 of 5 fold models" can be said

    @property
    def status(self) -> str:
        return HELD_OUT if self.held_out else IN_SAMPLE

    @property
    def model_text(self) -> str:
        """``fold-2``, ``mean of 5 models``: the words the title and the report use."""
        return self.names[0] if len(self.names) == 1 else f"mean of {len(self.names)} models"

    def describe(self) -> str:
        """``held out (fold-2)`` / ``in-sample (model)``: what a map title says about its model."""
        return f"{self.status} ({self.model_text})"

    def provenance(self) -> dict[str, Any]:
        """What ``heatmaps.json`` and the GeoJSON record about the drawing model(s)."""
        return {
            "status": self.status, "held_out": self.held_out, "model": self.model_text,
            "models": [{"name": n, "path": str(m.path), "sha256": s} for n, m, s in zip(self.names, self.models, self.shas)],
            "rule": _RULE,
        }


_RULE = ("each patient is drawn by the models that neither trained nor validated on it (its held-out fold); "
         "a patient every model saw is drawn by all of them and is in-sample")


class HeatmapModels:
    """A set of checkpoints of one target (a single model, a fold ensemble, or several files)."""

    def __init__(self, names: Sequence[str], models: Sequence[LoadedModel]) -> None:
        self.names = list(names)
        self.models = list(models)
        self.shas = [file_sha256(m.path) for m in models]

    @property
    def first(self) -> LoadedModel:
        return self.models[0]

    def for_patient(self, patient: str) -> Drawer:
        """The models that held ``patient`` out; all of them (in-sample) when every one saw it."""
        keep = [i for i, m in enumerate(self.models) if patient not in m.meta.patients]
        held_out = bool(keep)
        keep = keep or list(range(len(self.models)))
        return Drawer(tuple(self.names[i] for i in keep), tuple(self.models[i] for i in keep),
                      tuple(self.shas[i] for i in keep), held_out, len(self.models))

    def require_slide_records(self) -> None:
        """Refuse, before anything is drawn, models that cannot tell which slides they saw (made before they recorded it)."""
        old = [m for m in self.models if not m.meta.slides]
        if old:
            raise SlidePredictError(
                f"{old[0].path} does not record which slides it was trained on (trained by slidepredict "
                f"{old[0].meta.slidepredict_version}), so whether a slide was held out cannot be told without its "
                "patient; pass --slides-table (the training cohort's slide table) or retrain with this version")

    def for_slide(self, stem: str) -> Drawer:
        """Without a slide table: the patient each model recorded for this feature file decides, never its name.

        A slide's name is not its patient's ID (``TRN-0001-1`` of patient ``TRN-0001``): matching the two
        called a training slide "held out". A slide no model recorded was seen by none of them.
        """
        self.require_slide_records()
        owner = next((p for p in (m.meta.patient_of_slide(stem) for m in self.models) if p is not None), None)
        if owner is None:
            return Drawer(tuple(self.names), tuple(self.models), tuple(self.shas), True, len(self.models))
        return self.for_patient(owner)


def load_heatmap_models(model: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | LoadedModel,
                        device: str = "auto") -> HeatmapModels:
    """Checkpoints, crossval/train folders, or a loaded model; several are checked to belong together."""
    from slidepredict.deploy.ensemble import load_members, member_names

    if isinstance(model, LoadedModel):
        return HeatmapModels(_titled(member_names([model.path])), [model])
    paths = [model] if isinstance(model, (str, os.PathLike)) else list(model)
    members = load_members(paths, device)
    return HeatmapModels(_titled([m.name for m in members]), [m.loaded for m in members])


def _titled(names: list[str]) -> list[str]:
    """``fold-2`` stays; a final model's folder name (its target) becomes ``model MSI``, clear in a title."""
    return [n if n.startswith(FOLD_PREFIX) else f"model {n}" for n in names]
