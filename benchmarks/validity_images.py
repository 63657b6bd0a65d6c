"""The image tier of the validity benchmark: planted morphology in rendered slides, through the real stages.

The feature-space tier (``validity.py``) plants signal in features and cannot see what happens between
pixels and features: a small region cut by tile borders and diluted inside each tile. Here each row is a
training cohort and a stain-shifted external cohort of rendered slides (``slidepredict.demo.synthetic``:
colour matched between classes, per-slide stain, density and nuclear size, lymphocyte aggregates in both
classes), the planted region covering a graded share of a positive slide's tissue, run through
``slidepredict run`` (tile -> extract -> crossval with the mean-pool baseline -> deploy) exactly as a user
would. Reported per row, all on held-out predictions:

- pooled CV AUROC with a patient-bootstrap 95% CI, per-fold mean +- SD, external AUROC (fold ensemble);
- Brier score, expected calibration error (10 equal-width bins) and how many probabilities below 0.02 or
  above 0.98 are wrong;
- tile localisation AUROC of attention against the planted masks (tiles of held-out positives);
- the mean-pool and max-pool + logistic regression baselines on the same folds, and the oracle: the
  planted area itself as the prediction.

    python benchmarks/validity_images.py --quick              # one row (1%, 40 patients): minutes
    python benchmarks/validity_images.py --areas 0.005 0.01 0.02 0.05 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
from validity import KINDS, bootstrap_ci  # noqa: E402  (the feature tier's bootstrap, same figures)

from slidepredict.config import parse_config  # noqa: E402
from slidepredict.core.progress import set_quiet  # noqa: E402
from slidepredict.demo.synthetic import load_ground_truth, make_cohort  # noqa: E402
from slidepredict.pipeline.run import run_workflow  # noqa: E402

FOLDS, TARGET, POS = 5, "MSI", "MSI"
AUROC = KINDS["categorical"]


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: |observed - predicted| per equal-width bin, weighted by the bin's patients."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(y[idx == b].mean() - p[idx == b].mean()) * (idx == b).mean() for b in range(bins) if (idx == b).any()))


def figures(name: str, y: np.ndarray, p: np.ndarray, folds: np.ndarray, external: float, loc: str = "-") -> dict:
    per_fold = [AUROC.scored(y[folds == k], p[folds == k]) for k in range(FOLDS)]
    per_fold = [f for f in per_fold if np.isfinite(f)]
    extreme = ((p < 0.02) & y) | ((p > 0.98) & ~y)
    return {"method": name, "cv": AUROC.scored(y, p), "ci": bootstrap_ci(AUROC, y, p), "fold_mean": np.mean(per_fold),
            "fold_sd": np.std(per_fold), "external": external, "brier": float(np.mean((p - y) ** 2)),
            "ece": ece(y, p), "wrong_extreme": int(extreme.sum()), "localisation": loc}


def make_row_cohorts(work: Path, n: int, area: float, seed: int, size: tuple[int, int]) -> dict[str, Path]:
    """Training and external cohorts (the external one another stain protocol and other patients)."""
    out = {}
    for name, k, shift, s in (("train", n, 0.0, seed), ("external", max(30, n // 2), 0.15, seed + 1000)):
        make_cohort(work / name, n_patients=k, seed=s, stain_shift=shift, signal_fraction=area, width=size[0],
                    height=size[1], prefix="EXT" if name == "external" else "TRN")
        out[name] = work / name
    return out


def run_row(work: Path, cohorts: dict[str, Path], tile_um: float, tile_px: int, encoder: str) -> Path:
    """`slidepredict run` on the row's cohorts with the defaults a user gets; returns the run folder."""
    def tables(root: Path) -> dict[str, str]:
        return {"slides_dir": str(root / "slides"), "clini_table": str(root / "clini.csv"),
                "slide_table": str(root / "slide.csv")}

    cfg = parse_config({
        "output_dir": str(work / "run"), "cohort": tables(cohorts["train"]),
        "tiling": {"tile_um": tile_um, "tile_px": tile_px},
        "extract": {"encoder": encoder, "workers": 0, **({"weights": "random"} if encoder != "stain-texture" else {})},
        "training": {"targets": [TARGET], "folds": FOLDS, "train": False, "baseline": "mean-pool"},
        "deploy": tables(cohorts["external"]), "stats": {"positive": {TARGET: POS}, "n_bootstrap": 200},
        "heatmaps": {"enabled": False}, "report": {"enabled": False},
    }, "image-tier configuration")
    run_workflow(cfg)
    return work / "run"


def tile_truth(cohort_root: Path, features: Path, slide_table: Path) -> dict[str, list[tuple[Path, np.ndarray]]]:
    """Per patient: each slide's feature file and the share of each of its tiles inside the planted region."""
    from slidepredict.featurefile import read_features

    truth = load_ground_truth(cohort_root / "ground_truth.npz", cohort_root / "slides")
    table = pd.read_csv(slide_table, dtype=str)
    out: dict[str, list[tuple[Path, np.ndarray]]] = {}
    for row in table.itertuples():
        stem = Path(row.FILENAME).stem
        path = features / f"{stem}.h5"
        if not path.is_file():  # a slide with no tile of enough tissue has no features (the cohort leaves it out)
            continue
        bag = read_features(path)
        share = truth[stem].signal_fraction(bag.coords, int(bag.attrs["tile_size_level0"]))
        out.setdefault(str(row.PATIENT), []).append((path, share))
    return out


def localisation(run: Path, tiles: dict[str, list[tuple[Path, np.ndarray]]], preds: pd.DataFrame) -> str:
    """Attention AUROC over the tiles of held-out positive patients: tiles at least 10% in the region vs the rest."""
    from slidepredict.featurefile import positions_um, read_features
    from slidepredict.featurefile.spec import microns_per_px
    from slidepredict.training import load_model, predict_bag

    att, flags = [], []
    for k in range(FOLDS):
        model = load_model(run / "crossval" / TARGET / f"fold-{k}" / "model.ckpt")
        for patient in preds[(preds.fold == k) & (preds[TARGET] == POS)].PATIENT:
            for path, share in tiles[patient]:
                bag = read_features(path)
                _, a, _ = predict_bag(model, bag.features, positions_um(bag.coords, microns_per_px(bag.attrs)))
                att.append(a), flags.append(share >= 0.1)
    y = np.concatenate(flags)
    return f"{roc_auc_score(y, np.concatenate(att)):.2f} ({int(y.sum())} tiles)" if 0 < y.sum() < len(y) else "-"


def oracle(tiles: dict[str, list[tuple[Path, np.ndarray]]], patients: list[str]) -> np.ndarray:
    """Each patient's planted area within its tiles: what a perfect reader of the tiles would rank by."""
    return np.array([np.concatenate([s for _, s in tiles[p]]).mean() for p in patients])


def score_row(run: Path, cohorts: dict[str, Path]) -> list[dict]:
    from slidepredict.cohort import build_cohort
    from slidepredict.training.baseline import baseline_crossval

    cv = run / "crossval" / TARGET
    preds = pd.read_csv(cv / "patient-preds.csv", dtype={"PATIENT": str})
    y, p, folds = (preds[TARGET] == POS).to_numpy(), preds[f"{TARGET}_{POS}"].to_numpy(float), preds.fold.to_numpy()
    ext = pd.read_csv(run / "deploy" / TARGET / "patient-preds.csv", dtype={"PATIENT": str})
    ext_y = (ext[TARGET] == POS).to_numpy()
    tiles = tile_truth(cohorts["train"], run / "features", cohorts["train"] / "slide.csv")
    ext_tiles = tile_truth(cohorts["external"], run / "external" / "features", cohorts["external"] / "slide.csv")
    rows = [figures("attention (default recipe)", y, p, folds, AUROC.scored(ext_y, ext[f"{TARGET}_{POS}"].to_numpy(float)),
                    localisation(run, tiles, preds))]
    splits = json.loads((cv / "splits.json").read_text())["splits"]
    cohort = build_cohort(run / "features", cohorts["train"] / "slide.csv", cohorts["train"] / "clini.csv", target=TARGET)
    for pooling in ("mean-pool", "max-pool"):
        ref = baseline_crossval(cohort, splits, pooling).set_index("PATIENT").loc[preds.PATIENT]
        rows.append(figures(f"{pooling} + logistic regression", (ref[TARGET] == POS).to_numpy(),
                            ref[f"{TARGET}_{POS}"].to_numpy(float), ref.fold.to_numpy(), float("nan")))
    share, ext_share = oracle(tiles, list(preds.PATIENT)), oracle(ext_tiles, list(ext.PATIENT))
    o = figures("planted area (oracle)", y, share, folds, AUROC.scored(ext_y, ext_share))
    o.update(brier=float("nan"), ece=float("nan"), wrong_extreme=0)  # an area is no probability
    rows.append(o)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="One row: 1%% area, 40 patients, seed 0.")
    ap.add_argument("--areas", type=float, nargs="+", default=[0.005, 0.01, 0.02, 0.05])
    ap.add_argument("--patients", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--encoder", default="stain-texture")
    ap.add_argument("--tile-um", type=float, default=256.0)
    ap.add_argument("--tile-px", type=int, default=224)
    ap.add_argument("--size", type=int, nargs=2, default=[3072, 2048], help="Slide width and height in pixels (0.5 um/px).")
    ap.add_argument("--keep", type=Path, help="Keep the cohorts and runs under this folder.")
    args = ap.parse_args()
    areas, seeds = ([0.01], [0]) if args.quick else (args.areas, args.seeds)
    set_quiet(True)
    print(f"# {platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d')}, {FOLDS}-fold CV, "
          f"{args.patients} patients, {args.encoder}, tiles {args.tile_um:g} um / {args.tile_px} px, "
          f"slides {args.size[0]}x{args.size[1]} px at 0.5 um/px")
    print("| area | seed | method | CV AUROC (95% CI) | folds mean +- SD | external | Brier | ECE | wrong < 0.02 / > 0.98 "
          "| localisation (attention) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for area in areas:
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                work = (args.keep / f"area{area:g}-seed{seed}") if args.keep else Path(tmp)
                t0 = time.perf_counter()
                cohorts = make_row_cohorts(work, args.patients, area, seed, tuple(args.size))
                run = run_row(work, cohorts, args.tile_um, args.tile_px, args.encoder)
                for r in score_row(run, cohorts):
                    print(f"| {area:.1%} | {seed} | {r['method']} | {r['cv']:.2f} ({r['ci'][0]:.2f}-{r['ci'][1]:.2f}) "
                          f"| {r['fold_mean']:.2f} +- {r['fold_sd']:.2f} | {r['external']:.2f} | {r['brier']:.3f} "
                          f"| {r['ece']:.3f} | {r['wrong_extreme']} | {r['localisation']} |", flush=True)
                print(f"<!-- {area:.1%}, seed {seed}: {time.perf_counter() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
