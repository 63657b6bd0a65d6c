"""``stain-texture``: a hand-crafted tile encoder that needs no weights (offline, CPU-fast).

Everything is computed on the whole batch at once with torch, on whatever device the
batch is on. Input: float RGB (B, 3, H, W) in 0..255. Output: (B, 52), in this order:

===============  ====  =============================================================
group            dims  what
===============  ====  =============================================================
colour              6  RGB mean and standard deviation (0..1)
stain              15  hematoxylin, eosin, DAB after colour deconvolution
                       (skimage's ``rgb2hed`` matrix): mean, std, 10/50/90th percentile
tissue              1  fraction of pixels with optical density above background
texture            24  hematoxylin and eosin at scales 1, 2, 4 px: gradient magnitude
                       mean and std, mean absolute Laplacian, mean local (5x5) std
nuclei              6  at a low and a high hematoxylin threshold: nuclear area fraction,
                       nuclei per 10^4 px (peaks of smoothed hematoxylin), mean size
===============  ====  =============================================================
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.color import hed_from_rgb
from torch import nn
from torch.nn import functional as F

from slidepredict.features.stain_texture_spec import (  # noqa: F401  (re-exported)
    FEATURE_NAMES,
    NUCLEUS_LEVELS,
    SCALES,
    STAINS,
    VERSION,
)

BACKGROUND_OD = 0.25  # summed optical density below which a pixel is glass
PEAK_WINDOW = 7  # px; about one nucleus diameter at 224 px per 256 um


def rgb2hed_torch(rgb01: torch.Tensor) -> torch.Tensor:
    """skimage.color.rgb2hed on a (B, 3, H, W) tensor in 0..1, vectorised over the batch."""
    m = torch.as_tensor(np.asarray(hed_from_rgb), dtype=rgb01.dtype, device=rgb01.device)
    od = torch.log(rgb01.clamp_min(1e-6)) / float(np.log(1e-6))
    return torch.einsum("bchw,cd->bdhw", od, m).clamp_min(0)


def _percentiles(x: torch.Tensor, qs: tuple[float, ...]) -> torch.Tensor:
    """Per-row percentiles of (B, N) by sorting (torch.quantile caps the input size)."""
    srt, _ = torch.sort(x, dim=1)
    n = x.shape[1]
    idx = torch.tensor([min(n - 1, round(q * (n - 1))) for q in qs], device=x.device)
    return srt[:, idx]


def _channel_stats(x: torch.Tensor) -> torch.Tensor:
    """(B, N) -> (B, 5): mean, std, 10th/50th/90th percentile."""
    return torch.cat([x.mean(1, keepdim=True), x.std(1, keepdim=True), _percentiles(x, (0.1, 0.5, 0.9))], dim=1)


def _kernels(device: torch.device) -> torch.Tensor:
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=device) / 8
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=device)
    return torch.stack([sobel_x, sobel_x.T, lap])[:, None]


def _gaussian(x: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    r = int(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))


def _texture(chan: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, len(SCALES), 4) gradient/Laplacian/local-variation statistics."""
    b, c, h, w = chan.shape
    x = chan.reshape(b * c, 1, h, w)
    k = _kernels(x.device).to(x.dtype)
    out = []
    for s in SCALES:
        xs = F.avg_pool2d(x, s) if s > 1 else x
        resp = F.conv2d(F.pad(xs, (1, 1, 1, 1), mode="replicate"), k)
        grad = torch.sqrt(resp[:, 0] ** 2 + resp[:, 1] ** 2 + 1e-12).flatten(1)
        lap = resp[:, 2].abs().flatten(1)
        mu = F.avg_pool2d(xs, 5, stride=1, padding=2, count_include_pad=False)
        var = F.avg_pool2d(xs * xs, 5, stride=1, padding=2, count_include_pad=False) - mu * mu
        local = torch.sqrt(var.clamp_min(0) + 1e-12).flatten(1)
        out.append(torch.stack([grad.mean(1), grad.std(1), lap.mean(1), local.mean(1)], dim=1))
    return torch.stack(out, dim=1).reshape(b, c, len(SCALES), 4)


def _nuclei(hema: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) hematoxylin -> (B, len(NUCLEUS_LEVELS), 3) area fraction, density, size."""
    smooth = _gaussian(hema)
    peaks = smooth == F.max_pool2d(smooth, PEAK_WINDOW, stride=1, padding=PEAK_WINDOW // 2)
    npix = hema.shape[-1] * hema.shape[-2]
    out = []
    for level in NUCLEUS_LEVELS:
        mask = smooth > level
        area = mask.flatten(1).sum(1).to(hema.dtype)
        count = (peaks & mask).flatten(1).sum(1).to(hema.dtype)
        out.append(torch.stack([area / npix, count * 1e4 / npix, area / count.clamp_min(1)], dim=1))
    return torch.stack(out, dim=1)


class StainTexture(nn.Module):
    """The ``stain-texture`` encoder as a module, so it runs through the same extraction loop."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, rgb255: torch.Tensor) -> torch.Tensor:
        with torch.autocast(rgb255.device.type, enabled=False):
            rgb = rgb255.float() / 255.0
            b = rgb.shape[0]
            hed = rgb2hed_torch(rgb)
            colour = torch.cat([rgb.flatten(2).mean(2), rgb.flatten(2).std(2)], dim=1)
            flat = hed[:, :, ::2, ::2].flatten(2)  # a quarter of the pixels is plenty for percentiles
            stain = torch.cat([_channel_stats(flat[:, i]) for i in range(len(STAINS))], dim=1)
            od = -torch.log10(rgb.clamp_min(1 / 255)).sum(1)
            tissue = (od > BACKGROUND_OD).flatten(1).float().mean(1, keepdim=True)
            texture = _texture(hed[:, :2]).reshape(b, -1)
            nuclei = _nuclei(hed[:, :1]).reshape(b, -1)
            return torch.cat([colour, stain, tissue, texture, nuclei], dim=1)
