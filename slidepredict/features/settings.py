"""The `extract:` section: which encoder embeds the tiles, and how it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import field_validator

from slidepredict.core.device import Device
from slidepredict.core.settings import Settings, registered, setting


class ExtractSettings(Settings):
    """Tile embeddings. Only the encoder, its weights and stain normalisation change what a feature file holds."""

    encoder: str = setting("resnet50-trunc", "Encoder name (see `slidepredict encoders`).", short="-e")
    weights: str | None = setting(
        None, "Weights: a .safetensors/.bin/.pth file, 'local-dir:FOLDER', 'random' (tests only), or null for the "
        "Hugging Face cache (honours HF_HUB_OFFLINE).")
    stain_norm: Literal["none", "macenko"] = setting("none", "Stain normalisation before encoding.")
    stain_ref: Path | None = setting(None, "Reference H&E image for macenko (null: standard stain vectors).")
    batch_size: int = setting(64, "Tiles per forward pass.", gt=0)
    workers: int | None = setting(
        None, "DataLoader processes decoding tiles (0: decode in the main process; null: auto by device and cores).",
        ge=0)
    device: Device = setting("auto", "Where the encoder runs (auto: a CUDA GPU when there is one).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = setting(
        "auto", "Autocast precision (auto: bf16 where the hardware has it).")
    dtype: Literal["float32", "float16"] = setting("float32", "Stored feature type.")
    threads: int | None = setting(None, "Torch threads of the main process (null: torch's default).", gt=0)

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, v: str) -> str:
        return registered("encoders", v)
