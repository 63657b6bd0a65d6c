"""Macenko stain normalisation, batched: every tile gets its own stain matrix in one pass.

Macenko et al., ISBI 2009: estimate each tile's hematoxylin and eosin optical-density
vectors from the extreme angles of its pixels in the plane of the two main eigenvectors,
then re-render the tile with a reference image's stain vectors and concentration range.
Runs on the extraction device as part of the model's forward, so no worker does it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slidepredict.core.errors import ConfigError

IO = 240.0  # transmitted light intensity (bright background)
BETA = 0.15  # optical density below which a pixel is treated as background
ALPHA = 0.01  # robust extreme angles: 1st and 99th percentile
MIN_TISSUE_PX = 64  # tiles with fewer stained pixels are passed through unchanged
# The reference stain vectors and 99th-percentile concentrations commonly used with Macenko.
DEFAULT_HE = ((0.5626, 0.2159), (0.7201, 0.8012), (0.4062, 0.5581))
DEFAULT_MAX_C = (1.9705, 1.0308)
STAIN_NORM_METHODS = ("none", "macenko")


def _od(rgb255: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) 0..255 -> (B, 3, N) optical density."""
    return -torch.log((rgb255.flatten(2).float() + 1.0) / IO)


def _nanpercentile(x: torch.Tensor, q: float) -> torch.Tensor:
    return torch.nanquantile(x, q, dim=-1)


def estimate_stains(rgb255: torch.Tensor, stride: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per tile: H&E matrix (B, 3, 2), 99th-percentile concentrations (B, 2), usable mask (B,)."""
    od = _od(rgb255[:, :, ::stride, ::stride])  # fitting on a subsample is as good and 4x cheaper
    keep = (od > BETA).all(dim=1)  # (B, N)
    w = keep.to(od.dtype)
    n = w.sum(1).clamp_min(1)
    mu = (od * w[:, None]).sum(2) / n[:, None]
    cen = (od - mu[..., None]) * w[:, None]
    cov = cen @ cen.transpose(1, 2) / n[:, None, None]
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    plane = vecs[:, :, 1:3]  # (B, 3, 2): the two main directions
    proj = plane.transpose(1, 2) @ od  # (B, 2, N)
    phi = torch.atan2(proj[:, 1], proj[:, 0]).masked_fill(~keep, float("nan"))
    lo, hi = _nanpercentile(phi, ALPHA), _nanpercentile(phi, 1 - ALPHA)
    v_lo = (plane @ torch.stack([torch.cos(lo), torch.sin(lo)], 1)[..., None])[..., 0]
    v_hi = (plane @ torch.stack([torch.cos(hi), torch.sin(hi)], 1)[..., None])[..., 0]
    h_first = (v_lo[:, 0] > v_hi[:, 0])[:, None]
    he = torch.stack([torch.where(h_first, v_lo, v_hi), torch.where(h_first, v_hi, v_lo)], dim=2)
    he = he * torch.sign(he.sum(1, keepdim=True))  # eigenvector signs are arbitrary; OD is positive
    ok = (keep.sum(1) >= MIN_TISSUE_PX) & torch.isfinite(he).all(dim=(1, 2))
    he = torch.where(ok[:, None, None], he, torch.tensor(DEFAULT_HE, dtype=he.dtype, device=he.device))
    conc = torch.linalg.pinv(he) @ od
    max_c = torch.quantile(conc, 0.99, dim=2)
    return he, max_c, ok & (max_c > 0).all(dim=1)


class MacenkoNormalizer(nn.Module):
    """Maps float RGB (B, 3, H, W) in 0..255 onto the reference stain appearance."""

    def __init__(self, he_ref: torch.Tensor | None = None, max_c_ref: torch.Tensor | None = None, tag: str = "macenko"):
        super().__init__()
        self.register_buffer("he_ref", torch.tensor(DEFAULT_HE) if he_ref is None else he_ref.reshape(3, 2).float())
        self.register_buffer("max_c_ref", torch.tensor(DEFAULT_MAX_C) if max_c_ref is None else max_c_ref.reshape(2).float())
        self.tag = tag

    @classmethod
    def from_image(cls, path: str | os.PathLike[str]) -> MacenkoNormalizer:
        """Fit the reference to an H&E image (a typical well-stained tile or region)."""
        from PIL import Image

        path = Path(path)
        try:
            with Image.open(path) as im:
                rgb = np.array(im.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--stain-ref {path}: cannot read the reference image ({exc.__class__.__name__})") from None
        he, max_c, ok = estimate_stains(torch.from_numpy(rgb).permute(2, 0, 1)[None].float())
        if not bool(ok[0]):
            raise ConfigError(f"--stain-ref {path}: too little stained tissue to estimate reference stains")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        return cls(he[0], max_c[0], tag=f"macenko:{path.name}:{digest}")

    def forward(self, rgb255: torch.Tensor) -> torch.Tensor:
        with torch.autocast(rgb255.device.type, enabled=False):
            x = rgb255.float()
            b, _, h, w = x.shape
            he, max_c, ok = estimate_stains(x)
            od = _od(x)
            conc = torch.linalg.pinv(he) @ od
            scale = torch.where(ok[:, None], self.max_c_ref / max_c.clamp_min(1e-6), torch.ones_like(max_c))
            out = IO * torch.exp(-(self.he_ref @ (conc * scale[..., None])))
            out = out.clamp(0, 255).reshape(b, 3, h, w)
            out = torch.where(ok[:, None, None, None], out, x)
            return out.contiguous(memory_format=torch.channels_last)


def make_stain_normalizer(method: str | None, reference: str | os.PathLike[str] | None = None) -> MacenkoNormalizer | None:
    """``None``/"none" -> no normalisation; "macenko" with an optional reference image."""
    method = (method or "none").lower()
    if method not in STAIN_NORM_METHODS:
        raise ConfigError(f"unknown --stain-norm {method!r}; choose one of: {', '.join(STAIN_NORM_METHODS)}")
    if method == "none":
        if reference is not None:
            raise ConfigError("--stain-ref needs --stain-norm macenko")
        return None
    return MacenkoNormalizer.from_image(reference) if reference is not None else MacenkoNormalizer()
