"""Tissue stage speed against an earlier version of slidepredict, in the same run.

The reference is the same repository at another commit (``--ref``, default: the last commit
before ink detection and IHC tissue detection were added), checked out into a temporary git
worktree. For every real slide both versions plan the tiles (tissue mask, ink, tile checks: the
whole tissue stage, no pixel reads at tile resolution) in fresh processes, interleaved, and the
best of ``--repeats`` in-process runs counts. Goal: new / reference <= 1.5 on every slide.
Run: ``python benchmarks/tissue_speed.py [--ref REV] [--rounds 3] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SLIDES = [  # (file, MPP for files that record none)
    ("CMU-1-Small-Region.svs", None),
    ("tcga-cr-7395-01a-01-ts1.svs", 0.5),
    ("test3-DAPI-2-(387).ndpi", None),
    ("OS-1-detail.ome.tif", None),
    ("qc/OS-2-ndpi.ome.tif", None),
    ("qc/slide_with_ink.jpeg", 2.0),
    ("qc/tcga-red-pen.png", 2.0),
    ("qc/tcga-green-pen.png", 2.0),
]
CHILD = """
import json, sys, time
from slidepredict.slide import open_slide
from slidepredict.tiling.grid import _plan
from slidepredict.tiling.settings import TilingSettings
path, mpp, repeats = sys.argv[1], (None if sys.argv[2] == "none" else float(sys.argv[2])), int(sys.argv[3])
best, n = float("inf"), 0
for _ in range(repeats):
    t0 = time.perf_counter()
    with open_slide(path, mpp=mpp) as slide:
        n = len(_plan(slide, TilingSettings(tile_um=128.0, min_tissue=0.25)).coords)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"seconds": best, "tiles": n}))
"""


def time_in(tree: Path, path: Path, mpp: float | None, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(mpp or "none"), str(repeats)],
                         capture_output=True, text=True, env=env, check=True, cwd=tree)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ref", default="bb86aaf", help="git revision to compare against")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved process pairs per slide")
    ap.add_argument("--repeats", type=int, default=5, help="runs per process (best counts)")
    args = ap.parse_args()
    from tiling import cpu_name  # same folder

    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "ref"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(ref), args.ref],
                       check=True, capture_output=True)
        try:
            print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; reference {args.ref}")
            print("| slide | tiles (ref / new) | reference (s) | new (s) | new / reference |")
            print("|---|---|---|---|---|")
            for name, mpp in SLIDES:
                best = {"ref": float("inf"), "new": float("inf")}
                tiles = {}
                for r in range(args.rounds):
                    order = [("ref", ref), ("new", ROOT)] if r % 2 == 0 else [("new", ROOT), ("ref", ref)]
                    for label, tree in order:
                        res = time_in(tree, DATA / name, mpp, args.repeats)
                        best[label] = min(best[label], res["seconds"])
                        tiles[label] = res["tiles"]
                ratio = best["new"] / best["ref"]
                print(f"| {name} | {tiles['ref']} / {tiles['new']} | {best['ref']:.3f} | {best['new']:.3f} | {ratio:.2f} |")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(ref)], check=False)


if __name__ == "__main__":
    main()
