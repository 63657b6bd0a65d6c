"""QC thumbnails: the slide with its tissue outline, ink, kept tiles and dropped tiles by reason.

Every slide gets one, a failed slide included (the reason is written on the image), next to a
``<slide>.json`` with the figures the report lists: method, tissue area in mm^2, tiles kept and
dropped by reason, and the failure if any.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from slidepredict.core import jsonio
from slidepredict.core.atomic import atomic_path, write_text_atomic
from slidepredict.slide import slide_stem
from slidepredict.tiling.tissue import TissueMask

if TYPE_CHECKING:
    from slidepredict.tiling.grid import TilePlan

OUTLINE_RGB = (0, 200, 0)
TILE_RGB = (30, 90, 255)
INK_RGB = (255, 0, 255)  # ink pixels and ink-dropped tiles
DROPPED_RGB = {"ink": INK_RGB, "background": (150, 150, 150), "blur": (255, 140, 0)}
FAILED_RGB = (200, 0, 0)
MIN_SIDE_PX = 768  # small masks are enlarged so the grid stays visible
BANNER_PX = 36


def qc_path(out_dir: str | os.PathLike[str], slide_path: str | os.PathLike[str]) -> Path:
    return Path(out_dir) / "qc" / f"{slide_stem(slide_path)}.png"


def _zoomed(tissue: TissueMask) -> tuple[np.ndarray, int]:
    zoom = max(1, int(np.ceil(MIN_SIDE_PX / max(tissue.mask.shape))))
    rgb = np.repeat(np.repeat(tissue.rgb, zoom, axis=0), zoom, axis=1).copy()
    return rgb, zoom


def render_qc(tissue: TissueMask, coords: np.ndarray, size_level0: int,
              dropped: dict[str, np.ndarray] | None = None, banner: str = "", failed: bool = False) -> Image.Image:
    """Draw on the low-resolution image the mask was computed on (no extra slide read).

    Green: tissue outline; magenta pixels: ink; blue squares: kept tiles; dropped tiles as
    crossed squares in the colour of their reason (magenta ink, grey background, orange blur).
    """
    from skimage.segmentation import find_boundaries

    rgb, zoom = _zoomed(tissue)
    mask = np.repeat(np.repeat(tissue.mask, zoom, axis=0), zoom, axis=1)
    edge = find_boundaries(mask, mode="inner")
    edge |= np.roll(edge, 1, axis=0) | np.roll(edge, 1, axis=1)  # two pixels wide
    if tissue.ink is not None and tissue.ink.any():
        ink = np.repeat(np.repeat(tissue.ink, zoom, axis=0), zoom, axis=1)
        rgb[ink] = (rgb[ink] * 0.35 + np.array(INK_RGB) * 0.65).astype(np.uint8)
    rgb[edge] = OUTLINE_RGB
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    f = zoom / tissue.scale  # image pixels per level-0 pixel
    side = size_level0 * f
    for reason, where in (dropped or {}).items():
        colour = DROPPED_RGB.get(reason, FAILED_RGB)
        for x, y in where:
            x0, y0, x1, y1 = x * f, y * f, x * f + side - 1, y * f + side - 1
            draw.rectangle([x0, y0, x1, y1], outline=colour)
            draw.line([x0, y0, x1, y1], fill=colour)
    for x, y in coords:
        draw.rectangle([x * f, y * f, x * f + side - 1, y * f + side - 1], outline=TILE_RGB)
    return _with_banner(image, banner, failed)


def _with_banner(image: Image.Image, text: str, failed: bool) -> Image.Image:
    """The picture below a strip of text (the counts, or in red the reason a slide failed)."""
    if not text:
        return image
    font = ImageFont.load_default()
    width = max(image.width, 480)
    lines = textwrap.wrap(text, width=max(40, width // 7))
    page = Image.new("RGB", (width, image.height + BANNER_PX * len(lines) // 2 + 10), "white")
    draw = ImageDraw.Draw(page)
    for i, line in enumerate(lines):
        draw.text((6, 4 + 18 * i), line, fill=FAILED_RGB if failed else (0, 0, 0), font=font)
    page.paste(image, (0, page.height - image.height))
    return page


def failure_image(reason: str) -> Image.Image:
    """A slide that could not be read at all: the reason alone."""
    return _with_banner(Image.new("RGB", (MIN_SIDE_PX, 200), (235, 235, 235)), f"FAILED: {reason}", True)


def counts_text(summary: dict[str, Any]) -> str:
    dropped = ", ".join(f"{n} {r}" for r, n in summary["dropped"].items() if n) or "none"
    return (f"{summary['method']}: tissue {summary['tissue_mm2']:.2f} mm2; {summary['kept']} tiles kept (blue); "
            f"dropped: {dropped} (magenta ink, grey background, orange blur)")


def write_qc(out_dir: str | os.PathLike[str], slide_path: str | os.PathLike[str], plan: TilePlan | None = None,
             tissue: TissueMask | None = None, failure: str | None = None) -> Path:
    """The QC PNG and its JSON summary, atomically (a killed run leaves no half-written image)."""
    path = qc_path(out_dir, slide_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"slide": Path(slide_path).name, "failure": failure}
    if plan is not None:
        summary.update(plan.summary())
        banner = (f"FAILED: {failure} | " if failure else "") + counts_text(plan.summary())
        image = render_qc(plan.tissue, plan.coords, plan.size_level0, plan.dropped, banner, failure is not None)
    elif tissue is not None:
        summary.update({"method": tissue.modality, "tissue_mm2": round(tissue.tissue_area_mm2, 3), "kept": 0,
                        "dropped": {}})
        image = render_qc(tissue, np.zeros((0, 2), np.int64), 1, None, f"FAILED: {failure}", True)
    else:
        image = failure_image(failure or "unknown")
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    write_text_atomic(path.with_suffix(".json"), jsonio.dumps(summary, indent=1))
    return path
