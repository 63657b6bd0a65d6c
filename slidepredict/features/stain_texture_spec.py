"""What the ``stain-texture`` encoder outputs, without torch: its feature names and version.

Kept apart from :mod:`slidepredict.features.stain_texture` (torch, scikit-image) so that the
encoder registry can report the dimension, and ``encoder_hash`` the version, cheaply.
"""

from __future__ import annotations

STAINS = ("hema", "eosin", "dab")
SCALES = (1, 2, 4)
# Hematoxylin levels (rgb2hed units) that count as nucleus, read off real H&E tiles
# (CRC-VAL-HE-7K): glass and most stroma lie below the low one, dense chromatin above the high one.
NUCLEUS_LEVELS = (0.04, 0.07)


def _feature_names() -> tuple[str, ...]:
    names = [f"rgb_mean_{c}" for c in "rgb"] + [f"rgb_std_{c}" for c in "rgb"]
    for s in STAINS:
        names += [f"{s}_{stat}" for stat in ("mean", "std", "p10", "p50", "p90")]
    names.append("tissue_fraction")
    for s in STAINS[:2]:
        for k in SCALES:
            names += [f"{s}_s{k}_{stat}" for stat in ("grad_mean", "grad_std", "laplace", "local_std")]
    for level in NUCLEUS_LEVELS:
        names += [f"nuclei{level:g}_{stat}" for stat in ("area", "density", "size")]
    return tuple(names)


FEATURE_NAMES = _feature_names()
VERSION = "1"  # bump when a feature's definition changes; part of encoder_hash
