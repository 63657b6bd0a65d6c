"""Feature extraction throughput: end-to-end `extract` vs the model-only forward rate, same run.

For each slide (the real CMU-1-Small-Region.svs and a generated 4096x3072 slide) and each
precision (fp32, bf16), with the same encoder, batch size and thread count:

- model-only: ``Runner.forward`` on tiles already decoded and batched in memory (the
  ceiling: nothing but the encoder runs);
- end-to-end: ``extract_slide`` on the slide with its coordinates in place: DataLoader
  workers decode and resize every tile from the slide while the model runs, then the
  h5 file is written atomically (the output is deleted between repeats).

The two are interleaved repeat by repeat so that machine noise hits both; the ratio of
their best rates is reported. Usage::

    python benchmarks/extraction.py [--encoder resnet50-trunc] [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from slidepredict.demo.synthetic import make_slide
from slidepredict.featurefile import default_coords_dir, load_coords, slide_h5_path
from slidepredict.features import ExtractSettings, load_encoder
from slidepredict.features.extraction import Runner, auto_workers, extract_slide
from slidepredict.slide import open_slide
from slidepredict.tiling import TilingSettings, tile_slide

CMU = Path(__file__).resolve().parents[1] / "tests" / "data" / "CMU-1-Small-Region.svs"
CLAM_FP32_TILES_PER_S = 15.7  # CLAM's extraction of ResNet-50-trunc on this 2-core machine (issue 3)


def _decoded_batches(slide_path: Path, coords: np.ndarray, tiling: TilingSettings, batch_size: int) -> list[torch.Tensor]:
    with open_slide(slide_path) as slide:
        tiles = np.stack([slide.read_region_at(x, y, tiling.tile_um, tiling.tile_px) for x, y in coords])
    return [torch.from_numpy(tiles[i : i + batch_size]) for i in range(0, len(tiles), batch_size)]


def _model_only(runner: Runner, batches: list[torch.Tensor]) -> float:
    t0 = time.perf_counter()
    for b in batches:
        runner.forward(b)
    return sum(len(b) for b in batches) / (time.perf_counter() - t0)


def _end_to_end(runner: Runner, slide_path: Path, out: Path, tiling: TilingSettings, n: int) -> float:
    slide_h5_path(out, slide_path).unlink(missing_ok=True)
    t0 = time.perf_counter()
    extract_slide(slide_path, out, runner, tiling, default_coords_dir(out))
    return n / (time.perf_counter() - t0)


def bench_slide(slide_path: Path, args: argparse.Namespace, out: Path) -> list[dict]:
    tiling = TilingSettings(tile_um=args.tile_um, tile_px=224, qc=False)
    tile_slide(slide_path, default_coords_dir(out), tiling)
    coords, _ = load_coords(slide_h5_path(default_coords_dir(out), slide_path))
    batches = _decoded_batches(slide_path, coords, tiling, args.batch_size)
    rows = []
    for precision in ("fp32", "bf16"):
        params = ExtractSettings(batch_size=args.batch_size, workers=args.workers, precision=precision, threads=args.threads)
        runner = Runner(load_encoder(args.encoder, weights="random"), params)
        runner.forward(batches[0])  # warm-up: oneDNN builds its kernels on the first call
        model, e2e = [], []
        for rep in range(args.repeats):  # alternate which goes first, so drifting load hits both alike
            if rep % 2:
                e2e.append(_end_to_end(runner, slide_path, out, tiling, len(coords)))
            model.append(_model_only(runner, batches))
            if not rep % 2:
                e2e.append(_end_to_end(runner, slide_path, out, tiling, len(coords)))
        rows.append({
            "slide": slide_path.name, "tiles": len(coords), "precision": precision,
            "model": max(model), "e2e": max(e2e), "ratio": max(e2e) / max(model),
        })
        print(f"{rows[-1]['slide']:<28} {len(coords):>5} {precision:>5}  model-only {max(model):6.1f} tiles/s  "
              f"end-to-end {max(e2e):6.1f} tiles/s  ratio {rows[-1]['ratio']:.2f}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", default="resnet50-trunc")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="default: the same auto choice as `extract`")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the model (default: torch's)")
    ap.add_argument("--tile-um", type=float, default=112.0, help="112 um = 224 px at 0.5 um/px, no resampling")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"encoder {args.encoder}, batch {args.batch_size}, "
          f"workers {'auto (%d)' % auto_workers(torch.device('cpu')) if args.workers is None else args.workers}, "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        synthetic = make_slide(out / "synthetic.tiff", seed=0).path
        rows = [r for slide in (CMU, synthetic) for r in bench_slide(slide, args, out)]
    for prec in ("fp32", "bf16"):
        ratios = [r["ratio"] for r in rows if r["precision"] == prec]
        print(f"{prec}: geometric mean end-to-end / model-only = {float(np.exp(np.mean(np.log(ratios)))):.2f}")
    best_bf16 = max(r["e2e"] for r in rows if r["precision"] == "bf16")
    print(f"bf16 end-to-end vs CLAM fp32 ({CLAM_FP32_TILES_PER_S} tiles/s): {best_bf16 / CLAM_FP32_TILES_PER_S:.1f}x; "
          f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
