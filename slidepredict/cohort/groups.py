"""Patient groups (hospital, site, batch) that must never straddle a split.

Slides from one site share staining, scanner and patient mix, so a model can learn the site
instead of the biomarker; when a site's patients sit on both sides of a fold, internal
validation rewards that. A group column (e.g. ``SITE``) in the clinical table, or the tissue
source site of a TCGA barcode (``TCGA-AA-3511`` -> ``AA``), assigns each patient a group.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from slidepredict.cohort.build import Cohort
from slidepredict.cohort.tables import integer_ids, read_table, require_columns
from slidepredict.core.errors import CohortError

log = logging.getLogger(__name__)

TCGA_SITE = "tcga-site"  # the group "column" that reads the tissue source site from the patient ID
_TCGA = re.compile(r"^TCGA-([A-Z0-9]{2})-[A-Z0-9]{4}", re.IGNORECASE)


def tcga_site(patient: str) -> str | None:
    """``TCGA-AA-3511`` -> ``AA``; None for IDs that are not TCGA barcodes."""
    m = _TCGA.match(patient)
    return m.group(1).upper() if m else None


def _from_table(cohort: Cohort, clini_table: str | os.PathLike[str], column: str, patient_col: str) -> dict[str, str]:
    clini_table = Path(clini_table)
    ct = read_table(clini_table)
    require_columns(ct, [patient_col, column], clini_table, "group")
    ct = ct.dropna(subset=[patient_col])
    ct[patient_col] = integer_ids(ct[patient_col], clini_table, patient_col)
    ct = ct[ct[patient_col].isin(cohort.patients)].dropna(subset=[column])
    values = integer_ids(ct[column], clini_table, column)
    return {str(p): str(v).strip() for p, v in zip(ct[patient_col], values) if str(v).strip()}


def with_groups(cohort: Cohort, group: str | None, clini_table: str | os.PathLike[str] | None,
                patient_col: str = "PATIENT") -> Cohort:
    """The cohort with ``groups`` set from ``group`` (a clinical-table column or ``tcga-site``); None: unchanged.

    Patients without a group value are dropped (and reported), like patients without a label.
    """
    if group is None:
        return cohort
    if group == TCGA_SITE:
        found = {p: s for p in cohort.patients if (s := tcga_site(p)) is not None}
        if not found:
            raise CohortError(
                f"--group {TCGA_SITE}: no patient ID is a TCGA barcode (TCGA-XX-XXXX), e.g. '{cohort.patients[0]}'; "
                "name a clinical-table column with the site instead"
            )
        why = "patients whose ID is not a TCGA barcode (no tissue source site)"
    else:
        if clini_table is None:
            raise CohortError(f"--group {group} needs a clinical table (--clini) with that column")
        found = _from_table(cohort, clini_table, group, patient_col)
        why = f"patients without a value for the group column '{group}'"
    cohort.drops.add(why, [p for p in cohort.patients if p not in found])
    kept = [p for p in cohort.patients if p in found]
    if not kept:
        raise CohortError(f"no patient of target '{cohort.target}' has a value for the group column '{group}'")
    out = cohort.subset(kept)
    out = replace(out, groups=np.array([found[p] for p in kept], dtype=object), group_name=group)
    log.info("groups from '%s': %d groups over %d patients", group, len(set(found[p] for p in kept)), len(kept))
    return out


def check_groups(cohort: Cohort) -> None:
    """A group holding every patient of a class leaves the fold that tests it with nothing of that class to learn."""
    if cohort.groups is None or cohort.labels is None:
        return
    for c, name in enumerate(cohort.categories):
        owners = set(cohort.groups[cohort.labels == c])
        if len(owners) == 1 and len(set(cohort.groups)) > 1:
            g = next(iter(owners))
            n = int((cohort.labels == c).sum())
            raise CohortError(
                f"group '{g}' of '{cohort.group_name}' holds all {n} patients of class '{name}' (target "
                f"'{cohort.target}'); the fold testing it would train without that class. Merge groups, or "
                "cross-validate without --group"
            )
