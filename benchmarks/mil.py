"""MIL training at cohort scale: seconds per epoch and peak RSS, with bags read from h5 on disk.

Generates ``--patients`` x ``--tiles`` x ``--dim`` features (float16 on disk by default: 8.2 GB
for the 1,000 x 4,000 x 1,024 default instead of 16.4 GB) with ``tests/fakecohort.py``, then, in
a fresh child process so that generation does not count towards peak RSS:

- I/O reference: one pass of the training loader (sampled bags, same batch size) without a model;
- compute reference: the same number of optimiser steps on one in-memory batch of the same shape;
- training: ``slidepredict.training.fitting`` (Lightning, early stopping, inner validation split of
  20% of the patients on complete bags) for ``--epochs`` passes over the training patients (in
  optimiser steps, validating once per pass), timed per pass by a callback.

Usage::

    python benchmarks/mil.py [--patients 1000 --tiles 4000 --dim 1024 --epochs 3 --data DIR --keep]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_rss_gib() -> float:
    """Peak RSS of this process image (VmHWM); ru_maxrss would carry over the generating parent's peak."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # not Linux: KiB as well


def generate(data: Path, args: argparse.Namespace) -> float:
    sys.path.insert(0, str(ROOT / "tests"))
    from fakecohort import make_feature_cohort

    t0 = time.perf_counter()
    make_feature_cohort(data, n_patients=args.patients, n_tiles=args.tiles, dim=args.dim, seed=0,
                        signal_fraction=0.1, dtype=args.dtype)
    return time.perf_counter() - t0


def measure(data: Path, args: argparse.Namespace) -> dict[str, float]:
    """Runs in the child process: everything here counts towards peak RSS."""
    import lightning as L
    import torch

    from slidepredict.cohort import build_cohort
    from slidepredict.mil import create_mil
    from slidepredict.core.progress import set_quiet
    from slidepredict.training import TrainSettings, fit
    from slidepredict.training.data import bag_loader

    set_quiet(True)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cohort = build_cohort(data / "features", data / "slides.csv", data / "clini.csv", target="TARGET")
    build_s = time.perf_counter() - t0
    n_train = len(cohort) - max(2, round(0.2 * len(cohort)))  # as fit's inner split
    steps = -(-n_train // args.batch_size)
    # Training is defined in steps; one validation per pass over the training patients keeps "epochs" timeable.
    config = TrainSettings(model=args.model, steps=args.epochs * steps, min_steps=args.epochs * steps, val_every=steps,
                           patience=args.epochs, bag_size=args.bag_size, batch_size=args.batch_size,
                           workers=args.workers, lr=1e-4)

    train_part = cohort.subset(cohort.patients[:n_train])
    head = create_mil(args.model, args.dim, 2)
    opt = torch.optim.AdamW(head.parameters())
    x = torch.randn(args.batch_size, args.bag_size, args.dim)
    mask = torch.ones(args.batch_size, args.bag_size, dtype=torch.bool)
    y = torch.arange(args.batch_size) % 2

    def io_pass() -> float:
        t0 = time.perf_counter()
        for _ in bag_loader(train_part, train=True, bag_size=args.bag_size, batch_size=args.batch_size,
                            num_workers=args.workers):
            pass
        return time.perf_counter() - t0

    def compute_pass() -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = head.loss(head(x, None, mask), y, mask, None)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return time.perf_counter() - t0

    class EpochTimer(L.Callback):
        def __init__(self) -> None:
            self.train: list[float] = []
            self.val: list[float] = []

        def on_train_epoch_start(self, *_: object) -> None:
            self._t = time.perf_counter()

        def on_validation_epoch_start(self, *_: object) -> None:
            self.train.append(time.perf_counter() - self._t)  # Lightning validates inside the train epoch
            self._v = time.perf_counter()

        def on_validation_epoch_end(self, *_: object) -> None:
            self.val.append(time.perf_counter() - self._v)

    io_s, compute_s = [io_pass()], [compute_pass()]  # before and after training: noise shows as spread
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as tmp:
        fit(cohort, config, Path(tmp) / "model.ckpt", callbacks=[timer])
    io_s.append(io_pass())
    compute_s.append(compute_pass())
    train_s = min(timer.train)
    return {
        "patients": len(cohort), "train_patients": n_train, "steps_per_epoch": steps,
        "cohort_build_s": build_s, "io_pass_s": min(io_s), "compute_pass_s": min(compute_s),
        "io_pass_s_all": io_s, "compute_pass_s_all": compute_s, "train_epoch_s_all": timer.train,
        "train_epoch_s": train_s, "train_epoch_s_per_1000_patients": train_s * 1000 / n_train,
        "val_complete_bags_s": min(timer.val), "val_patients": len(cohort) - n_train,
        "ratio_epoch_to_io_plus_compute": train_s / (min(io_s) + min(compute_s)),
        "peak_rss_gib": _peak_rss_gib(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--tiles", type=int, default=4000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    ap.add_argument("--model", default="attention")
    ap.add_argument("--bag-size", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", type=Path, default=None, help="Folder for the generated cohort (default: a temp folder).")
    ap.add_argument("--keep", action="store_true", help="Keep the generated data for another run.")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    data = args.data or Path(tempfile.mkdtemp(prefix="slidepredict-mil-bench-"))
    if args.child:
        print(json.dumps(measure(data, args)))
        return
    try:
        gen_s = 0.0
        if not (data / "clini.csv").is_file():
            gen_s = generate(data, args)
        disk_gb = sum(p.stat().st_size for p in (data / "features").glob("*.h5")) / 1e9
        child = [sys.executable, __file__, "--child", "--data", str(data)] + [
            a for a in sys.argv[1:] if a not in ("--keep",)]
        out = subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        res = json.loads(out)
        res.update(generate_s=gen_s, disk_gb=disk_gb)
        print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
              f"{args.patients} x {args.tiles} x {args.dim} {args.dtype}, model {args.model}, "
              f"bag {args.bag_size}, batch {args.batch_size}, threads {args.threads}, workers {args.workers}")
        for k, v in res.items():
            shown = f"{v:.3f}" if isinstance(v, float) else [round(x, 2) for x in v] if isinstance(v, list) else v
            print(f"{k:36s} {shown}")
    finally:
        if not args.keep and args.data is None:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
