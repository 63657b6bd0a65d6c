"""Cells per second: embedding and classification of a generated screen, and what 10^8 cells would take.

A screen plate of generated fluorescence images (``slidepredict.demo.screen``: 40 wells x 2 images,
26-32 nuclei each) is put through the stages a screen runs, each timed on this machine:

- **read + detect** (the reference): read the 16-bit image, normalise it, find the nuclei
  (``load_rgb`` + ``make_units``): what every embedding has to do before any model runs;
- **embed**: the `cells` stage itself (``embed_cohort``: read, detect, crop, encode, write one h5
  per image) with the weight-free ``stain-texture`` encoder and with ``resnet50-trunc`` (random
  weights; a timm CNN as the transfer-learning papers use) in fp32 and bf16; for the CNN also its
  model-only rate on the same crops in memory, so the end-to-end / model-only ratio shows the
  overhead of everything around the encoder;
- **classify**: `deploy` of a tile-vote head (trained on the reference plate's cells; training is
  not timed) over the screen's feature files, a probability per cell and per well.

Rates are cells per second of wall time, best of ``--repeats``. The projection for 10^8 cells
assumes what the workflow does: plates are independent jobs (no communication), so N nodes like
this one process N times as many cells; it is a division of measured figures, not a measurement.
Usage::

    python benchmarks/cells.py [--repeats 2] [--cnn-images 16]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from slidepredict.cells.extract import embed_cohort
from slidepredict.cells.images import Normalisation, load_rgb
from slidepredict.cells.table import read_image_table
from slidepredict.cells.units import UnitSettings, crop, make_units
from slidepredict.config import parse_config
from slidepredict.demo.screen import ScreenSpec, make_screen
from slidepredict.features import ExtractSettings, load_encoder
from slidepredict.features.extraction import Runner
from slidepredict.pipeline import stages

CELLS = 1e8
NODES = (1, 10, 100)
UNITS = UnitSettings(kind="nuclei", size=48)


def _best(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Best wall time of ``repeats`` calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def read_and_detect(paths: list[Path], norm: Normalisation) -> int:
    return sum(len(make_units(load_rgb(p, norm), p, p.name, UNITS)) for p in paths)


def embed(cohort, out: Path, runner: Runner, norm: Normalisation) -> None:  # type: ignore[no-untyped-def]
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    embed_cohort(cohort, out, runner, UNITS, norm, bag="well")


def model_only(runner: Runner, crops: list[torch.Tensor]) -> None:
    for b in crops:
        runner.forward(b)


def classify(root: Path, features: Path, bags: Path, model: Path, out: Path, training) -> None:  # type: ignore[no-untyped-def]
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    cfg = parse_config({"output_dir": str(root), "cohort": {"slides_dir": str(root), "patient_col": "BAG"},
                        "deploy": {"slides_dir": str(root), "slide_table": str(bags)}}, "benchmark")
    assert cfg.deploy is not None
    stages.deploy([model], features, out, cfg.cohort, cfg.deploy, training, cfg.stats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cnn-images", type=int, default=16, help="images embedded with the CNN (it is slow on 2 cores)")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {time.strftime('%Y-%m-%d')}, load average at start "
          f"{os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made = make_screen(root / "data", ScreenSpec())
        cohort = read_image_table(made.screen, made.root / "screen")
        norm = Normalisation(ranges=((207.0, 2806.0),))  # one fixed range, as a screen is embedded
        paths = [Path(p) for p in cohort.table["path"]]
        n = read_and_detect(paths, norm)
        rows = [("read + detect", n, _best(lambda: read_and_detect(paths, norm), args.repeats), None)]

        stain = Runner(load_encoder("stain-texture"), ExtractSettings(batch_size=args.batch_size))
        rows.append(("embed, stain-texture", n, _best(lambda: embed(cohort, root / "st", stain, norm), args.repeats), None))

        few = replace(cohort, table=cohort.table.iloc[: args.cnn_images].reset_index(drop=True))
        few_paths = [Path(p) for p in few.table["path"]]
        m = read_and_detect(few_paths, norm)
        for precision in ("fp32", "bf16"):
            cnn = Runner(load_encoder("resnet50-trunc", weights="random"),
                         ExtractSettings(batch_size=args.batch_size, precision=precision))
            px = int(cnn.encoder.cfg.input_px)
            crops = []
            for p in few_paths:
                rgb = load_rgb(p, norm)
                crops += [crop(rgb, b, px) for b in make_units(rgb, p, p.name, UNITS)]
            batches = [torch.from_numpy(np.stack(crops[i : i + args.batch_size]))
                       for i in range(0, len(crops), args.batch_size)]
            cnn.forward(batches[0])  # warm-up: oneDNN builds its kernels on the first call
            ref = _best(lambda: model_only(cnn, batches), args.repeats)
            rows.append((f"embed, resnet50-trunc {precision}", m,
                         _best(lambda: embed(few, root / f"cnn-{precision}", cnn, norm), args.repeats), ref))

        ref_cohort = read_image_table(made.reference, made.root / "reference")
        embed_cohort(ref_cohort, root / "ref", stain, UNITS, norm, bag="well")
        cfg = parse_config({"output_dir": str(root), "cohort": {"slides_dir": str(root), "patient_col": "BAG"},
                            "training": {"targets": ["MODE"], "model": "tile-vote", "steps": 300, "min_steps": 100}},
                           "benchmark")
        assert cfg.training is not None
        cohort_cfg = cfg.cohort.model_copy(update={"clini_table": root / "ref" / "bags.csv",
                                                   "slide_table": root / "ref" / "bags.csv"})
        stages.train(root / "ref" / "features", root / "model", cohort_cfg, cfg.training)
        model = root / "model" / "MODE" / "model.ckpt"
        bags = root / "st" / "bags.csv"
        rows.append(("classify (deploy, tile-vote)", n,
                     _best(lambda: classify(root, root / "st" / "features", bags, model, root / "dep", cfg.training), args.repeats), None))
        wells = len(pd.read_csv(bags).BAG.unique())

    print(f"\n{len(paths)} images, {wells} wells, {n} cells (CNN rows: the first {args.cnn_images} images, {m} cells)\n")
    print("| step | cells | wall (s) | cells/s | model-only cells/s | end-to-end / model-only |")
    print("|---|---|---|---|---|---|")
    rate = {}
    for name, cells, wall, ref in rows:
        rate[name] = cells / wall
        extra = f"{cells / ref:.0f} | {ref / wall:.2f}" if ref else "- | -"
        print(f"| {name} | {cells} | {wall:.2f} | {rate[name]:.0f} | {extra} |")
    classify_rate = rate["classify (deploy, tile-vote)"]
    print(f"\nProjection: {CELLS:.0e} cells, embed then classify, plates as independent jobs on N nodes like this one\n")
    print("| encoder | cells/s per node (embed + classify) | " + " | ".join(f"{k} node(s)" for k in NODES) + " |")
    print("|---|---|" + "---|" * len(NODES))
    for name in [r[0] for r in rows if r[0].startswith("embed")]:
        per_node = 1.0 / (1.0 / rate[name] + 1.0 / classify_rate)
        print(f"| {name.removeprefix('embed, ')} | {per_node:.0f} | "
              + " | ".join(_duration(CELLS / (per_node * k)) for k in NODES) + " |")
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


def _duration(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"


if __name__ == "__main__":
    main()
