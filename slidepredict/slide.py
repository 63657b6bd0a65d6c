"""One ``Slide`` interface over OpenSlide, tifffile (OME/plain TIFF) and Pillow (PNG/JPEG).

Coordinates are level-0 pixels everywhere. The resolution (microns per pixel) is
resolved explicitly and never guessed: override -> ``openslide.mpp-x/y`` -> TIFF
resolution tags -> OME ``PhysicalSizeX`` -> a :class:`MPPError` that says how to pass it.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from slidepredict.core.errors import MPPError, SlideError
from slidepredict.core.units import Microns, SlideMPP, SlidePixels, TilePixels
from slidepredict.slide_backends import BACKENDS

# Extensions we look for when given a directory of slides.
SLIDE_EXTENSIONS: tuple[str, ...] = (
    ".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide",
    ".bif", ".dcm", ".czi", ".png", ".jpg", ".jpeg", ".bmp",
)
_DOUBLE_EXT = re.compile(r"\.ome\.(tif|tiff)$", re.IGNORECASE)
log = logging.getLogger(__name__)

_MPP_RANGE = (0.01, 50.0)  # plausible microns per pixel for microscopy


def slide_stem(path: str | os.PathLike[str]) -> str:
    """File name without its slide extension (``a.ome.tif`` -> ``a``); the key for every output file.

    A DICOM WSI is a folder of ``.dcm`` instances (one per level), named by UIDs: its folder names it.
    """
    path = Path(path)
    if path.suffix.lower() == ".dcm":
        return path.parent.name or path.stem
    m = _DOUBLE_EXT.search(path.name)
    return path.name[: m.start()] if m else path.stem


def is_dicom(path: Path) -> bool:
    """DICOM Part 10 files carry ``DICM`` after a 128-byte preamble, whatever their name."""
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:] == b"DICM"
    except OSError:
        return False


def find_slides(inputs: list[str | os.PathLike[str]], required: bool = False) -> list[Path]:
    """Expand files and folders (recursively) into a sorted, de-duplicated list of slide files.

    With ``required``, finding nothing is an error that names the folders searched.
    """
    found: dict[Path, None] = {}
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            series: set[Path] = set()  # a DICOM WSI's instances (one per level) are one slide: its folder's first
            for child in sorted(p.rglob("*")):
                if child.is_file() and child.suffix.lower() in SLIDE_EXTENSIONS:
                    if child.suffix.lower() == ".dcm":
                        if child.parent in series:
                            continue
                        series.add(child.parent)
                    found[child] = None
        elif p.exists():
            found[p] = None
        else:
            raise SlideError(f"{p}: no such file or directory")
    if required and not found:
        where = ", ".join(str(i) for i in inputs) or "(no inputs given)"
        raise SlideError(f"no slides found in {where} (looked for {' '.join(SLIDE_EXTENSIONS)})")
    return list(found)


@dataclass
class Slide:
    """An open slide with a known resolution. Use :func:`open_slide`; close it or use ``with``."""

    path: Path
    backend: Any
    mpp: SlideMPP
    mpp_source: str

    @property
    def name(self) -> str:
        return slide_stem(self.path)

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.backend.level_dimensions[0]

    @property
    def level_dimensions(self) -> list[tuple[int, int]]:
        return self.backend.level_dimensions

    @property
    def qupath_frame(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(origin, size) in level-0 px of the image QuPath shows: cropped to ``openslide.bounds-*`` when present.

        MIRAX and some Hamamatsu/Leica files carry bounds; QuPath's OpenSlide server crops to
        them, so its pixel (0, 0) is level-0 (bounds-x, bounds-y). Without bounds: the whole slide.
        """
        props = getattr(self.backend, "properties", {}) or {}
        keys = ("openslide.bounds-x", "openslide.bounds-y", "openslide.bounds-width", "openslide.bounds-height")
        try:
            x, y, w, h = (int(props[k]) for k in keys)
        except (KeyError, TypeError, ValueError):
            return (0, 0), self.dimensions
        return (x, y), (w, h)

    @property
    def level_downsamples(self) -> list[float]:
        return self.backend.level_downsamples

    def best_level(self, downsample: float) -> int:
        """Lowest-resolution level that still has at least the requested resolution."""
        best = 0
        for i, ds in enumerate(self.level_downsamples):
            if ds <= downsample * 1.01:
                best = i if ds >= self.level_downsamples[best] else best
        return best

    def read_region_at(self, x: SlidePixels, y: SlidePixels, size_um: Microns, out_px: TilePixels) -> np.ndarray:
        """A square of ``size_um`` microns at level-0 (x, y), resized to ``out_px`` (RGB uint8)."""
        size0 = size_um / self.mpp
        level = self.best_level(size0 / out_px)
        ds = self.level_downsamples[level]
        n = max(1, int(round(size0 / ds)))
        read_image = getattr(self.backend, "read_image", None)
        if read_image is None:
            rgb = self.backend.read(level, int(x), int(y), n, n)
            if n == out_px:
                return rgb
            image = Image.fromarray(rgb)
        else:
            image = read_image(level, int(x), int(y), n, n)
        if n != out_px:  # area averaging when shrinking (anti-aliased, and cheaper than bilinear)
            image = image.resize((out_px, out_px), Image.BOX if n > out_px else Image.BILINEAR)
        return np.asarray(image)

    def read_at_mpp(self, target_mpp: float, chunk: int = 4096) -> tuple[np.ndarray, float]:
        """The whole slide at about ``target_mpp`` (for masks and thumbnails) in bounded memory.

        Returns the RGB image and its scale in level-0 pixels per image pixel. Large levels
        are read and shrunk chunk by chunk, so a single-level gigapixel slide never lands in RAM.
        """
        scale = max(1.0, target_mpp / self.mpp)
        level = self.best_level(scale)
        ds = self.level_downsamples[level]
        W0, H0 = self.dimensions
        out_w, out_h = max(1, int(math.ceil(W0 / scale))), max(1, int(math.ceil(H0 / scale)))
        lw, lh = self.level_dimensions[level]
        # White where no level pixel lands (the last row/column when the level's size is not a multiple of
        # the downsample): uninitialised memory there made masks, QC and tiling differ between runs.
        out = np.full((out_h, out_w, 3), 255, dtype=np.uint8)
        f = ds / scale  # output pixels per level pixel
        for ly in range(0, lh, chunk):
            for lx in range(0, lw, chunk):
                cw, ch = min(chunk, lw - lx), min(chunk, lh - ly)
                rgb = self.backend.read(level, int(lx * ds), int(ly * ds), cw, ch)
                ox0, oy0 = int(round(lx * f)), int(round(ly * f))
                ox1, oy1 = min(out_w, int(round((lx + cw) * f))), min(out_h, int(round((ly + ch) * f)))
                if ox1 > ox0 and oy1 > oy0:
                    piece = Image.fromarray(rgb).resize((ox1 - ox0, oy1 - oy0), Image.BILINEAR, reducing_gap=2.0)
                    out[oy0:oy1, ox0:ox1] = np.asarray(piece)
        return out, W0 / out_w

    def thumbnail(self, max_px: int = 2048) -> tuple[np.ndarray, float]:
        """A thumbnail whose long side is at most ``max_px``; returns (RGB, level-0 px per pixel)."""
        W0, H0 = self.dimensions
        scale = max(1.0, max(W0, H0) / max_px)
        return self.read_at_mpp(scale * self.mpp)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_backend(path: Path) -> tuple[str, Any]:
    errors: list[str] = []
    for name, cls in BACKENDS.items():
        if not cls.can_open(path):
            continue
        try:
            return name, cls(path)
        except SlideError as exc:
            errors.append(f"{name}: {exc}")
        except Exception as exc:  # the libraries raise many types on malformed files
            errors.append(f"{name}: {exc.__class__.__name__}: {exc}".strip())
    detail = "; ".join(errors) if errors else "no reader recognises this format"
    if path.is_file() and is_dicom(path):
        import openslide

        raise SlideError(
            f"cannot open slide {path}: a DICOM file that OpenSlide {openslide.__library_version__} does not read as "
            f"a whole-slide image ({detail}); it reads DICOM WSI (VL Whole Slide Microscopy Image) series whose "
            "instances lie together in one folder with no other files; other DICOM files (a single frame, a "
            "series split across folders) need converting, e.g. with wsidicomizer or bfconvert to OME-TIFF"
        )
    raise SlideError(f"cannot open slide {path}: not a supported slide, or a truncated or corrupt file ({detail})")


@dataclass(frozen=True)
class MPPOverride:
    """``--mpp-override``: this resolution replaces the one a file records (the file's own is logged)."""

    value: float


MPPChoice = float | MPPOverride | None  # None: the file's own; a float: for files without one; an override


def _checked(path: Path, value: float, backend: Any) -> float:
    if not (value > 0 and math.isfinite(value)):
        backend.close()
        raise MPPError(f"{path.name}: --mpp must be a positive number, got {value}")
    return float(value)


def file_mpp(path: str | os.PathLike[str]) -> tuple[float, str] | None:
    """The resolution a file records and where (TIFF tags, OME, DPI), or None: no file, no reader, no record."""
    try:
        _, backend = _open_backend(Path(path))
    except SlideError:
        return None
    try:
        for source, value in backend.mpp_candidates():
            if value is not None and _MPP_RANGE[0] <= value <= _MPP_RANGE[1]:
                return float(value), source
        return None
    finally:
        backend.close()


def open_slide(path: str | os.PathLike[str], mpp: MPPChoice = None) -> Slide:
    """Open any supported slide with its resolution: the file's own; ``mpp`` (a float) only for files
    without one; an :class:`MPPOverride` replaces the file's (a mixed folder is never silently rescaled)."""
    path = Path(path)
    if not path.exists():
        raise SlideError(f"{path}: no such file")
    if path.is_dir() and path.suffix.lower() != ".mrxs":
        raise SlideError(f"{path} is a directory, not a slide")
    if path.is_file() and path.stat().st_size == 0:
        raise SlideError(f"cannot open slide {path}: the file is empty (0 bytes)")
    name, backend = _open_backend(path)
    tried, own = [], None
    for source, value in backend.mpp_candidates():
        tried.append(source)
        if value is not None and _MPP_RANGE[0] <= value <= _MPP_RANGE[1]:
            own = (float(value), source)
            break
    if isinstance(mpp, MPPOverride):
        value = _checked(path, mpp.value, backend)
        if own is not None and not math.isclose(own[0], value, rel_tol=0.02):
            log.warning("%s: --mpp-override %g replaces the file's own MPP %g (%s)", path.name, value, own[0], own[1])
        return Slide(path=path, backend=backend, mpp=SlideMPP(value), mpp_source="--mpp-override")
    if own is not None:
        if mpp is not None and not math.isclose(own[0], _checked(path, mpp, backend), rel_tol=0.02):
            log.info("%s: the file's MPP %g (%s) is used; --mpp %g applies only to files without one "
                     "(--mpp-override to replace it)", path.name, own[0], own[1], mpp)
        return Slide(path=path, backend=backend, mpp=SlideMPP(own[0]), mpp_source=own[1])
    if mpp is not None:
        return Slide(path=path, backend=backend, mpp=SlideMPP(_checked(path, mpp, backend)), mpp_source="--mpp")
    backend.close()
    raise MPPError(
        f"{path.name}: resolution (microns per pixel) unknown; looked at {', '.join(tried)}. "
        "Pass it with --mpp (e.g. --mpp 0.25 for 40x, 0.5 for 20x)."
    )
