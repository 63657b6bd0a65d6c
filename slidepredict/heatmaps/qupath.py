"""QuPath exports: tile polygons as GeoJSON detections with measurements, and a pyramidal OME-TIFF score map.

GeoJSON follows what QuPath 0.4/0.5 writes and reads: a ``FeatureCollection`` of ``Feature``s
with a closed ``Polygon`` ring in level-0 pixels, ``properties.objectType`` (``detection``),
``properties.classification`` as ``{"name", "color"}`` and ``properties.measurements`` as a
name -> number object (QuPath 0.3 used a list of name/value pairs; 0.4 still reads both).
Imported detections feed QuPath's *Measure > Show measurement maps* directly.

The OME-TIFF holds one float32 channel per class plus attention (NaN where no tile lies) and a
``tiles`` mask channel, with an integer downsample of the slide grid and its physical pixel size,
so it overlays the slide. Both exports are in QuPath's frame: a slide with ``openslide.bounds``
is cropped to them by QuPath, so the bounds offset is subtracted (``Slide.qupath_frame``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np

from slidepredict.core import jsonio
from slidepredict.heatmaps.overlay import gather, tile_index_map
from slidepredict.heatmaps.scores import ATTENTION, COORD_COLUMNS, TileScores

OBJECT_TYPE = "detection"
PYRAMID_TILE = 256
_NAMESPACE = uuid.UUID("0d6f4f5e-8c1a-4f0a-9a51-5e7c1d2b3a44")  # stable ids: a rerun gives the same objects


def class_colours(categories: list[str]) -> dict[str, list[int]]:
    """QuPath wants an RGB int triple per class; tab10 matches the report's plots."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {c: [int(round(255 * v)) for v in cmap(i % 10)[:3]] for i, c in enumerate(categories)}


def tile_feature(x: int, y: int, size0: int, measurements: dict[str, float], label: str, colour: list[int],
                 key: str) -> dict[str, object]:
    """One tile as a QuPath detection: closed square ring, counter-clockwise in image coordinates."""
    ring = [[x, y], [x + size0, y], [x + size0, y + size0], [x, y + size0], [x, y]]
    return {
        "type": "Feature",
        "id": str(uuid.uuid5(_NAMESPACE, key)),
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "objectType": OBJECT_TYPE,
            "classification": {"name": label, "color": colour},
            "measurements": measurements,
        },
    }


def write_geojson(scores: TileScores, path: Path, stem: str, origin: tuple[int, int] = (0, 0)) -> Path:
    """Stream one feature per line (no list of N dicts in memory); measurement names = CSV column names.

    Each tile is classified as the class with its highest score, so QuPath can colour or count by class.
    Coordinates are in QuPath's frame: level-0 minus ``origin`` (the slide's bounds offset, see
    ``Slide.qupath_frame``). Non-finite values are left out of ``measurements`` (QuPath reads a missing
    one as NaN; a bare NaN is not JSON, and QuPath 0.4 refuses the file). The collection's
    ``properties.slidepredict`` records the patient, prediction, drawing model(s), whether the
    patient was held out from them, and the frame (QuPath ignores it).
    """
    cols = {k: v for k, v in scores.columns().items() if k not in COORD_COLUMNS}
    names = list(cols)
    table = np.column_stack([np.asarray(cols[n], dtype=np.float64) for n in names])
    best = np.argmax(np.nan_to_num(scores.class_scores, nan=-1.0), axis=1)
    colours = class_colours(scores.categories)
    ox, oy = origin
    about = {"slidepredict": {
        "slide": stem, "patient": scores.patient, "target": scores.target, "prediction": scores.prediction,
        "drawn_by": scores.drawer and scores.drawer.provenance(),
        "frame": {"level0_origin": [int(ox), int(oy)],
                  "note": "coordinates = level-0 px minus level0_origin (the slide's openslide.bounds, where QuPath's "
                          "image starts); tile-scores.csv keeps level-0 px"},
    }}
    with open(path, "w") as fh:
        head = jsonio.dumps({"type": "FeatureCollection", "properties": about}, separators=(",", ":"))
        fh.write(head[:-1] + ', "features": [\n')
        for i, ((x, y), row) in enumerate(zip(scores.coords.tolist(), table)):
            label = scores.categories[int(best[i])]
            meas = {n: round(float(v), 6) for n, v in zip(names, row) if np.isfinite(v)}
            feat = tile_feature(x - ox, y - oy, scores.size0, meas, label, colours[label], f"{stem}:{x}:{y}")
            fh.write(("" if i == 0 else ",\n") + json.dumps(feat, separators=(",", ":"), allow_nan=False))
        fh.write("\n]}\n")
    return path


def _halve(img: np.ndarray) -> np.ndarray:
    """2 x 2 mean of a (C, H, W) map ignoring NaN; all-NaN blocks stay NaN."""
    c, h, w = img.shape
    ph, pw = h + (h % 2), w + (w % 2)
    pad = np.full((c, ph, pw), np.nan, dtype=np.float32)
    pad[:, :h, :w] = img
    blocks = pad.reshape(c, ph // 2, 2, pw // 2, 2)
    valid = ~np.isnan(blocks)
    total = np.where(valid, blocks, 0).sum(axis=(2, 4))
    count = valid.sum(axis=(2, 4))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan).astype(np.float32)


TILES_CHANNEL = "tiles"  # 1 where a tile lies, 0 where none: QuPath shows NaN as 0, the lowest score's colour


def score_stack(scores: TileScores, frame: tuple[tuple[int, int], tuple[int, int]], scale: int,
                ) -> tuple[np.ndarray, list[str]]:
    """(C+2, H, W) float32 map at ``scale`` level-0 px per pixel over QuPath's frame (origin, size), and channel names.

    Channels: one per class, attention, then ``tiles`` (1 inside a tile, 0 outside), because
    QuPath displays the NaN outside tiles as 0, the same as the lowest score.
    """
    (ox, oy), (w0, h0) = frame
    shape = (-(-h0 // scale), -(-w0 // scale))
    index = tile_index_map(scores.coords - np.array([ox, oy]), scores.size0, scale, shape)
    maps = scores.maps()
    names = [n for n in maps if n != ATTENTION] + [ATTENTION]
    layers = [gather(index, maps[n]) for n in names] + [(index >= 0).astype(np.float32)]
    return np.stack(layers), names + [TILES_CHANNEL]


def channel_colours(names: list[str], categories: list[str]) -> list[int]:
    """OME ``Color`` per channel (signed 32-bit RGBA): classes as in the GeoJSON, attention orange, tiles grey."""
    rgb = {**{c: tuple(v) for c, v in class_colours(categories).items()}, ATTENTION: (255, 140, 0), TILES_CHANNEL: (160, 160, 160)}
    out = []
    for n in names:
        r, g, b = rgb[n]
        value = (r << 24) | (g << 16) | (b << 8) | 255
        out.append(value - (1 << 32) if value >= 1 << 31 else value)
    return out


def write_ome_tiff(stack: np.ndarray, names: list[str], path: Path, pixel_um: float, colours: list[int] | None = None) -> Path:
    """Pyramidal OME-TIFF (reduced levels in SubIFDs, as Bio-Formats/QuPath expect) with physical pixel size."""
    import tifffile

    levels = [stack]
    while max(levels[-1].shape[1:]) > PYRAMID_TILE:
        levels.append(_halve(levels[-1]))
    meta = {
        "axes": "CYX", "Channel": {"Name": names, **({"Color": colours} if colours else {})},
        "PhysicalSizeX": pixel_um, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": pixel_um, "PhysicalSizeYUnit": "µm",
    }
    common = dict(tile=(PYRAMID_TILE, PYRAMID_TILE), photometric="minisblack", compression="zlib",
                  resolutionunit="CENTIMETER")
    with tifffile.TiffWriter(path, ome=True) as tif:
        for i, level in enumerate(levels):
            res = 1e4 / (pixel_um * 2**i)  # pixels per centimetre
            if i == 0:
                tif.write(level, subifds=len(levels) - 1, metadata=meta, resolution=(res, res), **common)
            else:
                tif.write(level, subfiletype=1, metadata=None, resolution=(res, res), **common)
    return path
