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

# Extensions we look for when given a directory of slides.
SLIDE_EXTENSIONS: tuple[str, ...] = (
    ".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide",
    ".bif", ".dcm", ".czi", ".png", ".jpg", ".jpeg", ".bmp",
)
_DOUBLE_EXT = re.compile(r"\.ome\.(tif|tiff)$", re.IGNORECASE)
log = logging.getLogger(__name__)

_MPP_RANGE = (0.01, 50.0)  # plausible microns per pixel for microscopy
_UNIT_TO_UM = {"m": 1e6, "cm": 1e4, "mm": 1e3, "µm": 1.0, "um": 1.0, "nm": 1e-3}


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


def _mpp_from_resolution(value: float | None, unit: str | None) -> float | None:
    """TIFF/PNG resolution (pixels per unit) -> microns per pixel, rejecting screen-DPI defaults."""
    if not value or not unit:
        return None
    unit = unit.lower()
    per = {"centimeter": 1e4, "cm": 1e4, "inch": 25400.0, "in": 25400.0}.get(unit)
    if per is None:
        return None
    return per / float(value)


class OpenSlideBackend:
    def __init__(self, path: Path) -> None:
        import openslide

        self._osr = openslide.OpenSlide(str(path))
        self._err = openslide.OpenSlideError
        self.level_dimensions = list(self._osr.level_dimensions)
        self.level_downsamples = [float(d) for d in self._osr.level_downsamples]
        self.properties = dict(self._osr.properties)

    @staticmethod
    def can_open(path: Path) -> bool:
        import openslide

        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
            return False
        try:
            return openslide.OpenSlide.detect_format(str(path)) is not None
        except Exception:
            return False

    def read_image(self, level: int, x: int, y: int, w: int, h: int) -> Image.Image:
        """RGB region as a PIL image: staying in PIL until the final resize avoids array copies."""
        try:
            rgba = self._osr.read_region((x, y), level, (w, h))
        except self._err as exc:
            raise SlideError(f"cannot read pixels (corrupt or truncated file?): {exc}") from None
        if rgba.getchannel("A").getextrema()[0] < 255:  # outside scanned regions: background, i.e. white
            rgba = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        return rgba.convert("RGB")

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        return np.asarray(self.read_image(level, x, y, w, h))

    def mpp_candidates(self) -> list[tuple[str, float | None]]:
        p = self.properties
        mx, my = p.get("openslide.mpp-x"), p.get("openslide.mpp-y")
        mpp = None
        if mx and my:
            mpp = (float(mx) + float(my)) / 2
        elif mx:
            mpp = float(mx)
        res = _mpp_from_resolution(
            float(p["tiff.XResolution"]) if "tiff.XResolution" in p else None, p.get("tiff.ResolutionUnit")
        )
        return [("openslide.mpp-x/y", mpp), ("TIFF resolution tags", res)]

    def close(self) -> None:
        self._osr.close()


class TiffBackend:
    """OME-TIFF and plain TIFF that OpenSlide cannot open; reads regions lazily via zarr."""

    def __init__(self, path: Path) -> None:
        import tifffile
        import zarr

        self._tif = tifffile.TiffFile(str(path))
        series = self._tif.series[0]
        self._axes = series.axes
        if "Y" not in self._axes or "X" not in self._axes:
            raise SlideError(f"TIFF series has axes {self._axes}; expected an image with Y and X")
        self._levels = [zarr.open(level.aszarr(), mode="r") for level in series.levels]
        yi, xi = self._axes.index("Y"), self._axes.index("X")
        self.level_dimensions = [(int(z.shape[xi]), int(z.shape[yi])) for z in self._levels]
        w0 = self.level_dimensions[0][0]
        self.level_downsamples = [w0 / d[0] for d in self.level_dimensions]

    @staticmethod
    def can_open(path: Path) -> bool:
        return path.suffix.lower() in (".tif", ".tiff")

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        ds = self.level_downsamples[level]
        lx, ly = int(x / ds), int(y / ds)
        W, H = self.level_dimensions[level]
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        x0, y0, x1, y1 = max(lx, 0), max(ly, 0), min(lx + w, W), min(ly + h, H)
        if x1 <= x0 or y1 <= y0:
            return out
        index = []
        for ax in self._axes:
            index.append({"Y": slice(y0, y1), "X": slice(x0, x1)}.get(ax, slice(None) if ax in "SC" else 0))
        try:
            region = np.asarray(self._levels[level][tuple(index)])
        except Exception as exc:
            raise SlideError(f"cannot read pixels (corrupt or truncated file?): {exc}") from None
        out[y0 - ly : y1 - ly, x0 - lx : x1 - lx] = _to_rgb8(region, self._axes)
        return out

    def mpp_candidates(self) -> list[tuple[str, float | None]]:
        page = self._tif.pages[0]
        res = None
        xr, unit = page.tags.get("XResolution"), page.tags.get("ResolutionUnit")
        if xr is not None and unit is not None:
            num, den = xr.value
            res = _mpp_from_resolution(num / den if den else None, getattr(unit.value, "name", str(unit.value)))
        return [("TIFF resolution tags", res), ("OME PhysicalSizeX", self._ome_mpp())]

    def _ome_mpp(self) -> float | None:
        xml = self._tif.ome_metadata
        if not xml:
            return None
        m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', xml)
        if not m:
            return None
        u = re.search(r'PhysicalSizeXUnit="([^"]+)"', xml)
        return float(m.group(1)) * _UNIT_TO_UM.get(u.group(1) if u else "µm", 1.0)

    def close(self) -> None:
        self._tif.close()


def _to_rgb8(region: np.ndarray, axes: str) -> np.ndarray:
    """Bring a (Y, X[, S]) region of any dtype to RGB uint8; greyscale is repeated to three channels."""
    keep = [a for a in axes if a in "YXSC"]
    arr = region
    if arr.ndim == 2:
        arr = arr[..., None]
    elif keep and keep[0] in "SC" and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)
    if arr.dtype != np.uint8:
        hi = float(arr.max()) if arr.size else 1.0
        arr = (arr.astype(np.float32) * (255.0 / max(hi, 1.0))).clip(0, 255).astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])


class PillowBackend:
    """Plain microscopy images (PNG/JPEG/BMP): one level, held in memory."""

    def __init__(self, path: Path) -> None:
        try:
            with Image.open(path) as im:
                im.load()
                self._dpi = im.info.get("dpi")
                self._img = np.asarray(im.convert("RGB"))
        except (OSError, Image.DecompressionBombError) as exc:
            raise SlideError(f"cannot read image: {exc}") from None
        h, w = self._img.shape[:2]
        self.level_dimensions = [(w, h)]
        self.level_downsamples = [1.0]

    @staticmethod
    def can_open(path: Path) -> bool:
        return path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        H, W = self._img.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        if x1 > x0 and y1 > y0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self._img[y0:y1, x0:x1]
        return out

    def mpp_candidates(self) -> list[tuple[str, float | None]]:
        dpi = self._dpi[0] if self._dpi else None
        return [("image DPI", _mpp_from_resolution(dpi, "inch") if dpi else None)]

    def close(self) -> None:
        pass


# Backends in the order they are tried; the first whose ``can_open`` accepts and that opens wins.
BACKENDS: dict[str, type] = {
    "openslide": OpenSlideBackend,
    "tifffile": TiffBackend,
    "pillow": PillowBackend,
}


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
