"""Heatmaps benchmark: peak memory and time of `heatmaps` on a large generated slide, against a small one.

A 60,000 x 40,000 px pyramidal TIFF (0.25 um/px, 2.4 gigapixels, 7.2 GB decoded) is written
tile by tile, so generating it needs no more memory than one tile; a feature file with one
1,024-dimensional random feature per tissue tile and a random-init attention model complete the
inputs. Each heatmaps run happens in its own process, whose peak resident memory (VmHWM from
/proc/self/status; ru_maxrss would carry over the generating parent's peak) is the figure. The reference, in the same run, is the same pipeline on a 6,000 x 4,000 px slide
generated the same way: if memory is bounded by the thumbnail and not the slide, the two peaks
match although the slide is 100 times larger. Time is reported relative to reading the
thumbnail alone, the one step that has to touch the slide's pyramid.

Run: ``python benchmarks/heatmaps.py [--width 60000 --height 40000] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MPP = 0.25
TILE = 512  # TIFF tile edge
TILE_UM = 128.0  # feature tile edge in microns (512 level-0 px at 0.25 um/px)
DIM = 1024  # feature size of a typical pathology foundation model


def _texture(rng: np.random.Generator) -> np.ndarray:
    """One H&E-pink tile with nuclei-like dark dots, reused for every tissue tile (generation stays cheap)."""
    yy, xx = np.mgrid[0:TILE, 0:TILE].astype(np.float32)
    rgb = np.empty((TILE, TILE, 3), dtype=np.float32)
    rgb[:] = (232, 160, 200)
    rgb += (8 * np.sin(xx / 7.0) * np.cos(yy / 11.0))[..., None]
    for cy, cx in rng.integers(0, TILE, size=(60, 2)):
        d = (yy - cy) ** 2 + (xx - cx) ** 2
        rgb[d < 36] = (90, 60, 150)
    return rgb.clip(0, 255).astype(np.uint8)


def _tissue(x: np.ndarray, y: np.ndarray, w: int, h: int) -> np.ndarray:
    """Two overlapping ellipses in level-0 coordinates: the 'tissue' of the generated slide."""
    a = ((x - 0.38 * w) / (0.30 * w)) ** 2 + ((y - 0.5 * h) / (0.40 * h)) ** 2 < 1
    b = ((x - 0.68 * w) / (0.22 * w)) ** 2 + ((y - 0.45 * h) / (0.30 * h)) ** 2 < 1
    return a | b


def _tiles(w: int, h: int, ds: int, texture: np.ndarray):
    """Tiles of the level with downsample ``ds``, row by row, as tifffile's tile iterator expects."""
    white = np.full((TILE, TILE, 3), 244, dtype=np.uint8)
    lw, lh = -(-w // ds), -(-h // ds)
    for ty in range(0, lh, TILE):
        for tx in range(0, lw, TILE):
            ys = (ty + np.arange(0, TILE, 16, dtype=np.float64)) * ds
            xs = (tx + np.arange(0, TILE, 16, dtype=np.float64)) * ds
            coarse = _tissue(xs[None, :], ys[:, None], w, h)
            if coarse.all():
                yield texture
            elif not coarse.any():
                yield white
            else:  # edge tile: mask at 16 px resolution is plenty for a benchmark
                mask = np.repeat(np.repeat(coarse, 16, 0), 16, 1)[..., None]
                yield np.where(mask, texture, white)


def make_big_slide(path: Path, w: int, h: int) -> Path:
    """Tiled, JPEG-compressed pyramidal TIFF with resolution tags, written without holding any level in memory."""
    import tifffile

    texture = _texture(np.random.default_rng(0))
    res = 1e4 / MPP
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        ds = 1
        while True:
            lw, lh = -(-w // ds), -(-h // ds)
            tif.write(_tiles(w, h, ds, texture), shape=(lh, lw, 3), dtype=np.uint8, tile=(TILE, TILE),
                      photometric="rgb", compression="jpeg", resolution=(res / ds, res / ds),
                      resolutionunit="CENTIMETER", subfiletype=0 if ds == 1 else 1, metadata=None)
            if max(lw, lh) <= 2 * TILE:
                break
            ds *= 2
    return path


def make_inputs(root: Path, w: int, h: int) -> tuple[Path, Path, Path]:
    """Slide, feature file (coords of every tissue tile) and a random-init attention model."""
    from slidepredict.featurefile import FeatureSpec, write_h5_atomic
    from slidepredict.mil import create_mil
    from slidepredict.training import ModelMeta, save_checkpoint

    name = f"big-{w}x{h}"
    (root / "slides").mkdir(parents=True, exist_ok=True)
    slide = make_big_slide(root / "slides" / f"{name}.tif", w, h)
    size0 = int(round(TILE_UM / MPP))
    xs, ys = np.meshgrid(np.arange(0, w, size0), np.arange(0, h, size0))
    coords = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.int64)
    coords = coords[_tissue(coords[:, 0] + size0 / 2, coords[:, 1] + size0 / 2, w, h)]
    feats = np.random.default_rng(1).normal(size=(len(coords), DIM)).astype(np.float32)
    spec = FeatureSpec(encoder="bench", encoder_hash="bench", dim=DIM, tile_size_um=TILE_UM, tile_size_px=224)
    attrs = {"encoder": "bench", "encoder_hash": "bench", "tile_size_um": TILE_UM, "tile_size_px": 224,
             "tile_size_level0": size0, "mpp": MPP, "slide_width": w, "slide_height": h}
    write_h5_atomic(root / "features" / f"{name}.h5", {"features": feats, "coords": coords}, attrs)
    head = create_mil("attention", DIM, 2)
    meta = ModelMeta(model="attention", model_hparams=dict(head.hparams), target="MSI", categories=["MSS", "MSI"],
                     features=spec.to_dict(), train_patients=["bench"])
    model = save_checkpoint(root / f"{name}.ckpt", head.state_dict(), meta, {})
    return slide, root / "features", model


CHILD = """
import json, sys, time

def hwm():
    # peak RSS of this process image in KiB; unlike ru_maxrss it does not inherit the parent's peak across fork/exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

from pathlib import Path
mode, model, slides, features, out, name = sys.argv[1:]
import torch
torch_only = hwm()
from slidepredict.heatmaps import heatmaps
from slidepredict.slide import open_slide
from slidepredict.training import load_model
loaded = load_model(model)
base = hwm()
t0 = time.perf_counter()
if mode == "thumbnail":
    with open_slide(next(Path(slides).glob(name + ".*"))) as s:
        s.thumbnail(2048)
    n = 1
else:
    n = len(heatmaps(loaded, slides, features, out, slides=[name], topk=8))
dt = time.perf_counter() - t0
peak = hwm()
print(json.dumps({"seconds": dt, "peak_mib": peak / 1024, "baseline_mib": base / 1024,
                  "torch_mib": torch_only / 1024, "ok": n == 1}))
"""


def measure(mode: str, model: Path, slides: Path, features: Path, out: Path, name: str) -> dict[str, float]:
    """One fresh process per measurement, so VmHWM is that run's peak alone."""
    res = subprocess.run([sys.executable, "-c", CHILD, mode, str(model), str(slides), str(features), str(out), name],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=60_000)
    ap.add_argument("--height", type=int, default=40_000)
    ap.add_argument("--keep", type=Path, help="Folder to keep the generated inputs and outputs in.")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="slidepredict-bench-heatmaps-"))
    rows = []
    for w, h in [(args.width // 10, args.height // 10), (args.width, args.height)]:
        t0 = time.perf_counter()
        slide, features, model = make_inputs(root, w, h)
        gen = time.perf_counter() - t0
        name = slide.stem
        thumb = measure("thumbnail", model, slide.parent, features, root / "out", name)
        hm = measure("heatmaps", model, slide.parent, features, root / "out", name)
        n_tiles = json.loads((root / "out" / name / "heatmaps.json").read_text())["n_tiles"]
        rows.append((w, h, slide.stat().st_size / 2**20, gen, n_tiles, hm, thumb))
    print("| slide (px) | file (MiB) | tissue tiles | peak RSS (MiB) | after `import torch` (MiB) "
          "| before heatmaps (MiB) | heatmaps' own (MiB) | peak - torch (MiB) | heatmaps (s) | thumbnail alone (s) "
          "| time ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for w, h, mib, _gen, n, hm, th in rows:
        own = hm["peak_mib"] - hm["baseline_mib"]
        print(f"| {w:,} x {h:,} | {mib:.0f} | {n:,} | {hm['peak_mib']:.0f} | {hm['torch_mib']:.0f} "
              f"| {hm['baseline_mib']:.0f} | {own:.0f} | {hm['peak_mib'] - hm['torch_mib']:.0f} "
              f"| {hm['seconds']:.1f} | {th['seconds']:.1f} | {hm['seconds'] / th['seconds']:.1f} |")
    own_small, own_big = (r[5]["peak_mib"] - r[5]["baseline_mib"] for r in rows)
    big = rows[1][5]
    print(f"\nheatmaps' own peak memory, large / small slide: {own_big / max(own_small, 1):.2f} (slide area ratio 100)")
    print(f"large slide: heatmaps {own_big:.0f} MiB; everything above `import torch` {big['peak_mib'] - big['torch_mib']:.0f} "
          f"MiB (goal < 1024); absolute peak {big['peak_mib']:.0f} MiB")
    print(f"generation: {rows[0][3]:.0f} s and {rows[1][3]:.0f} s")
    print(f"inputs and outputs in {root}")


if __name__ == "__main__":
    main()
