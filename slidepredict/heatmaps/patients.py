"""Patient-level predictions for heatmap titles: a patient's bag is all tiles of all its slides.

Without a slide table each slide is its own patient, and the title shows the slide's own
prediction, which for single-slide patients is the same thing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from slidepredict.heatmaps.models import Drawer, HeatmapModels
from slidepredict.training.predict import predict_bag


@dataclass(frozen=True)
class PatientPrediction:
    patient: str
    probs: np.ndarray  # (C,) from the patient's complete bag, mean over the drawing models
    drawer: Drawer


def patient_predictions(
    models: HeatmapModels,
    features_dir: str | os.PathLike[str],
    slide_table: str | os.PathLike[str],
    stems: Iterable[str],
    patient_col: str = "PATIENT",
    filename_col: str = "FILENAME",
) -> dict[str, PatientPrediction]:
    """Feature-file stem -> its patient's prediction, for the patients owning one of ``stems``."""
    from slidepredict.cohort.build import build_cohort

    cohort = build_cohort(features_dir, slide_table=slide_table, patient_col=patient_col, filename_col=filename_col)
    wanted = set(stems)
    out: dict[str, PatientPrediction] = {}
    for patient in cohort.patients:
        files = cohort.slides[patient]
        if not wanted & {f.path.stem for f in files}:
            continue
        drawer = models.for_patient(patient)
        for f in files:
            for loaded in drawer.models:
                loaded.check_features(f.spec, str(f.path))
        feats, coords = cohort.load_bag(patient)
        probs = np.mean([predict_bag(loaded, feats, coords)[0] for loaded in drawer.models], axis=0)
        prediction = PatientPrediction(patient, np.asarray(probs, dtype=np.float64), drawer)
        out.update({f.path.stem: prediction for f in files})
    return out
