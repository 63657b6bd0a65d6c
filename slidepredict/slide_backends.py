"""Readers behind ``Slide``: OpenSlide (vendor formats, DICOM), tifffile (OME/plain TIFF), Pillow (PNG/JPEG).

Each backend exposes the same small surface (level sizes and downsamples, properties, region
reads, MPP candidates, ``can_open``), so ``slide.Slide`` never asks which one it holds.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from slidepredict.core.errors import SlideError

_UNIT_TO_UM = {"m": 1e6, "cm": 1e4, "mm": 1e3, "µm": 1.0, "um": 1.0, "nm": 1e-3}


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
