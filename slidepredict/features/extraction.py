"""Streamed, batched feature extraction: slide -> DataLoader -> encoder -> one h5 per slide.

Tiles are decoded in DataLoader workers (each opens its own slide handle, lazily, in
the worker) while the main process runs the model, so decoding overlaps compute. No
tile image touches the disk. Output files follow docs/formats.md and are written through
:func:`featurefile.write_h5_atomic` under :func:`featurefile.write_once`, so reruns, killed runs
and parallel ``--shard`` jobs sharing one folder are all safe.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from slidepredict.core import batch
from slidepredict.core.errors import ConfigError, SlidePredictError
from slidepredict.features._builder import Encoder, load_encoder
from slidepredict.features.stain_norm import make_stain_normalizer
from slidepredict.core.device import resolve_device
from slidepredict.featurefile import (
    COORDS,
    FEATURE_DATASETS,
    FEATURES,
    clean_partials,
    default_coords_dir,
    feature_attrs,
    load_coords,
    slide_h5_path,
    write_h5_atomic,
    write_once,
)
from slidepredict.features.settings import ExtractSettings
from slidepredict.slide import MPPChoice, Slide, open_slide
from slidepredict.tiling.grid import resolve_tile_px, tile_slide
from slidepredict.tiling.settings import TilingSettings
from slidepredict.core.units import Microns, SlidePixels, TilePixels

log = logging.getLogger("slidepredict")

_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}




def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 where the hardware has it (CUDA Ampere+, CPUs with AVX512-BF16/AMX), else fp16/fp32."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        fast_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return "bf16" if fast_bf16 else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("--precision fp16 needs a CUDA device; on CPUs use bf16 or fp32")
    return precision


def auto_workers(device: torch.device) -> int:
    """Decoder processes when none is asked for.

    On a GPU the model waits for tiles, so decode in parallel. On a CPU a tile decodes in
    about a fifteenth of its forward pass (benchmarks/README.md): with few cores, a worker
    only steals cycles from the model's threads (2 cores: 0.87 of the model-only rate
    inline vs 0.73 with one worker, bf16), so decode inline there.
    """
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return max(1, min(8, cores - 1))
    return 0 if cores <= 4 else 1


class TileDataset(Dataset):
    """Tiles of one slide as uint8 (H, W, 3); the slide opens lazily in whichever process reads."""

    def __init__(self, slide_path: Path, coords: np.ndarray, tile_um: float, tile_px: int, mpp: MPPChoice):
        self.slide_path, self.coords, self.mpp = slide_path, coords, mpp
        self.tile_um, self.tile_px = Microns(tile_um), TilePixels(tile_px)
        self._slide: Slide | None = None

    def __len__(self) -> int:
        return len(self.coords)

    def __getitem__(self, i: int) -> np.ndarray:
        if self._slide is None:  # one handle per worker process, never shared across a fork
            self._slide = open_slide(self.slide_path, mpp=self.mpp)
        x, y = self.coords[i]
        return self._slide.read_region_at(SlidePixels(int(x)), SlidePixels(int(y)), self.tile_um, self.tile_px)

    def close(self) -> None:
        if self._slide is not None:
            self._slide.close()
            self._slide = None


def batch_ranges(n: int, batch_size: int) -> list[range]:
    """Batches over n tiles, the first one short: the model starts after a few tiles are decoded
    instead of a whole batch, which cuts the per-slide pipeline fill time by about 4x."""
    first = min(n, max(1, batch_size // 4))
    return [range(0, first)] + [range(s, min(s + batch_size, n)) for s in range(first, n, batch_size)]


def _stack(tiles: list[np.ndarray]) -> torch.Tensor:
    """One copy into a batch buffer (PIL-backed tiles are read-only, so torch cannot share them)."""
    return torch.from_numpy(np.stack(tiles))


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers only decode; leave the cores to the model


class Runner:
    """An encoder on a device with a precision: turns a :class:`TileDataset` into an (N, D) array."""

    def __init__(self, encoder: Encoder, params: ExtractSettings):
        self.encoder, self.params = encoder, params
        self.device = resolve_device(params.device)
        self.precision = resolve_precision(params.precision, self.device)
        if params.threads:
            torch.set_num_threads(params.threads)
        self.module = encoder.module.to(self.device)

    def autocast(self) -> Any:
        dtype = _AUTOCAST[self.precision]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    @torch.inference_mode()
    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> float32 (B, D) on the CPU."""
        with self.autocast():
            return self.module(tiles.to(self.device, non_blocking=True)).float().cpu()

    def check_tile_size(self, tile_px: int) -> None:
        """One dry batch: a model that needs another input size fails here, in one line, not mid-run."""
        try:
            self.forward(torch.zeros((1, tile_px, tile_px, 3), dtype=torch.uint8))
        except (RuntimeError, AssertionError, ValueError) as exc:
            raise ConfigError(
                f"encoder '{self.encoder.name}' cannot take {tile_px}x{tile_px} tiles "
                f"(use --tile-px {self.encoder.cfg.input_px}): {str(exc).strip().splitlines()[-1][:200]}"
            ) from None

    def run(self, dataset: TileDataset) -> np.ndarray:
        dim = self.encoder.cfg.dim
        if len(dataset) == 0:
            return np.zeros((0, dim), dtype=np.float32)
        workers = auto_workers(self.device) if self.params.workers is None else self.params.workers
        loader = DataLoader(
            dataset,
            batch_sampler=batch_ranges(len(dataset), self.params.batch_size),
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            collate_fn=_stack,
            worker_init_fn=_worker_init if workers else None,
            prefetch_factor=4 if workers else None,
        )
        out = np.empty((len(dataset), dim), dtype=np.float32)
        i = 0
        try:
            for tiles in loader:
                feats = self.forward(tiles)
                out[i : i + len(feats)] = feats.numpy()
                i += len(feats)
        except SlidePredictError as exc:  # re-raised from a worker with its traceback in the message
            last = str(exc).strip().splitlines()[-1]
            raise type(exc)(last.split(": ", 1)[-1] if "Error: " in last else last) from None
        finally:
            dataset.close()
        return out


def extract_slide(
    slide_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    runner: Runner,
    tiling: TilingSettings,
    coords_dir: str | os.PathLike[str],
    stain_norm: str = "none",
    mpp: MPPChoice = None,
) -> str:
    """Features for one slide; returns batch.DONE, SKIPPED (complete and matching) or BUSY (locked)."""
    slide_path = Path(slide_path)
    if tile_slide(slide_path, coords_dir, tiling, mpp=mpp) == batch.BUSY:
        return batch.BUSY  # another process is tiling this slide; a later run picks it up
    coords, cattrs = load_coords(slide_h5_path(coords_dir, slide_path))
    enc = runner.encoder
    attrs = feature_attrs(enc.name, enc.encoder_hash, cattrs, coords, stain_norm)
    target = slide_h5_path(out_dir, slide_path)

    def work() -> None:
        t0 = time.perf_counter()
        dataset = TileDataset(slide_path, coords, float(cattrs["tile_size_um"]), int(cattrs["tile_size_px"]), mpp)
        feats = runner.run(dataset)
        dt = time.perf_counter() - t0
        log.info("%s: %d tiles in %.1f s (%.1f tiles/s)", slide_path.name, len(coords), dt, len(coords) / max(dt, 1e-9))
        extra = {"precision": runner.precision, "weights": enc.weights.source, "n_tiles": len(coords)}
        write_h5_atomic(target, {FEATURES: feats.astype(runner.params.dtype), COORDS: coords}, {**attrs, **extra})

    return write_once(target, attrs, work, FEATURE_DATASETS)


def extract(
    slides: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    settings: ExtractSettings | None = None,
    *,
    tiling: TilingSettings | None = None,
    coords_dir: str | os.PathLike[str] | None = None,
    shard: str | None = None,
    mpp: MPPChoice = None,
) -> batch.BatchResult:
    """Extract features for slides (files or folders) into ``out_dir``; tiles first where needed.

    Coordinates are read from (or written to) ``coords_dir``, by default ``<out_dir>/coords``.
    ``tiling.tile_px`` defaults to the encoder's input size. Weights and settings errors
    are raised before any slide is touched; per-slide errors are collected in the result.
    """
    from slidepredict.features._registry import get_encoder
    from slidepredict.slide import find_slides

    settings = settings or ExtractSettings()
    tiling = resolve_tile_px(tiling or TilingSettings(), get_encoder(settings.encoder).input_px)
    found = find_slides(list(slides), required=True)
    paths = batch.select_shard(found, shard)
    if not paths:
        raise SlidePredictError(f"--shard {shard} selects no slide: there are only {len(found)}")
    normalizer = make_stain_normalizer(settings.stain_norm, settings.stain_ref)
    encoder = load_encoder(settings.encoder, settings.weights, stain_norm=normalizer)
    runner = Runner(encoder, settings)  # fails before any output
    runner.check_tile_size(int(tiling.tile_px))  # type: ignore[arg-type]
    out = batch.check_writable(out_dir)
    coords_dir = batch.check_writable(coords_dir if coords_dir is not None else default_coords_dir(out))
    clean_partials(out)
    tag = normalizer.tag if normalizer is not None else "none"
    return batch.run_per_slide(
        paths,
        lambda p: extract_slide(p, out, runner, tiling, coords_dir, stain_norm=tag, mpp=mpp),
        f"Extracting {settings.encoder} features",
    )
