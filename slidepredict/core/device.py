"""One device vocabulary for every stage: ``auto`` (a CUDA GPU when torch sees one), ``cpu`` or ``cuda``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from slidepredict.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> torch.device:
    """The torch device for a setting; asking for CUDA where there is none is a one-line error."""
    import torch

    if device not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)} (got {device!r})")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible to torch; use --device cpu or auto")
    return torch.device(device)
