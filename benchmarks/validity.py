"""Does training find weak, localised signals? Planted-signal cohorts graded along what makes biomarkers hard.

For each setting (witness rate, cohort size, label noise) a training cohort and an external cohort
(another stain protocol, other patients) of feature files are generated with
``slidepredict.demo.planted``, and checked: no patient-mean feature may reach AUROC 0.65 (on a
400-patient draw of the same setting, where chance cannot). Then, on the same patient-level folds:

- every MIL head in the registry, trained with the default recipe by ``slidepredict.training.crossval``;
- two reference baselines trained on the training folds only: mean-pooled and max-pooled features
  + logistic regression;
- the ceiling: the planted witness share itself as the prediction (what a perfect tile detector
  would count), which label noise, target noise and censoring keep below 1.

With ``--target-type continuous`` or ``survival`` the cohorts are graded (``PlantedSpec.graded``:
each patient's witness share drawn from 0 to twice the rate, slide means matched) and the target is
``SIGNAL_SCORE`` (ten times the share, plus noise) or overall survival with a hazard rising with the
share; the figure is Pearson r or Harrell's C instead of AUROC, and the baselines are ridge or ridge
Cox regressions of the pooled features.

Reported per method: pooled cross-validated patient AUROC with a patient-bootstrap 95% CI, per-fold
mean +- SD, external AUROC (fold ensemble: mean probability), and for the heads tile localisation
AUROC (attention, and the positive-class tile score, against the planted witness tiles of held-out
positive patients). Seeds are fixed; one command regenerates the table::

    python benchmarks/validity.py --quick                 # a few minutes on 2 cores
    python benchmarks/validity.py                         # the README table (long)
    python benchmarks/validity.py --patients 40 --witness 0.05 --heads attention mean
    python benchmarks/validity.py --quick --target-type survival
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr
from sklearn.metrics import roc_auc_score

from slidepredict.cohort import build_cohort
from slidepredict.core.progress import set_quiet
from slidepredict.demo.outcomes import EVENT, SCORE, TIME
from slidepredict.demo.planted import PlantedSpec, make_planted_cohort
from slidepredict.mil import list_mil
from slidepredict.training import TrainSettings, crossval, load_model, predict_bag, predict_cohort
from slidepredict.training.baseline import REGRESSION, fit_folds, held_out_frame, pooled_features

FOLDS = 5
QUICK = [(40, 0.10, 0.0), (40, 0.05, 0.0)]
FULL = [(40, w, 0.0) for w in (0.20, 0.10, 0.05, 0.02)] + [(100, 0.05, 0.0), (300, 0.05, 0.0), (300, 0.02, 0.0),
                                                          (100, 0.05, 0.1)]
GRADED_QUICK = [(100, 0.05, 0.0)]
GRADED_FULL = [(40, 0.10, 0.0), (100, 0.05, 0.0), (300, 0.02, 0.0)]


def concordance(truth: np.ndarray, risk: np.ndarray) -> float:
    from lifelines.utils import concordance_index

    return float(concordance_index(truth[:, 0], -risk, truth[:, 1]))


@dataclass(frozen=True)
class Kind:
    """What one target type is scored with, and how its columns are read from a predictions frame."""

    name: str
    figure: str
    score: Callable[[np.ndarray, np.ndarray], float]  # (truth rows, predictions) -> figure
    build: dict  # build_cohort's keyword arguments
    truth_cols: Callable[[str], list[str]]
    pred_col: Callable[[str], str]

    def scored(self, truth: np.ndarray, pred: np.ndarray) -> float:
        """The figure, or NaN where a resample cannot have one (one class, no event, a constant)."""
        try:
            return self.score(truth, pred)
        except (ValueError, ZeroDivisionError):
            return float("nan")

    def columns(self, df, target: str) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
        cols = self.truth_cols(target)
        truth = (df[cols[0]] == "POS").to_numpy() if self.name == "categorical" else df[cols].to_numpy(np.float64)
        return (truth if len(cols) > 1 else truth.ravel()), df[self.pred_col(target)].to_numpy(np.float64)


KINDS = {
    "categorical": Kind("categorical", "AUROC", lambda y, s: float(roc_auc_score(y, s)), {"target": "TARGET"},
                        lambda t: [t], lambda t: f"{t}_POS"),
    "continuous": Kind("continuous", "Pearson r", lambda y, s: float(pearsonr(y, s)[0]),
                       {"target": SCORE, "kind": "continuous"}, lambda t: [t], lambda t: "pred"),
    "survival": Kind("survival", "C-index", concordance, {"target": "OS", "kind": "survival", "time_col": TIME,
                                                          "event_col": EVENT},
                     lambda t: [f"{t}_time", f"{t}_event"], lambda t: "risk"),
}


def bootstrap_ci(kind: Kind, y: np.ndarray, s: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    draws = [kind.scored(y[i], s[i]) for i in (rng.integers(0, len(s), len(s)) for _ in range(n))]
    draws = [d for d in draws if np.isfinite(d)]
    return float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def labelled(made, kind: Kind):  # type: ignore[no-untyped-def]
    return build_cohort(made.features, made.slide_table, made.clini_table, **kind.build)


def best_mean_feature(kind: Kind, spec: PlantedSpec, root: Path) -> float:
    """The best single patient-mean feature's figure (either direction) on a 400-patient draw of the setting."""
    big = labelled(make_planted_cohort(root, replace(spec, n_patients=400, seed=spec.seed + 500)), kind)
    means = pooled_features(big, "mean-pool")
    y = big.labels if kind.name != "categorical" else big.labels.astype(bool)
    figures = [kind.scored(y, means[:, j]) for j in range(means.shape[1])]
    return max(abs(f) if kind.name == "continuous" else max(f, 1 - f) for f in figures)


def summarise(kind: Kind, name: str, y: np.ndarray, s: np.ndarray, folds: np.ndarray, ext: float, loc: str) -> dict:
    per_fold = [kind.scored(y[folds == k], s[folds == k]) for k in range(FOLDS)]
    per_fold = [f for f in per_fold if np.isfinite(f)]
    return {"method": name, "cv": kind.scored(y, s), "ci": bootstrap_ci(kind, y, s), "fold_mean": np.mean(per_fold),
            "fold_sd": np.std(per_fold), "external": ext, "localisation": loc}


def baselines(kind: Kind, train, external, splits, out: list[dict]) -> None:  # type: ignore[no-untyped-def]
    """The two references on the heads' folds; externally, the mean of the fold models' predictions."""
    for pooling in ("mean-pool", "max-pool"):
        x, x_ext = pooled_features(train, pooling), pooled_features(external, pooling)
        models = fit_folds(train, splits, x)
        held_out = held_out_frame(train, splits, x, models, pooling).set_index("PATIENT").loc[train.patients]
        ext = np.mean([m.predict_proba(x_ext)[:, 1] if kind.name == "categorical" else m.predict(x_ext)
                       for m in models], 0)
        y, s = kind.columns(held_out, train.target)
        out.append(summarise(kind, f"{pooling} + {REGRESSION[kind.name]}", y, s, held_out["fold"].to_numpy(),
                             kind.scored(external_truth(kind, external), ext), "-"))


def external_truth(kind: Kind, external) -> np.ndarray:  # type: ignore[no-untyped-def]
    return external.labels.astype(bool) if kind.name == "categorical" else external.labels


def localisation(cv_dir: Path, train, witness: dict[str, np.ndarray], splits) -> str:  # type: ignore[no-untyped-def]
    """Tile AUROC of attention and of the tile score (positive class, value or risk) against held-out witnesses."""
    att, score, truth = [], [], []
    for k, split in enumerate(splits):
        model = load_model(cv_dir / f"fold-{k}" / "model.ckpt")
        for p in split["test"]:
            flags = np.concatenate([witness[s.path.stem] for s in train.slides[p]])
            if not flags.any():
                continue
            _, a, tiles = predict_bag(model, *train.load_bag(p))
            att.append(a), score.append(tiles[:, -1]), truth.append(flags)
    y = np.concatenate(truth)
    return f"{roc_auc_score(y, np.concatenate(att)):.2f} / {roc_auc_score(y, np.concatenate(score)):.2f}"


def planted_share(cohort, witness: dict[str, np.ndarray]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Each patient's realised share of witness tiles over all its slides: what a perfect tile detector would count."""
    return np.array([np.mean(np.concatenate([witness[s.path.stem] for s in cohort.slides[p]])) for p in cohort.patients])


def ceiling(kind: Kind, train, external, made, ext_made, folds: np.ndarray) -> dict:  # type: ignore[no-untyped-def]
    """The figure of the planted truth itself (label noise, target noise and censoring cap every method below it)."""
    y, ext_y = external_truth(kind, train), external_truth(kind, external)
    return summarise(kind, "planted witness share (ceiling)", y, planted_share(train, made.witness), folds,
                     kind.scored(ext_y, planted_share(external, ext_made.witness)), "-")


def run_setting(kind: Kind, n: int, witness: float, noise: float, heads: list[str], work: Path,
                ) -> tuple[float, list[dict], float]:
    spec = PlantedSpec(n_patients=n, witness_rate=witness, label_noise=noise, graded=kind.name != "categorical")
    made = make_planted_cohort(work / "train", spec)
    ext_made = make_planted_cohort(work / "external", spec.external(max(60, n // 2)))
    train, external = labelled(made, kind), labelled(ext_made, kind)
    check = best_mean_feature(kind, spec, work / "check")
    rows: list[dict] = []
    t0 = time.perf_counter()
    if not heads:  # --ceiling-only: what the planted truth reaches, no training, on the folds crossval would make
        from slidepredict.training.splits import make_splits

        fold_of = {p: k for k, split in enumerate(make_splits(train, FOLDS, TrainSettings().seed)) for p in split["test"]}
        return check, [ceiling(kind, train, external, made, ext_made, np.array([fold_of[p] for p in train.patients]))], 0.0
    splits = None
    for head in heads:
        cv_dir = work / f"cv-{head}"
        preds = crossval(train, cv_dir, TrainSettings(model=head), folds=FOLDS).set_index("PATIENT").loc[train.patients]
        splits = json.loads((cv_dir / "splits.json").read_text())["splits"]
        y, s = kind.columns(preds, train.target)
        ext = np.mean([kind.columns(predict_cohort(load_model(cv_dir / f"fold-{k}" / "model.ckpt"), external),
                                    train.target)[1] for k in range(FOLDS)], 0)
        rows.append(summarise(kind, head, y, s, preds["fold"].to_numpy(),
                              kind.scored(external_truth(kind, external), ext),
                              localisation(cv_dir, train, made.witness, splits)))
    baselines(kind, train, external, splits, rows)
    rows.append(ceiling(kind, train, external, made, ext_made, preds["fold"].to_numpy()))
    return check, rows, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"Only {QUICK} (patients, witness rate, label noise).")
    ap.add_argument("--patients", type=int, nargs="*", help="Cohort sizes (with --witness: a custom grid).")
    ap.add_argument("--witness", type=float, nargs="*", help="Witness rates.")
    ap.add_argument("--noise", type=float, default=0.0, help="Label noise of a custom grid.")
    ap.add_argument("--heads", nargs="*", default=None, help="MIL heads (default: every registered head).")
    ap.add_argument("--ceiling-only", action="store_true",
                    help="Only the planted truth's own figure per setting (seconds: no training).")
    ap.add_argument("--target-type", choices=list(KINDS), default="categorical",
                    help="continuous / survival: graded cohorts, Pearson r / Harrell's C.")
    args = ap.parse_args()
    kind = KINDS[args.target_type]
    logging.getLogger("slidepredict").setLevel(logging.WARNING)
    set_quiet(True)
    grid = (QUICK if args.quick else FULL) if kind.name == "categorical" else (GRADED_QUICK if args.quick else GRADED_FULL)
    if args.patients and args.witness:
        grid = [(n, w, args.noise) for n in args.patients for w in args.witness]
    heads = [] if args.ceiling_only else args.heads or list_mil()
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}, {FOLDS}-fold CV, default TrainSettings(), target type {kind.name}")
    print(f"| patients | witness | label noise | best mean feature | method | CV {kind.figure} (95% CI) | folds mean +- SD "
          "| external | localisation (attention / tile score) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, w, noise in grid:
        with tempfile.TemporaryDirectory() as tmp:
            check, rows, took = run_setting(kind, n, w, noise, heads, Path(tmp))
        for r in rows:
            lo, hi = r["ci"]
            print(f"| {n} | {w:.0%} | {noise:.0%} | {check:.2f} | {r['method']} | {r['cv']:.2f} ({lo:.2f}-{hi:.2f}) "
                  f"| {r['fold_mean']:.2f} +- {r['fold_sd']:.2f} | {r['external']:.2f} | {r['localisation']} |", flush=True)
        print(f"<!-- {n} patients, {w:.0%}: {took:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
