"""`slidepredict demo`: the whole workflow, offline, on a generated cohort with a planted signal.

A training cohort and a stain-shifted external cohort are generated, then the same
``run_workflow`` a user's config would drive runs with the weight-free ``stain-texture``
encoder, so the demo exercises every stage a real cohort does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from slidepredict.config import RunConfig, parse_config
from slidepredict.pipeline.run import RunContext, run_workflow

log = logging.getLogger("slidepredict")


@dataclass(frozen=True)
class DemoSize:
    """Cohort sizes: big enough for a meaningful CI, small enough for 10 minutes on 2 cores."""

    train_patients: int = 60
    external_patients: int = 30
    folds: int = 4
    steps: int | None = None  # None: the training recipe's default (docs/training.md)
    label_noise: float = 0.1  # positives without the signal, negatives with a little of it


def demo_config(out: Path, size: DemoSize = DemoSize(), seed: int = 0) -> RunConfig:
    """Generate both cohorts under ``out/data`` (once) and return the run's configuration."""
    from slidepredict.demo.synthetic import make_cohort

    data = out / "data"
    cohorts = {}
    for name, n, shift, s in (("train", size.train_patients, 0.0, seed), ("external", size.external_patients, 0.15, seed + 1000)):
        root = data / name
        done = root / "ground_truth.npz"  # written last by make_cohort
        if not done.is_file():
            log.info("generating the %s cohort (%d patients)", name, n)
            make_cohort(root, n_patients=n, seed=s, stain_shift=shift, prefix="EXT" if name == "external" else "TRN",
                        label_noise=size.label_noise)
        cohorts[name] = root
    raw = {
        "output_dir": str(out / "run"),
        "cohort": {
            "slides_dir": str(cohorts["train"] / "slides"),
            "clini_table": str(cohorts["train"] / "clini.csv"),
            "slide_table": str(cohorts["train"] / "slide.csv"),
        },
        # 128 um tiles at 1 um/px: a few dozen per slide, fine enough to see nuclear size (the signal).
        "tiling": {"tile_um": 128, "tile_px": 128},
        "extract": {"encoder": "stain-texture", "batch_size": 64, "workers": 0},
        "training": {"targets": ["MSI"], "model": "attention", "folds": size.folds, "bag_size": 256,
                     **({"steps": size.steps} if size.steps else {})},
        "deploy": {
            "slides_dir": str(cohorts["external"] / "slides"),
            "clini_table": str(cohorts["external"] / "clini.csv"),
            "slide_table": str(cohorts["external"] / "slide.csv"),
        },
        "stats": {"positive": {"MSI": "MSI"}},
        "heatmaps": {"max_slides": 4, "topk": 4},
        "report": {"title": "slidepredict demo: synthetic MSI cohort"},
    }
    return parse_config(raw, "demo configuration")


def run_demo(out: str | Path = "demo-run", size: DemoSize = DemoSize()) -> RunContext:
    """Generate, run every stage, and return the context (headlines and the report path)."""
    out = Path(out).resolve()
    cfg = demo_config(out, size)
    return run_workflow(cfg)
