"""Macenko normalisation and the stain-texture encoder on real H&E tiles (CRC-VAL-HE-7K)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2hed

from slidepredict.core.errors import ConfigError
from slidepredict.features.stain_norm import MacenkoNormalizer, estimate_stains, make_stain_normalizer
from slidepredict.features.stain_texture import FEATURE_NAMES, StainTexture, rgb2hed_torch


@pytest.fixture(scope="module")
def crc(data_dir) -> tuple[torch.Tensor, list[str]]:
    """32 real tiles (4 per tissue class) as float NCHW 0..255, and their class names."""
    files = sorted((data_dir / "tiles" / "crc-val-he-7k").glob("*.png"))
    rgb = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    return torch.from_numpy(rgb).permute(0, 3, 1, 2).float(), [f.name.split("-")[0] for f in files]


def _class_mean(feats: torch.Tensor, classes: list[str], name: str, column: str) -> float:
    rows = [i for i, c in enumerate(classes) if c == name]
    return float(feats[rows, FEATURE_NAMES.index(column)].mean())


def test_rgb2hed_matches_skimage(crc):
    x, _ = crc
    ours = rgb2hed_torch(x[:2] / 255).permute(0, 2, 3, 1).numpy()
    ref = np.stack([rgb2hed(x[i].permute(1, 2, 0).numpy().astype(np.uint8)) for i in range(2)])
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_stain_texture_dimension_and_names():
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == 52
    assert FEATURE_NAMES[:3] == ("rgb_mean_r", "rgb_mean_g", "rgb_mean_b")


def test_stain_texture_separates_tissue_types(crc):
    x, classes = crc
    feats = StainTexture()(x)
    assert feats.shape == (32, 52) and torch.isfinite(feats).all()
    # fat is mostly empty; tumour epithelium is packed with hematoxylin-dark nuclei
    assert _class_mean(feats, classes, "ADI", "tissue_fraction") < 0.5 < _class_mean(feats, classes, "TUM", "tissue_fraction")
    for col in ("nuclei0.04_density", "nuclei0.04_area", "hema_mean"):
        assert _class_mean(feats, classes, "TUM", col) > 2 * _class_mean(feats, classes, "ADI", col), col


def test_stain_texture_is_per_tile(crc):
    """A tile's features do not depend on what else is in the batch."""
    x, _ = crc
    model = StainTexture()
    torch.testing.assert_close(model(x[:8])[3], model(x[3:4])[0], rtol=1e-4, atol=1e-5)


def test_macenko_estimates_plausible_stains(crc):
    x, classes = crc
    he, max_c, ok = estimate_stains(x)
    tissue = [i for i, c in enumerate(classes) if c in ("TUM", "NORM", "STR", "MUS")]
    assert ok[tissue].all()
    h, e = he[tissue, :, 0], he[tissue, :, 1]
    assert (h[:, 0] > e[:, 0]).all()  # hematoxylin absorbs more red than eosin does
    torch.testing.assert_close(he.norm(dim=1), torch.ones(32, 2), atol=1e-4, rtol=0)


def test_macenko_removes_a_stain_shift(crc):
    x, classes = crc
    x = x[[i for i, c in enumerate(classes) if c in ("TUM", "NORM", "STR")]]
    shifted = (x * torch.tensor([1.0, 0.85, 1.1]).view(1, 3, 1, 1)).clamp(0, 255)
    norm = MacenkoNormalizer()
    a, b = norm(x), norm(shifted)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 255
    assert (a - b).abs().mean() < 0.6 * (x - shifted).abs().mean()


def test_macenko_passes_blank_tiles_through():
    white = torch.full((2, 3, 32, 32), 250.0)
    torch.testing.assert_close(MacenkoNormalizer()(white), white)


def test_macenko_reference_image(crc, tmp_path):
    x, classes = crc
    ref = tmp_path / "ref.png"
    Image.fromarray(x[classes.index("TUM")].permute(1, 2, 0).byte().numpy()).save(ref)
    norm = make_stain_normalizer("macenko", ref)
    assert norm.tag.startswith("macenko:ref.png:") and len(norm.tag) == len("macenko:ref.png:") + 12
    assert not torch.allclose(norm.he_ref, MacenkoNormalizer().he_ref)


def test_stain_norm_bad_input(tmp_path):
    with pytest.raises(ConfigError, match=r"^unknown --stain-norm 'reinhard'; choose one of: none, macenko$"):
        make_stain_normalizer("reinhard")
    with pytest.raises(ConfigError, match=r"^--stain-ref needs --stain-norm macenko$"):
        make_stain_normalizer("none", tmp_path / "x.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(ConfigError, match=r"^--stain-ref .*bad.png: cannot read the reference image \(UnidentifiedImageError\)$"):
        make_stain_normalizer("macenko", bad)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), (255, 255, 255)).save(blank)
    with pytest.raises(ConfigError, match=r"^--stain-ref .*blank.png: too little stained tissue to estimate reference stains$"):
        make_stain_normalizer("macenko", blank)
    assert make_stain_normalizer(None) is None and make_stain_normalizer("none") is None
