"""Does training find weak, localised signals? Planted-signal cohorts graded along what makes biomarkers hard.

For each setting (witness rate, cohort size, label noise) a training cohort and an external cohort
(another stain protocol, other patients) of feature files are generated with
``slidepredict.demo.planted``, and checked: no patient-mean feature may reach AUROC 0.65 (on a
400-patient draw of the same setting, where chance cannot). Then, on the same patient-level folds:

- every MIL head in the registry, trained with the default recipe by ``slidepredict.training.crossval``;
- two reference baselines trained on the training folds only: mean-pooled and max-pooled features
  + logistic regression.

Reported per method: pooled cross-validated patient AUROC with a patient-bootstrap 95% CI, per-fold
mean +- SD, external AUROC (fold ensemble: mean probability), and for the heads tile localisation
AUROC (attention, and the positive-class tile score, against the planted witness tiles of held-out
positive patients). Seeds are fixed; one command regenerates the table::

    python benchmarks/validity.py --quick                 # a few minutes on 2 cores
    python benchmarks/validity.py                         # the README table (long)
    python benchmarks/validity.py --patients 40 --witness 0.05 --heads attention mean
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from slidepredict.cohort import build_cohort
from slidepredict.core.progress import set_quiet
from slidepredict.demo.planted import PlantedSpec, make_planted_cohort
from slidepredict.mil import list_mil
from slidepredict.training import TrainSettings, crossval, load_model, predict_bag, predict_cohort
from slidepredict.training.baseline import fit_folds, held_out_frame, pooled_features

FOLDS = 5
QUICK = [(40, 0.10, 0.0), (40, 0.05, 0.0)]
FULL = [(40, w, 0.0) for w in (0.20, 0.10, 0.05, 0.02)] + [(100, 0.05, 0.0), (300, 0.05, 0.0), (300, 0.02, 0.0),
                                                          (100, 0.05, 0.1)]


def bootstrap_ci(y: np.ndarray, s: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        if len(set(y[i])) == 2:
            stats.append(roc_auc_score(y[i], s[i]))
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def best_mean_feature(spec: PlantedSpec, root: Path) -> float:
    made = make_planted_cohort(root, replace(spec, n_patients=400, seed=spec.seed + 500))
    big = build_cohort(made.features, made.slide_table, made.clini_table, target=made.target)
    means, y = pooled_features(big, "mean-pool"), big.labels
    return max(max(a, 1 - a) for a in (roc_auc_score(y, means[:, j]) for j in range(means.shape[1])))


def summarise(name: str, y: np.ndarray, s: np.ndarray, folds: np.ndarray, ext: float, loc: str) -> dict:
    per_fold = [roc_auc_score(y[folds == k], s[folds == k]) for k in range(FOLDS) if len(set(y[folds == k])) == 2]
    lo, hi = bootstrap_ci(y, s)
    return {"method": name, "cv": roc_auc_score(y, s), "ci": (lo, hi), "fold_mean": np.mean(per_fold),
            "fold_sd": np.std(per_fold), "external": ext, "localisation": loc}


def baselines(train, external, splits, out: list[dict]) -> None:  # type: ignore[no-untyped-def]
    """The two references on the heads' folds; externally, the mean of the fold models' probabilities."""
    for pooling in ("mean-pool", "max-pool"):
        x, x_ext = pooled_features(train, pooling), pooled_features(external, pooling)
        models = fit_folds(train, splits, x)
        held_out = held_out_frame(train, splits, x, models, pooling).set_index("PATIENT").loc[train.patients]
        ext = np.mean([m.predict_proba(x_ext)[:, 1] for m in models], 0)
        out.append(summarise(f"{pooling} + LR", train.labels, held_out[f"{train.target}_POS"].to_numpy(),
                             held_out["fold"].to_numpy(), roc_auc_score(external.labels, ext), "-"))


def localisation(cv_dir: Path, train, witness: dict[str, np.ndarray], splits) -> str:  # type: ignore[no-untyped-def]
    """Tile AUROC of attention and of the positive tile score against the witnesses of held-out positives."""
    att, score, truth = [], [], []
    for k, split in enumerate(splits):
        model = load_model(cv_dir / f"fold-{k}" / "model.ckpt")
        for p in split["test"]:
            flags = np.concatenate([witness[s.path.stem] for s in train.slides[p]])
            if not flags.any():
                continue
            probs, a, tiles = predict_bag(model, train.load_bag(p)[0])
            att.append(a), score.append(tiles[:, 1]), truth.append(flags)
    y = np.concatenate(truth)
    return f"{roc_auc_score(y, np.concatenate(att)):.2f} / {roc_auc_score(y, np.concatenate(score)):.2f}"


def run_setting(n: int, witness: float, noise: float, heads: list[str], work: Path) -> tuple[float, list[dict], float]:
    spec = PlantedSpec(n_patients=n, witness_rate=witness, label_noise=noise)
    made = make_planted_cohort(work / "train", spec)
    ext_made = make_planted_cohort(work / "external", spec.external(max(60, n // 2)))
    train = build_cohort(made.features, made.slide_table, made.clini_table, target=made.target)
    external = build_cohort(ext_made.features, ext_made.slide_table, ext_made.clini_table, target=made.target)
    check = best_mean_feature(spec, work / "check")
    rows: list[dict] = []
    t0 = time.perf_counter()
    splits = None
    for head in heads:
        cv_dir = work / f"cv-{head}"
        preds = crossval(train, cv_dir, TrainSettings(model=head), folds=FOLDS)
        splits = json.loads((cv_dir / "splits.json").read_text())["splits"]
        y, s = (preds[made.target] == "POS").to_numpy(), preds[f"{made.target}_POS"].to_numpy()
        ext = np.mean([predict_cohort(load_model(cv_dir / f"fold-{k}" / "model.ckpt"), external)[f"{made.target}_POS"]
                       for k in range(FOLDS)], 0)
        rows.append(summarise(head, y, s, preds["fold"].to_numpy(), roc_auc_score(external.labels, ext),
                              localisation(cv_dir, train, made.witness, splits)))
    baselines(train, external, splits, rows)
    return check, rows, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"Only {QUICK} (patients, witness rate, label noise).")
    ap.add_argument("--patients", type=int, nargs="*", help="Cohort sizes (with --witness: a custom grid).")
    ap.add_argument("--witness", type=float, nargs="*", help="Witness rates.")
    ap.add_argument("--noise", type=float, default=0.0, help="Label noise of a custom grid.")
    ap.add_argument("--heads", nargs="*", default=None, help="MIL heads (default: every registered head).")
    args = ap.parse_args()
    logging.getLogger("slidepredict").setLevel(logging.WARNING)
    set_quiet(True)
    grid = QUICK if args.quick else FULL
    if args.patients and args.witness:
        grid = [(n, w, args.noise) for n in args.patients for w in args.witness]
    heads = args.heads or list_mil()
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}, {FOLDS}-fold CV, default TrainSettings()")
    print("| patients | witness | label noise | best mean feature | method | CV AUROC (95% CI) | folds mean +- SD "
          "| external | localisation (attention / tile score) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, w, noise in grid:
        with tempfile.TemporaryDirectory() as tmp:
            check, rows, took = run_setting(n, w, noise, heads, Path(tmp))
        for r in rows:
            lo, hi = r["ci"]
            print(f"| {n} | {w:.0%} | {noise:.0%} | {check:.2f} | {r['method']} | {r['cv']:.2f} ({lo:.2f}-{hi:.2f}) "
                  f"| {r['fold_mean']:.2f} +- {r['fold_sd']:.2f} | {r['external']:.2f} | {r['localisation']} |", flush=True)
        print(f"<!-- {n} patients, {w:.0%}: {took:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
