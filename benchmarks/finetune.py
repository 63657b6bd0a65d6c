"""Fine-tuning an encoder on cells: does it help, what would leak, and what it costs on this machine.

Three measurements, in one run:

- **tuned vs frozen, same folds** (``slidepredict finetune --crossval``, last block): generated
  fluorescence wells (``slidepredict.demo.cells``), apoptotic (fragmented nuclei) against alive,
  where only ``--purity`` of an apoptotic well's cells show it (each unit is labelled by its well,
  so at purity 0.05 95% of an apoptotic well's unit labels are wrong); bags are wells, folds grouped by well. The
  encoder is a small timm ResNet (timm's ``test_resnet``, 32 px) from a seeded random init, the
  only weights a machine without downloads has; the MIL head is the default attention head.
- **what the held-out guard prevents**: the labels shuffled across wells (no signal), one encoder
  tuned on every image (``--leak-blocks`` blocks for ``--leak-epochs`` epochs, long enough to
  memorise), then cross-validated on its features as if they were held out (the guard is
  switched off for this row only). Any AUROC above 0.5 there is leakage, not learning; the same
  shuffled labels with an encoder tuned per fold are the honest figure.
- **cost**: units per second of one tuning epoch of ``resnet50-trunc`` (last block, layer3;
  random weights; 48 px cells resized to 224) against its embedding rate on the same crops, the
  ratio measured in one run.

Usage::

    python benchmarks/finetune.py [--wells 36] [--purity 0.2 0.1 0.05] [--epochs 8] [--lr 1e-4] [--leak-epochs 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from typer.testing import CliRunner

from slidepredict.cli import app
from slidepredict.demo.cells import CellImageSpec, make_cell_images
from slidepredict.features import list_encoders, register_encoder
from slidepredict.features._registry import EncoderConfig

SMALL = "bench-test-resnet"
QUICK_MIL = ["--steps", "300", "--min-steps", "100", "--val-every", "25"]


def _register() -> None:
    if SMALL not in list_encoders():
        register_encoder(SMALL)(lambda: EncoderConfig(name=SMALL, dim=96, arch="test_resnet",
                                                      hf_hub_id="bench/test-resnet", input_px=32))


def _cli(*args: object) -> str:
    res = CliRunner().invoke(app, ["--quiet", *[str(a) for a in args]])
    if res.exit_code != 0:
        raise SystemExit(res.output[-2000:])
    return [ln for ln in res.output.splitlines() if ln.startswith("LABEL")][-1]


def _auroc(preds: Path | pd.DataFrame) -> float:
    from sklearn.metrics import roc_auc_score

    df = pd.read_csv(preds) if isinstance(preds, Path) else preds
    return float(roc_auc_score(df.LABEL == "fragmented", df.LABEL_fragmented))


def _tuning(epochs: int, blocks: int, lr: float) -> list[object]:
    return ["--encoder", SMALL, "--weights", "random", "--unit", "nuclei", "--unit-size", "32", "--bag", "well",
            "-t", "LABEL", "--tune-epochs", epochs, "--blocks", blocks, "--tune-lr", lr, "--group", "WELL"]


def tuned_vs_frozen(root: Path, label: str, table: Path, images: Path, epochs: int, blocks: int,
                    lr: float) -> dict[str, float]:
    _cli("finetune", "--images", images, "--image-table", table, *_tuning(epochs, blocks, lr), "--folds", "3",
         *QUICK_MIL, "--crossval", "--out", root / label)
    cv = root / label / "LABEL"
    records = [json.loads(p.read_text()) for p in sorted(cv.glob("fold-*/encoder/finetune.json"))]
    return {"tuned": _auroc(cv / "patient-preds.csv"), "frozen": _auroc(cv / "frozen" / "patient-preds.csv"),
            "mean-pool LR": _auroc(cv / "frozen" / "baseline-mean-pool" / "patient-preds.csv"),
            "folds with a tuned epoch kept": sum(r["best_epoch"] > 0 for r in records),
            "fold-0 epoch-0 val acc": records[0]["history"][0]["val_accuracy"],
            "fold-0 last-epoch train acc": records[0]["history"][-1]["train_accuracy"]}


def leaky(root: Path, table: Path, images: Path, epochs: int, blocks: int, lr: float) -> dict[str, float]:
    """Tune on every image, then cross-validate its features with the guard switched off: the leak's size."""
    from slidepredict.cohort.build import build_cohort
    from slidepredict.training import folds
    from slidepredict.training.settings import TrainingSettings

    weights = root / "leaky-tuned" / "LABEL" / "encoder.safetensors"
    _cli("finetune", "--images", images, "--image-table", table, *_tuning(epochs, blocks, lr), "--out", root / "leaky-tuned")
    kept = json.loads((weights.parent / "finetune.json").read_text())["best_epoch"]
    res = CliRunner().invoke(app, ["--quiet", "cells", "--images", str(images), "--image-table", str(table), "--encoder",
                                   SMALL, "--weights", str(weights), "--unit", "nuclei", "--unit-size", "32", "--bag",
                                   "well", "--out", str(root / "leaky-cells")])
    assert res.exit_code == 0, res.output
    bags = root / "leaky-cells" / "bags.csv"
    cohort = build_cohort(root / "leaky-cells" / "features", bags, bags, target="LABEL", patient_col="BAG")
    from slidepredict.cohort.groups import with_groups

    cohort = with_groups(cohort, "WELL", bags, "BAG")
    blind = {p: tuple(dataclasses.replace(s, tuned_on=False) for s in ss) for p, ss in cohort.slides.items()}
    settings = TrainingSettings(targets=["LABEL"], steps=300, min_steps=100, val_every=25, folds=3, group="WELL")
    preds = folds.crossval(dataclasses.replace(cohort, slides=blind), root / "leaky-cv", settings, folds=3)
    return {"AUROC": _auroc(preds), "kept epoch": kept}


def cost(n_units: int = 128) -> dict[str, float]:
    """Units/s of one tuning epoch of resnet50-trunc's layer3 against its embedding rate on the same crops."""
    from slidepredict.cells.finetune import Units, train_blocks
    from slidepredict.cells.settings import FinetuneSettings
    from slidepredict.features import ExtractSettings, get_encoder
    from slidepredict.features._builder import Encoder, encoder_hash, load_backbone, wrap_backbone
    from slidepredict.features._weights import resolve_weights
    from slidepredict.features.extraction import Runner

    cfg = get_encoder("resnet50-trunc")
    resolved = resolve_weights(cfg, "random")
    backbone = load_backbone(cfg, resolved)
    runner = Runner(Encoder(cfg, wrap_backbone(backbone, cfg), resolved, encoder_hash(cfg, resolved)),
                    ExtractSettings(encoder="resnet50-trunc", precision="fp32"))
    rng = np.random.default_rng(0)
    units = Units(rng.integers(0, 255, (n_units, 48, 48, 3), dtype=np.uint8), rng.integers(0, 2, n_units), np.zeros(n_units, int))
    from slidepredict.cells.units import resize_square

    x = torch.from_numpy(np.stack([resize_square(c, 224) for c in units.crops]))
    t0 = time.perf_counter()
    for i in range(0, n_units, 32):
        runner.forward(x[i : i + 32])
    embed = n_units / (time.perf_counter() - t0)
    took = {}
    for epochs in (1, 2):  # the difference is one epoch; the rest is the head's fit on untuned embeddings
        start = {k: v.clone() for k, v in backbone.state_dict().items()}
        t0 = time.perf_counter()
        train_blocks(runner, backbone, 1, units, None, 2, FinetuneSettings(epochs=epochs, batch_size=32), 0)
        took[epochs] = time.perf_counter() - t0
        backbone.load_state_dict(start)
    epoch = took[2] - took[1]
    return {"embed units/s": embed, "tune units/s (one epoch)": n_units / epoch, "tune/embed": n_units / epoch / embed,
            "head fit, in epochs": (took[1] - epoch) / epoch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wells", type=int, default=36)
    ap.add_argument("--purity", type=float, nargs="+", default=[0.2, 0.1, 0.05])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4, help="--tune-lr of the purity rows (the default)")
    ap.add_argument("--leak-lr", type=float, default=1e-3, help="--tune-lr of the shuffled rows (to memorise)")
    ap.add_argument("--leak-epochs", type=int, default=30, help="tuning long enough to memorise (shuffled rows)")
    ap.add_argument("--leak-blocks", type=int, default=3)
    ap.add_argument("--skip-cost", action="store_true")
    args = ap.parse_args()
    _register()
    torch.set_num_threads(os.cpu_count() or 1)
    wells = tuple(f"{'ABCDEFGH'[i // 12]}{i % 12 + 1:02d}" for i in range(args.wells))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    result: dict[str, object] = {}
    show = lambda d: ", ".join(f"{k} {v:.3f}" for k, v in d.items())  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for purity in args.purity:
            made = make_cell_images(root / f"data-{purity}", CellImageSpec(
                wells=wells, images_per_well=2, classes=("round", "fragmented"), cells=(12, 20), purity=purity, seed=5))
            t0 = time.perf_counter()
            row = tuned_vs_frozen(root, f"real-{purity}", made.table, made.root / "images", args.epochs, 1, args.lr)
            print(f"apoptotic vs alive, {args.wells} wells, purity {purity}: AUROC {show(row)} "
                  f"({time.perf_counter() - t0:.0f} s)")
            result[f"purity {purity}"] = row
        table = pd.read_csv(made.table)
        per_well = table.groupby("WELL").LABEL.first()
        shuffled = dict(zip(per_well.index, np.random.default_rng(0).permutation(per_well.to_numpy())))
        table.assign(LABEL=table.WELL.map(shuffled)).to_csv(root / "shuffled.csv", index=False)
        honest = tuned_vs_frozen(root, "shuffled", root / "shuffled.csv", made.root / "images", args.leak_epochs,
                                 args.leak_blocks, args.leak_lr)
        print(f"shuffled labels, {args.leak_blocks} blocks x {args.leak_epochs} epochs tuned per fold: AUROC {show(honest)}")
        leak = leaky(root, root / "shuffled.csv", made.root / "images", args.leak_epochs, args.leak_blocks, args.leak_lr)
        print(f"shuffled labels, the same tuning on every image, guard off: {show(leak)}")
        result.update(shuffled=honest, leaky=leak)
    if not args.skip_cost:
        c = cost()
        print("resnet50-trunc, layer3, fp32: " + ", ".join(f"{k} {v:.1f}" if "/s" in k else f"{k} {v:.2f}" for k, v in c.items()))
        result["cost"] = c
    print(json.dumps(result))


if __name__ == "__main__":
    main()
