"""Microscopy images as the encoders want them: 8-bit RGB, each channel scaled by its own percentiles.

A microscope writes 8- or 16-bit files, one channel (a fluorescence stain, brightfield) or RGB,
sometimes a multi-page TIFF with one channel per page. A fluorescence image typically uses a few
hundred of 65,536 grey levels, so a fixed scale would feed the encoder a black tile: each channel is
stretched between its low and high percentile (``low``/``high``, settable), then a single channel
is repeated into grey RGB and two channels fill red and green.

The percentiles come from the whole cohort by default (``scope="cohort"``: pooled pixels of up to
32 images drawn evenly), so one cell looks the same whatever its neighbours are. Per image
(``scope="image"``) a field full of bright apoptotic nuclei is stretched differently from a field of
living cells, and a cell classifier trained on pure wells learned that field-level shift instead of
the cell: on a generated screen every cell of a well with 45% apoptotic cells was called apoptotic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slidepredict.core.errors import SlideError


@dataclass(frozen=True)
class Normalisation:
    """Per-channel percentile stretch; ``channels`` picks (and orders) up to three channels of the file."""

    low: float = 1.0
    high: float = 99.8
    channels: tuple[int, ...] | None = None
    scope: str = "cohort"  # embed_cohort fills ``ranges`` from cohort_ranges; "image" (or no ranges): per image
    ranges: tuple[tuple[float, float], ...] | None = None  # fixed (lo, hi) per chosen channel

    def describe(self) -> str:
        """What the feature files record about it."""
        what = (f"percentile {self.low:g}-{self.high:g} of each image" if self.ranges is None else
                "grey levels " + ", ".join(f"{lo:g}-{hi:g}" for lo, hi in self.ranges))
        return f"{what}, channels {list(self.channels or [])}"


def read_image(path: Path) -> np.ndarray:
    """(H, W, C) in the file's own dtype; a multi-page TIFF's pages become channels."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                pages = [p.asarray() for p in tif.pages]
            arr = pages[0] if len(pages) == 1 else _stack_pages(pages, path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB") if im.mode in ("P", "RGBA", "LA", "CMYK") else im)
    except (OSError, ValueError) as exc:
        raise SlideError(f"{path}: cannot be read as an image ({exc})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise SlideError(f"{path}: expected a 2-D image with channels, got shape {arr.shape}")
    if arr.shape[0] <= 4 < arr.shape[2]:  # channels-first (C, H, W) as some TIFF writers store it
        arr = np.moveaxis(arr, 0, -1)
    return arr


def _stack_pages(pages: list[np.ndarray], path: Path) -> np.ndarray:
    if any(p.shape != pages[0].shape or p.ndim != 2 for p in pages):
        raise SlideError(f"{path}: a multi-page TIFF needs single-channel pages of one size to be read as "
                         f"channels (got {[p.shape for p in pages][:4]})")
    return np.stack(pages, -1)


def _channels(arr: np.ndarray, norm: Normalisation, path: Path) -> np.ndarray:
    chosen = norm.channels if norm.channels is not None else tuple(range(min(arr.shape[2], 3)))
    if max(chosen) >= arr.shape[2]:
        raise SlideError(f"{path}: has {arr.shape[2]} channel(s); channels {list(chosen)} were asked for")
    return arr[:, :, list(chosen)].astype(np.float32)


def cohort_ranges(paths: list[Path], norm: Normalisation, images: int = 32, pixels: int = 65_536,
                  seed: int = 0) -> tuple[tuple[float, float], ...]:
    """Per channel, the ``low``/``high`` percentiles of pixels pooled from up to ``images`` images drawn evenly."""
    rng = np.random.default_rng(seed)
    picked = [paths[int(i)] for i in np.unique(np.linspace(0, len(paths) - 1, min(images, len(paths))).round())]
    pooled = []
    for path in picked:
        data = _channels(read_image(path), norm, path)
        data = data.reshape(-1, data.shape[2])
        if pooled and data.shape[1] != pooled[0].shape[1]:
            raise SlideError(f"{path}: has {data.shape[1]} channel(s) where {picked[0].name} has "
                             f"{pooled[0].shape[1]}; one cohort's images need the same channels (or set channels)")
        pooled.append(data[rng.choice(len(data), min(pixels, len(data)), replace=False)])
    if not pooled:
        raise SlideError("no images to take the cohort's intensity range from")
    values = np.concatenate(pooled)
    lo, hi = np.percentile(values, (norm.low, norm.high), axis=0)
    return tuple((float(f"{a:.6g}"), float(f"{max(b, a + 1.0):.6g}")) for a, b in zip(lo, hi))


def to_rgb(arr: np.ndarray, norm: Normalisation, path: Path) -> np.ndarray:
    """(H, W, C) of any dtype -> (H, W, 3) uint8, each chosen channel stretched between its percentiles."""
    data = _channels(arr, norm, path)
    if norm.ranges is not None and len(norm.ranges) != data.shape[2]:
        raise SlideError(f"{path}: has {data.shape[2]} channel(s) where the cohort's intensity range has "
                         f"{len(norm.ranges)}; one cohort's images need the same channels (or set channels)")
    if float(data.max()) == float(data.min()):
        bits = arr.dtype.itemsize * 8
        raise SlideError(f"{path}: every pixel has the value {data.flat[0]:g} ({bits}-bit); the image is blank "
                         "(a failed export?); re-export it or remove it and its table row")
    out = np.empty(data.shape, np.uint8)
    for c in range(data.shape[2]):
        ch = data[:, :, c]
        lo, hi = norm.ranges[c] if norm.ranges else np.percentile(ch, (norm.low, norm.high))
        if hi <= lo:  # a channel with almost one value: stretch its full range instead
            lo, hi = float(ch.min()), float(ch.max())
        out[:, :, c] = np.clip((ch - lo) / max(hi - lo, 1e-12) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if out.shape[2] == 1:
        return np.repeat(out, 3, axis=2)
    if out.shape[2] == 2:
        return np.concatenate([out, np.zeros_like(out[:, :, :1])], axis=2)
    return out


def load_rgb(path: Path, norm: Normalisation = Normalisation()) -> np.ndarray:
    """Read and normalise one image (what every unit of :mod:`slidepredict.cells.units` crops from)."""
    return to_rgb(read_image(path), norm, path)
