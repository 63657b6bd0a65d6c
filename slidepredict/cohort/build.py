"""Clinical table + slide table + feature files -> one lazily loaded bag of tiles per patient.

Nothing is dropped silently: every patient, slide or label left out lands in a :class:`DropReport`
(shown in logs and in the HTML report). Feature files are only probed (shape and attributes) when
the cohort is built; tiles are read from disk per bag, so RAM does not grow with the cohort.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from slidepredict.core.errors import CohortError
from slidepredict.featurefile import (
    FeatureSpec,
    SlideFeatures,
    common_spec,
    index_feature_files,
    positions_um,
    probe_feature_file,
    read_bag_rows,
)
from slidepredict.slide import slide_stem
from slidepredict.cohort.tables import integer_ids, read_table, require_columns
from slidepredict.cohort.targets import encode_labels, event_column, strata

log = logging.getLogger(__name__)


@dataclass
class Drop:
    """One reason something was left out, how often, and a few examples to look up."""

    reason: str
    count: int
    examples: list[str]


@dataclass
class DropReport:
    drops: list[Drop] = field(default_factory=list)

    def add(self, reason: str, items: Sequence[str]) -> None:
        if len(items):
            items = sorted(map(str, items))
            self.drops.append(Drop(reason, len(items), items[:5]))
            more = f", ... ({len(items) - 5} more)" if len(items) > 5 else ""
            log.warning("dropped %d: %s (%s%s)", len(items), reason, ", ".join(items[:5]), more)

    @property
    def total(self) -> int:
        return sum(d.count for d in self.drops)

    def to_list(self) -> list[dict[str, Any]]:
        return [asdict(d) for d in self.drops]


def _match_slide(name: str, index: dict[str, list[Path]]) -> Path | None:
    """The feature file of a slide named with or without its extension (TCGA names contain dots)."""
    base = Path(name.replace("\\", "/")).name
    for key in dict.fromkeys((base, slide_stem(base), Path(base).stem)):
        hits = index.get(key)
        if hits and len(hits) > 1:
            raise CohortError(
                f"slide '{name}' matches {len(hits)} feature files ({hits[0]}, {hits[1]}); "
                "keep one feature file per slide in the features folder"
            )
        if hits:
            return hits[0]
    return None


@dataclass
class Cohort:
    """Patients, their feature files and (optionally) their labels; bags are read on demand."""

    patients: list[str]
    slides: dict[str, tuple[SlideFeatures, ...]]
    spec: FeatureSpec
    target: str | None = None
    categories: list[str] = field(default_factory=list)
    labels: np.ndarray | None = None  # class index per patient, aligned with ``patients``
    drops: DropReport = field(default_factory=DropReport)
    kind: str = "categorical"  # the target's type (cohort.targets.KINDS); continuous labels are float values
    groups: np.ndarray | None = None  # site/batch per patient (cohort.groups), kept on one side of every split
    group_name: str | None = None  # where ``groups`` came from: a clinical-table column, or tcga-site
    survival_columns: tuple[str, str] | None = None  # survival: the (time, event) columns of the clinical table

    def __len__(self) -> int:
        return len(self.patients)

    def n_tiles(self, patient: str) -> int:
        return sum(s.n_tiles for s in self.slides[patient])

    def strata(self) -> np.ndarray:
        """What splits stratify by: class indices, or quantile bins of a continuous target."""
        return strata(self.kind, self.labels)  # type: ignore[arg-type]

    def class_counts(self) -> dict[str, int]:
        if self.labels is None or self.kind != "categorical":
            return {}
        counts = np.bincount(self.labels, minlength=len(self.categories))
        return {c: int(n) for c, n in zip(self.categories, counts)}

    def subset(self, patients: Sequence[str]) -> Cohort:
        """The same cohort restricted to ``patients`` (fold splits); unknown names are an error."""
        pos = {p: i for i, p in enumerate(self.patients)}
        missing = [p for p in patients if p not in pos]
        if missing:
            raise CohortError(f"{len(missing)} patients not in the cohort, e.g. '{missing[0]}'")
        idx = np.array([pos[p] for p in patients], dtype=int)
        return replace(
            self, patients=list(patients), slides={p: self.slides[p] for p in patients},
            labels=None if self.labels is None else self.labels[idx],
            groups=None if self.groups is None else self.groups[idx],
        )

    def load_bag(
        self, patient: str, max_tiles: int | None = None, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """All tiles of all the patient's slides, or ``max_tiles`` of them drawn without replacement.

        Only the drawn rows are read from disk. Returns features and tile positions in microns,
        each slide shifted apart (:func:`~slidepredict.featurefile.positions_um`); positions are
        None when any slide has no coordinates.
        """
        files = self.slides[patient]
        sizes = np.array([s.n_tiles for s in files])
        picks: list[np.ndarray | None] = [None] * len(files)
        if max_tiles is not None and sizes.sum() > max_tiles:
            rng = rng or np.random.default_rng()
            chosen = np.sort(rng.choice(int(sizes.sum()), size=max_tiles, replace=False))
            bounds = np.concatenate([[0], np.cumsum(sizes)])
            picks = [chosen[(chosen >= a) & (chosen < b)] - a for a, b in zip(bounds[:-1], bounds[1:])]
        parts = [(i, *read_bag_rows(s.path, rows)) for i, (s, rows) in enumerate(zip(files, picks))
                 if rows is None or len(rows)]
        feats = np.concatenate([f for _, f, _ in parts]) if len(parts) > 1 else parts[0][1]
        if any(c is None for _, _, c in parts):
            return feats, None
        return feats, np.concatenate([positions_um(c, files[i].um_per_px, i) for i, _, c in parts])

    def summary(self) -> dict[str, Any]:
        """Plain-type overview for logs, JSON and the HTML report."""
        return {
            "target": self.target,
            "kind": self.kind,
            "patients": len(self.patients),
            "slides": sum(len(v) for v in self.slides.values()),
            "tiles": int(sum(self.n_tiles(p) for p in self.patients)),
            "categories": list(self.categories),
            "class_counts": self.class_counts(),
            "features": self.spec.to_dict(),
            "dropped": self.drops.to_list(),
            **({} if self.groups is None else {"group": self.group_name, "groups": len(set(self.groups))}),
        }


def _sorted_categories(values: Sequence[str]) -> list[str]:
    """Numeric labels sort as numbers ('2' < '10'), others alphabetically; never by row order."""
    uniq = sorted(set(values))
    try:
        return sorted(uniq, key=float)
    except ValueError:
        return uniq


def _slide_files(slide_table: Path | None, index: dict[str, list[Path]], patient_col: str,
                 filename_col: str, drops: DropReport) -> tuple[dict[str, list[Path]], set[str]]:
    """patient -> feature files, and every patient the slide table names (with features or not).

    Without a slide table each feature file is its own patient.
    """
    if slide_table is None:
        out = {key: [_match_slide(key, index)] for key in sorted(index)}
        return out, set(out)  # type: ignore[return-value]
    st = read_table(slide_table)
    require_columns(st, [patient_col, filename_col], slide_table, "slide table")
    st[patient_col] = integer_ids(st[patient_col], slide_table, patient_col)
    incomplete = st[st[patient_col].isna() | st[filename_col].isna()]
    drops.add(f"slide-table rows without {patient_col} or {filename_col}", [str(i + 2) for i in incomplete.index])
    st = st.drop(incomplete.index).drop_duplicates([patient_col, filename_col])
    shared = st[st.duplicated(filename_col, keep=False)]
    if len(shared):
        name = shared[filename_col].iloc[0]
        owners = ", ".join(sorted(shared.loc[shared[filename_col] == name, patient_col]))
        raise CohortError(f"slide '{name}' belongs to several patients ({owners}) in {slide_table.name}; a slide has one patient")
    out: dict[str, list[Path]] = {}
    missing, used = [], set()
    for patient, name in zip(st[patient_col], st[filename_col]):
        path = _match_slide(name, index)
        if path is None:
            missing.append(name)
            continue
        used.add(path)
        out.setdefault(patient, [])
        if path not in out[patient]:
            out[patient].append(path)
    drops.add("slides without a feature file", missing)
    drops.add("feature files not in the slide table", [k for k, ps in index.items() if not set(ps) & used])
    drops.add("patients in the slide table with no feature file at all", sorted(set(st[patient_col]) - set(out)))
    return out, set(st[patient_col])


def _labels(clini_table: Path, target: str | None, patient_col: str, categories: Sequence[str] | None,
            have: set[str], listed: set[str], drops: DropReport) -> tuple[dict[str, str | None], list[str]]:
    """patient -> label (None without a target) for patients that have features and a valid label."""
    ct = read_table(clini_table)
    require_columns(ct, [patient_col], clini_table, "patient")
    if target is not None:
        require_columns(ct, [target], clini_table, "target")
    ct = ct.dropna(subset=[patient_col])
    ct[patient_col] = integer_ids(ct[patient_col], clini_table, patient_col)
    rows: dict[str, str | None] = dict.fromkeys(ct[patient_col])
    if target is not None:
        labelled = ct[[patient_col, target]].dropna().drop_duplicates()
        clash = labelled[labelled.duplicated(patient_col, keep=False)]
        if len(clash):
            p = clash[patient_col].iloc[0]
            values = ", ".join(f"'{v}'" for v in sorted(clash.loc[clash[patient_col] == p, target]))
            n = clash[patient_col].nunique()
            raise CohortError(
                f"patient '{p}' has conflicting values for '{target}' in {clini_table.name}: {values} "
                f"({n} patient{'s' if n > 1 else ''} affected); fix or remove the duplicate rows"
            )
        rows.update(zip(labelled[patient_col], labelled[target]))
    drops.add("patients in the clinical table but not in the slide table", sorted(set(rows) - listed))
    drops.add("patients with features but not in the clinical table", sorted(have - set(rows)))
    rows = {p: v for p, v in rows.items() if p in have}
    if target is None:
        return rows, []
    drops.add(f"patients without a value for '{target}'", [p for p, v in rows.items() if v is None])
    rows = {p: v for p, v in rows.items() if v is not None}
    rows = _one_spelling(rows, target, clini_table, categories)  # type: ignore[arg-type]
    if categories:
        cats = [str(c) for c in categories]
        drops.add(f"patients whose '{target}' is not one of {', '.join(cats)}", [p for p, v in rows.items() if v not in cats])
        rows = {p: v for p, v in rows.items() if v in cats}
    else:
        cats = _sorted_categories(list(rows.values()))  # type: ignore[arg-type]
    return rows, cats


def _patients(n: int) -> str:
    return f"{n} patient{'s' if n != 1 else ''}"


def _one_spelling(rows: dict[str, str], target: str, path: Path, categories: Sequence[str] | None) -> dict[str, str]:
    """Values that differ only in letter case ('msi-h', 'MSI-H') are one class or an error, never two classes.

    With declared ``categories`` each is read as the declared spelling (a warning says so);
    without, the error names both spellings and how many patients use each.
    """
    declared = {str(c).casefold(): str(c) for c in categories or ()}
    spellings: dict[str, dict[str, int]] = {}
    for v in rows.values():
        spellings.setdefault(v.casefold(), {}).setdefault(v, 0)
        spellings[v.casefold()][v] += 1
    for key, seen in spellings.items():
        if len(seen) < 2 and (key not in declared or declared[key] in seen):
            continue
        if key in declared:
            log.warning("'%s' in %s: %s read as the declared category '%s'", target, path.name,
                        ", ".join(f"'{v}'" for v in seen if v != declared[key]), declared[key])
            rows = {p: declared[key] if v.casefold() == key else v for p, v in rows.items()}
            continue
        (a, na), (b, nb) = sorted(seen.items())[:2]
        raise CohortError(
            f"'{target}' in {path.name} has values that differ only in letter case: '{a}' ({_patients(na)}) and "
            f"'{b}' ({_patients(nb)}); write one spelling, or declare the categories (--categories) to merge them"
        )
    return rows


def build_cohort(
    features_dir: str | os.PathLike[str],
    slide_table: str | os.PathLike[str] | None = None,
    clini_table: str | os.PathLike[str] | None = None,
    target: str | None = None,
    categories: Sequence[str] | None = None,
    patient_col: str = "PATIENT",
    filename_col: str = "FILENAME",
    kind: str = "categorical",
    time_col: str | None = None,
    event_col: str | None = None,
) -> Cohort:
    """Join tables and feature files into a cohort; probes every file, reads no features.

    Without a clinical table (or target) the cohort is unlabelled (prediction only); without a
    slide table every feature file is its own patient. ``kind`` is the target's type
    (:mod:`slidepredict.cohort.targets`): a continuous target's labels are its float values; a
    survival target (named ``target``) reads ``time_col`` (default: the target's name) and ``event_col``.
    """
    if target is not None and clini_table is None:
        raise CohortError(f"target '{target}' needs a clinical table (--clini)")
    drops = DropReport()
    index = index_feature_files(features_dir)
    if not index:
        raise CohortError(f"no .h5 feature files in {features_dir}; run `slidepredict extract` first")
    files, listed = _slide_files(None if slide_table is None else Path(slide_table), index, patient_col, filename_col, drops)
    with_features = sorted(files)
    labels: dict[str, str | None] = dict.fromkeys(files)
    cats: list[str] = []
    if clini_table is not None:
        column = (time_col or target) if kind == "survival" and target is not None else target
        labels, cats = _labels(Path(clini_table), column, patient_col, None if kind != "categorical" else categories,
                               set(files), listed, drops)
    probed = {p: probe_feature_file(p) for pat in labels for p in files[pat]}
    drops.add("feature files with no tiles", [str(p) for p, s in probed.items() if s.n_tiles == 0])
    files = {pat: [p for p in files[pat] if probed[p].n_tiles] for pat in labels}
    drops.add("patients whose slides have no tiles", [pat for pat in labels if not files[pat]])
    patients = sorted(pat for pat in labels if files[pat])
    if not patients:
        raise CohortError(
            f"no patient has both features and {'a label' if target else 'an entry'} "
            f"(features: {features_dir}); see the dropped rows above"
        )
    spec = common_spec([probed[p] for pat in patients for p in files[pat]])
    values = None
    if target is not None:
        events = None
        if kind == "survival":
            events = event_column(Path(clini_table), patient_col, time_col or target, event_col,  # type: ignore[arg-type]
                                  with_features)
        values, cats = encode_labels(kind, {p: labels[p] for p in patients}, cats, time_col or target,  # type: ignore[arg-type]
                                     Path(clini_table), events)  # type: ignore[arg-type]
    cohort = Cohort(
        patients=patients,
        slides={pat: tuple(probed[p] for p in files[pat]) for pat in patients},
        spec=spec, target=target, categories=cats, drops=drops, labels=values, kind=kind,
        survival_columns=(time_col or target, event_col) if kind == "survival" and target else None,  # type: ignore[arg-type]
    )
    log.info("cohort: %d patients, %d slides%s", len(cohort), sum(map(len, cohort.slides.values())),
             f", classes {cohort.class_counts()}" if cohort.class_counts() else "")
    return cohort
