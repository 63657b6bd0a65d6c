"""Synthetic H&E-like pyramidal slides with a planted, spatially localised signal and its ground truth.

Colour follows the Beer-Lambert model with the Ruifrok-Johnston stain vectors: every pixel is
``I0 * exp(-(cH * h + cE * e))`` from a hematoxylin and an eosin concentration. So colour
deconvolution recovers the stains exactly as on a real slide. Tissue is one to three irregular
blobs of eosin-stained stroma with fibrous texture, scattered nuclei and, now and then, a dense
aggregate of small lymphocyte-like nuclei.

The planted "tumour-like" signal is morphology, not colour: a compact region (by default 8% of
the tissue) of larger, more irregular nuclei, placed more sparsely so that the share of the
region covered by hematoxylin, and the eosin, stay what they are around it. A tile's mean colour
barely moves; its nuclear size and texture do. Every slide also gets its own staining intensity,
stain hue and nuclear density and size (:class:`SlideLook`), and that slide-to-slide variation
is larger than anything the signal does to a slide's mean colour, so neither colour nor a
slide-mean feature finds the positive patients; a method has to find the few tiles that differ.
Everything is drawn from ``numpy.random.default_rng(seed)``, so a seed fixes the slide.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from slidepredict.core.atomic import atomic_path
from slidepredict.demo.outcomes import outcome_columns

H_OD = np.array([0.650, 0.704, 0.286])  # hematoxylin optical density per unit concentration (R, G, B)
E_OD = np.array([0.072, 0.990, 0.105])  # eosin
STAIN_SHIFT_H = np.array([0.25, -0.10, -0.15])  # direction a staining protocol change moves each vector
STAIN_SHIFT_E = np.array([0.30, -0.15, 0.20])
LOW_DS = 16  # downsample of the shape/ground-truth grid
TILE = 256  # TIFF tile size
SIGNAL_FRACTION = 0.10  # share of a positive slide's tissue in the planted region
SIGNAL_RADIUS = 2.0  # planted nuclei are this much larger (radius), and sparser by its square
SIGNAL_IRREGULARITY = 0.45  # SD of log elongation of planted nuclei (0.18 elsewhere)


@dataclass(frozen=True)
class SlideLook:
    """How one slide differs from the next regardless of class: staining and nuclear density and size.

    The defaults are the reference slide; :meth:`draw` gives the per-slide variation of a cohort,
    which moves a slide's mean colour far more than the planted signal does.
    """

    hema: float = 1.0  # hematoxylin staining intensity (concentration factor)
    eosin: float = 1.0
    stain_shift: float = 0.0  # added to the cohort's protocol shift (see stain_vectors)
    density: float = 1.0  # nuclear density factor
    radius: float = 1.0  # nuclear size factor

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "SlideLook":
        h, e, shift, d, r = rng.normal(0.0, (0.15, 0.15, 0.06, 0.25, 0.2))
        return cls(hema=float(np.exp(h)), eosin=float(np.exp(e)), stain_shift=float(shift), density=float(np.exp(d)),
                   radius=float(np.exp(r)))


@dataclass
class SyntheticSlide:
    """A generated slide and where its signal is (``signal_mask`` at ``signal_scale`` level-0 px per px)."""

    path: Path
    mpp: float
    signal_mask: np.ndarray
    signal_scale: float = float(LOW_DS)
    tissue_mask: np.ndarray | None = None
    seed: int = 0

    @property
    def has_signal(self) -> bool:
        return bool(self.signal_mask.any())

    def signal_fraction(self, coords: np.ndarray, tile_size_level0: int) -> np.ndarray:
        """Fraction of each tile (level-0 top-left ``coords``) inside the planted region."""
        from slidepredict.tiling.grid import tile_means

        coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
        return tile_means(self.signal_mask, self.signal_scale, coords, int(tile_size_level0), full_area=True)

    def in_signal(self, coords: np.ndarray, tile_size_level0: int, min_fraction: float = 0.5) -> np.ndarray:
        """Which tiles lie mostly (``min_fraction``) inside the planted region."""
        return self.signal_fraction(coords, tile_size_level0) >= min_fraction


@dataclass
class SyntheticCohort:
    """A generated cohort: slides, clinical and slide tables, ground-truth masks."""

    root: Path
    slides_dir: Path
    clini_table: Path
    slide_table: Path
    ground_truth: Path
    target: str
    classes: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)
    slides: dict[str, list[SyntheticSlide]] = field(default_factory=dict)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float | tuple[float, float]) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return n / (n.std() + 1e-6)


def _upsample(low: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a float field to ``shape`` (rows, cols)."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(low, dtype=np.float32))
    return np.asarray(img.resize((shape[1], shape[0]), Image.BILINEAR), dtype=np.float32)


def _tissue_field(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Signed field on the low grid; > 0 is tissue. One to three irregular elliptical blobs."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    field_ = np.full(shape, -1.0, dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.25, 0.75) * w
        ry, rx = rng.uniform(0.25, 0.4) * h, rng.uniform(0.2, 0.35) * w
        a = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u, v = dx * np.cos(a) + dy * np.sin(a), -dx * np.sin(a) + dy * np.cos(a)
        field_ = np.maximum(field_, 1.0 - np.sqrt((u / rx) ** 2 + (v / ry) ** 2))
    return field_ + 0.12 * _smooth_noise(rng, shape, 3.0)


def _signal_region(rng: np.random.Generator, tissue: np.ndarray, fraction: float) -> np.ndarray:
    """A compact, irregular region covering ``fraction`` of the tissue, centred deep inside it."""
    depth = ndimage.distance_transform_edt(tissue)
    inner = np.argwhere(depth >= np.percentile(depth[tissue], 60))
    cy, cx = inner[rng.integers(len(inner))]
    yy, xx = np.mgrid[0 : tissue.shape[0], 0 : tissue.shape[1]]
    scale = np.sqrt(tissue.sum() * fraction / np.pi)
    score = -np.hypot(yy - cy, xx - cx) / scale + 0.35 * _smooth_noise(rng, tissue.shape, 2.0)
    cut = np.quantile(score[tissue], 1.0 - fraction)
    region = (score >= cut) & tissue
    labels, n = ndimage.label(region)
    if n > 1:  # keep the piece around the centre, so the signal is one localised patch
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        region = labels == (labels[cy, cx] or int(sizes.argmax()))
    return region


@lru_cache(maxsize=512)
def _stamp(radius: float, elong: float, angle: float) -> np.ndarray:
    """A soft-edged elliptical nucleus (values 0..1) with chromatin falling off to the rim."""
    r = int(np.ceil(radius * elong)) + 1
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float32)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    d = np.sqrt((u / (radius * elong)) ** 2 + (v / (radius / elong)) ** 2)
    return np.clip(1.2 - d**4, 0.0, 1.0) * (0.75 + 0.25 * np.clip(1.0 - d, 0, 1))


def _draw_nuclei(
    canvas: np.ndarray, rng: np.random.Generator, density: np.ndarray, radius: np.ndarray, dark: np.ndarray,
    irregular: np.ndarray, mpp: float,
) -> None:
    """Place nuclei by a Poisson process of per-um^2 ``density`` (low grid); size, darkness, shape per location."""
    h, w = canvas.shape
    cell_um2 = (LOW_DS * mpp) ** 2
    counts = rng.poisson(density * cell_um2)
    gy, gx = np.nonzero(counts)
    reps = counts[gy, gx]
    gy, gx = np.repeat(gy, reps), np.repeat(gx, reps)
    ys = ((gy + rng.random(len(gy))) * LOW_DS).astype(np.int64)
    xs = ((gx + rng.random(len(gx))) * LOW_DS).astype(np.int64)
    rad_um = radius[gy, gx] * rng.lognormal(0.0, 0.15, len(gy))
    elong = np.exp(np.abs(rng.normal(0.0, 1.0, len(gy)) * irregular[gy, gx]))
    angle = rng.integers(0, 8, len(gy)) * (np.pi / 8)
    amp = dark[gy, gx] * rng.uniform(0.8, 1.2, len(gy))
    pad = int(np.ceil(np.max((rad_um / mpp + 0.5) * (elong + 0.1), initial=1.0))) + 3  # the largest stamp's half
    big = np.zeros((h + 2 * pad, w + 2 * pad), dtype=np.float32)
    for y, x, r, e, a, k in zip(ys, xs, rad_um / mpp, elong, angle, amp):
        s = _stamp(round(float(r) * 2) / 2, round(float(e), 1), float(a))
        half = s.shape[0] // 2
        y0, x0 = y + pad - half, x + pad - half
        view = big[y0 : y0 + s.shape[0], x0 : x0 + s.shape[1]]
        np.maximum(view, s * k, out=view)
    canvas += big[pad : pad + h, pad : pad + w]


def stain_vectors(stain_shift: float) -> tuple[np.ndarray, np.ndarray]:
    """H and E optical-density vectors moved by ``stain_shift`` (0 = reference staining)."""
    h = np.clip(H_OD + stain_shift * STAIN_SHIFT_H, 0.02, None)
    e = np.clip(E_OD + stain_shift * STAIN_SHIFT_E, 0.02, None)
    return h / np.linalg.norm(h), e / np.linalg.norm(e)


def render_he(
    rng: np.random.Generator,
    width: int,
    height: int,
    mpp: float,
    *,
    signal: bool = False,
    signal_fraction: float = SIGNAL_FRACTION,
    stain_shift: float = 0.0,
    tissue: bool = True,
    look: SlideLook | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB uint8 (height, width, 3), tissue mask and signal mask on the LOW_DS grid.

    ``look`` None draws the slide's own staining and nuclei (:meth:`SlideLook.draw`) from ``rng``.
    """
    look = SlideLook.draw(rng) if look is None else look
    low = (int(np.ceil(height / LOW_DS)), int(np.ceil(width / LOW_DS)))
    tissue_low = _tissue_field(rng, low) > 0 if tissue else np.zeros(low, dtype=bool)
    signal_low = np.zeros(low, dtype=bool)
    if signal and tissue_low.any():
        signal_low = _signal_region(rng, tissue_low, signal_fraction)
    t_soft = ndimage.gaussian_filter(tissue_low.astype(np.float32), 0.7)
    # Nuclei: sparse in stroma, sometimes a lymphoid aggregate; in the signal larger, irregular and
    # sparser by the square of their size, so hematoxylin covers the same share of the tissue.
    density = (look.density / 300.0) * np.exp(0.3 * _smooth_noise(rng, low, 4.0)) * tissue_low
    radius = np.full(low, 3.2 * look.radius, dtype=np.float32)
    dark = np.full(low, 1.0, dtype=np.float32)
    irregular = np.full(low, 0.18, dtype=np.float32)
    if tissue_low.any() and rng.random() < 0.6:
        lymph = (_smooth_noise(rng, low, 2.5) > 2.0) & tissue_low & ~signal_low
        density = np.where(lymph, 1 / 60.0, density)
        radius = np.where(lymph, 2.3, radius)
        dark = np.where(lymph, 1.25, dark)
    density = np.where(signal_low, density / SIGNAL_RADIUS**2, density)
    radius = np.where(signal_low, radius * SIGNAL_RADIUS, radius)
    irregular = np.where(signal_low, SIGNAL_IRREGULARITY, irregular)
    nuclei = np.zeros((height, width), dtype=np.float32)
    _draw_nuclei(nuclei, rng, density, radius, dark, irregular, mpp)
    # Stroma: fibrous eosin (anisotropic noise at 1/4 resolution), paler where tumour cells crowd it out.
    q = (int(np.ceil(height / 4)), int(np.ceil(width / 4)))
    fibres = _smooth_noise(rng, q, (1.2, 4.0)) + 0.6 * _smooth_noise(rng, q, (4.0, 1.2))
    t_full = _upsample(t_soft, (height, width))
    c_e = t_full * (0.42 + 0.12 * _upsample(fibres, (height, width))) * look.eosin
    c_h = (t_full * 0.06 + 1.1 * nuclei) * look.hema
    np.clip(c_e, 0, None, out=c_e)
    i0 = rng.standard_normal((height, width), dtype=np.float32)
    i0 *= 2.5
    i0 += 244.0
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    for ch, (hv, ev) in enumerate(zip(*stain_vectors(stain_shift + look.stain_shift))):
        od = c_h * np.float32(-hv)
        od -= c_e * np.float32(ev)
        np.exp(od, out=od)
        od *= i0
        np.clip(od, 0, 255, out=od)
        rgb[..., ch] = od
    return rgb, tissue_low, signal_low


def _halve(rgb: np.ndarray) -> np.ndarray:
    h, w = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
    r = rgb[:h, :w].astype(np.uint16)
    return ((r[0::2, 0::2] + r[1::2, 0::2] + r[0::2, 1::2] + r[1::2, 1::2] + 2) // 4).astype(np.uint8)


def write_pyramid(path: str | os.PathLike[str], rgb: np.ndarray, mpp: float, quality: int = 90) -> Path:
    """A tiled, JPEG-compressed pyramidal TIFF with resolution tags (OpenSlide: generic-tiff)."""
    import tifffile

    res = 1e4 / mpp  # pixels per centimetre
    level, ds = rgb, 1
    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp) as tif:
            while True:
                tif.write(
                    level, tile=(TILE, TILE), photometric="rgb", compression="jpeg", compressionargs={"level": quality},
                    resolution=(res / ds, res / ds), resolutionunit="CENTIMETER", subfiletype=0 if ds == 1 else 1,
                    metadata=None,
                )
                if max(level.shape[:2]) <= 2 * TILE:
                    break
                level, ds = _halve(level), ds * 2
    return Path(path)


def make_slide(
    path: str | os.PathLike[str],
    *,
    seed: int,
    width: int = 4096,
    height: int = 3072,
    mpp: float = 0.5,
    signal: bool = False,
    stain_shift: float = 0.0,
    signal_fraction: float = SIGNAL_FRACTION,
    tissue: bool = True,
    look: SlideLook | None = None,
) -> SyntheticSlide:
    """Write one synthetic slide; ``tissue=False`` gives empty glass (for the no-tissue error path).

    ``look`` fixes the slide's staining and nuclei (``SlideLook()`` is the reference slide); None
    draws them from the seed, as a cohort's slides do.
    """
    rng = np.random.default_rng(seed)
    rgb, tissue_low, signal_low = render_he(
        rng, width, height, mpp, signal=signal, signal_fraction=signal_fraction, stain_shift=stain_shift, tissue=tissue,
        look=look,
    )
    out = write_pyramid(path, rgb, mpp)
    return SyntheticSlide(path=out, mpp=mpp, signal_mask=signal_low, tissue_mask=tissue_low, seed=seed)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def make_cohort(
    out_dir: str | os.PathLike[str],
    *,
    n_patients: int,
    seed: int,
    positive_fraction: float = 0.5,
    stain_shift: float = 0.0,
    target: str = "MSI",
    classes: tuple[str, ...] = ("MSS", "MSI"),
    slides_per_patient: int = 1,
    width: int = 3072,
    height: int = 2048,
    mpp: float = 0.5,
    signal_fraction: float = SIGNAL_FRACTION,
    prefix: str = "SYN",
    label_noise: float = 0.0,
) -> SyntheticCohort:
    """Patients of the positive class (``classes[1]``) carry the planted signal on every slide.

    ``label_noise`` is the share of positive patients without the signal and of negative patients
    with a small region (half ``signal_fraction``), as a biomarker that morphology does not always
    show; the ground truth records where the signal really is.

    Writes ``slides/``, ``clini.csv`` (PATIENT, target, and ``demo.outcomes``' SIGNAL_SCORE, OS_MONTHS,
    OS_EVENT), ``slide.csv`` (PATIENT, FILENAME) and
    ``ground_truth.npz`` (one signal mask per slide stem, plus ``signal_scale``).
    """
    from slidepredict.core.progress import track

    if n_patients < 2 or len(classes) != 2:
        raise ValueError("a cohort needs at least two patients and exactly two classes")
    root = Path(out_dir)
    slides_dir = root / "slides"
    rng = np.random.default_rng(seed)
    n_pos = int(round(n_patients * positive_fraction))
    positive = np.zeros(n_patients, dtype=bool)
    positive[rng.permutation(n_patients)[:n_pos]] = True
    seeds = rng.integers(0, 2**31 - 1, size=(n_patients, slides_per_patient))
    carries, fraction = positive.copy(), np.full(n_patients, signal_fraction)
    for group, to in ((np.flatnonzero(positive), False), (np.flatnonzero(~positive), True)):
        flip = rng.permutation(group)[: int(round(label_noise * len(group)))]
        carries[flip], fraction[flip] = to, signal_fraction / 2
    cohort = SyntheticCohort(
        root=root, slides_dir=slides_dir, clini_table=root / "clini.csv", slide_table=root / "slide.csv",
        ground_truth=root / "ground_truth.npz", target=target, classes=tuple(classes),
    )
    jobs = [(i, k) for i in range(n_patients) for k in range(slides_per_patient)]
    for i, k in track(jobs, "Generating synthetic slides"):
        patient = f"{prefix}-{i + 1:04d}"
        cohort.labels[patient] = classes[int(positive[i])]
        slide = make_slide(
            slides_dir / f"{patient}-{k + 1}.tif", seed=int(seeds[i, k]), width=width, height=height, mpp=mpp,
            signal=bool(carries[i]), stain_shift=stain_shift, signal_fraction=float(fraction[i]),
        )
        cohort.slides.setdefault(patient, []).append(slide)
    extra = outcome_columns(cohort.slides, seed)  # a continuous and a survival target from the same signal
    _write_csv(cohort.clini_table, ["PATIENT", target, *extra],
               [[p, c, *(col[i] for col in extra.values())] for i, (p, c) in enumerate(cohort.labels.items())])
    _write_csv(cohort.slide_table, ["PATIENT", "FILENAME"],
               [[p, s.path.name] for p, slides in cohort.slides.items() for s in slides])
    masks = {s.path.stem: s.signal_mask for slides in cohort.slides.values() for s in slides}
    np.savez_compressed(cohort.ground_truth, signal_scale=np.float64(LOW_DS), mpp=np.float64(mpp), **masks)
    return cohort


def load_ground_truth(path: str | os.PathLike[str], slides_dir: str | os.PathLike[str] | None = None) -> dict[str, SyntheticSlide]:
    """Signal masks of a generated cohort by slide stem (``ground_truth.npz`` from :func:`make_cohort`)."""
    path = Path(path)
    slides_dir = Path(slides_dir) if slides_dir else path.parent / "slides"
    with np.load(path) as data:
        scale, mpp = float(data["signal_scale"]), float(data["mpp"])
        return {
            stem: SyntheticSlide(path=slides_dir / f"{stem}.tif", mpp=mpp, signal_mask=data[stem], signal_scale=scale)
            for stem in data.files
            if stem not in ("signal_scale", "mpp")
        }
