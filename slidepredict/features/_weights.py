"""Where an encoder's weights come from, in one order: explicit file -> ``local-dir:`` -> HF cache.

``random`` (or ``random-<seed>``) is accepted only when asked for explicitly, and is
recorded in the feature files' ``encoder_hash`` so random features are never mistaken
for real ones. Every weight, whatever its source, is loaded by :func:`load_state_dict`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slidepredict.core.digest import file_sha256
from slidepredict.core.errors import ConfigError, SlidePredictError
from slidepredict.features._registry import EncoderConfig

LOCAL_DIR = "local-dir:"
_RANDOM = re.compile(r"^random(?:-(\d+))?$")


class MissingWeightsError(SlidePredictError):
    """An encoder's weights are not available on this machine."""


@dataclass(frozen=True)
class ResolvedWeights:
    """The outcome of weight resolution: a file to load, random init, or nothing needed."""

    source: str  # "file", "local-dir", "hf-cache", "hf-download", "random", "none"
    path: Path | None = None
    seed: int | None = None

    @property
    def identity(self) -> str:
        """What goes into ``encoder_hash``: the weights' content hash, or ``random-<seed>``."""
        if self.source == "random":
            return f"random-{self.seed}"
        if self.path is None:
            return "none"
        return f"sha256:{file_sha256(self.path)}"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (tests and users set it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def find_in_cache(cfg: EncoderConfig) -> Path | None:
    """The first of the encoder's weight files present in the HF cache at its pinned revision."""
    from huggingface_hub import try_to_load_from_cache

    if cfg.hf_hub_id is None:
        return None
    for fname in cfg.weight_files:
        hit = try_to_load_from_cache(cfg.hf_hub_id, fname, cache_dir=hf_cache_dir(), revision=cfg.revision)
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
    return None


def weight_status(cfg: EncoderConfig) -> str:
    """One word for `slidepredict encoders`, without touching the network."""
    if not cfg.needs_weights:
        return "built-in"
    return "cached" if find_in_cache(cfg) is not None else "missing"


def resolve_weights(cfg: EncoderConfig, weights: str | os.PathLike[str] | None = None) -> ResolvedWeights:
    """Apply the resolution order; raise one clear :class:`MissingWeightsError` when nothing is found."""
    spec = None if weights is None else str(weights)
    if not cfg.needs_weights:
        if spec is not None and _RANDOM.match(spec) is None:
            raise ConfigError(f"encoder '{cfg.name}' has no weights to load; drop --weights {spec}")
        return ResolvedWeights("none")
    if spec is not None:
        m = _RANDOM.match(spec)
        if m:
            return ResolvedWeights("random", seed=int(m.group(1) or 0))
        if spec.startswith(LOCAL_DIR):
            return _from_local_dir(cfg, Path(spec[len(LOCAL_DIR) :]).expanduser())
        return _from_file(cfg, Path(spec).expanduser())
    cached = find_in_cache(cfg)
    if cached is not None:
        return ResolvedWeights("hf-cache", path=cached)
    reason = "HF_HUB_OFFLINE is set, so nothing was downloaded" if hf_offline() else _try_download(cfg)
    if isinstance(reason, Path):
        return ResolvedWeights("hf-download", path=reason)
    raise MissingWeightsError(missing_weights_message(cfg, reason))


def missing_weights_message(cfg: EncoderConfig, reason: str) -> str:
    """The one-line error: which encoder, where we looked, how to fetch the weights elsewhere."""
    repo, rev = cfg.hf_hub_id, cfg.revision
    return (
        f"no weights for encoder '{cfg.name}': no --weights given and {repo}@{rev} "
        f"({' or '.join(cfg.weight_files)}) is not in the Hugging Face cache {hf_cache_dir()} ({reason}). "
        f"On a connected machine accept the licence at https://huggingface.co/{repo}, run `hf auth login` and "
        f"`hf download {repo} --revision {rev}`, then copy that cache folder here (or point HF_HUB_CACHE at it); "
        "or pass --weights FILE or --weights local-dir:FOLDER. `--weights random` is for tests only."
    )


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """One quick connection to the hub, so an offline machine fails at once instead of after
    huggingface_hub's minute of retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def _try_download(cfg: EncoderConfig) -> Path | str:
    """Download into the cache when online; returns the path, or why it failed."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    if not hub_reachable():
        return "the Hugging Face hub is not reachable from this machine"
    reasons = []
    for fname in cfg.weight_files:
        try:
            path = hf_hub_download(cfg.hf_hub_id, fname, revision=cfg.revision, cache_dir=hf_cache_dir())
            return Path(path)
        except EntryNotFoundError:
            continue  # this repository ships the other file name
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
            reasons.append(f"download failed: {exc.__class__.__name__}")
            break
    return reasons[0] if reasons else "no weight file on the hub"


def _from_local_dir(cfg: EncoderConfig, folder: Path) -> ResolvedWeights:
    for fname in cfg.weight_files:
        if (folder / fname).is_file():
            return ResolvedWeights("local-dir", path=folder / fname)
    raise MissingWeightsError(
        f"no weights for encoder '{cfg.name}' in {LOCAL_DIR}{folder}: expected {' or '.join(cfg.weight_files)} "
        f"there (e.g. from `hf download {cfg.hf_hub_id} --revision {cfg.revision} --local-dir {folder}`)"
    )


def _from_file(cfg: EncoderConfig, path: Path) -> ResolvedWeights:
    if path.is_dir():
        raise ConfigError(f"--weights {path} is a folder; for a folder of hub files use --weights {LOCAL_DIR}{path}")
    if not path.is_file():
        raise MissingWeightsError(
            f"weights file {path} for encoder '{cfg.name}' not found; pass an existing .safetensors/.bin/.pth file, "
            f"{LOCAL_DIR}FOLDER, or nothing to use the Hugging Face cache"
        )
    return ResolvedWeights("file", path=path)




def load_state_dict(path: Path) -> dict[str, Any]:
    """Read a checkpoint safely: safetensors, or ``torch.load(weights_only=True)`` for pickles."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors/pickle raise many types on a bad file
        raise ConfigError(f"cannot read weights file {path}: {exc.__class__.__name__}: {exc}".strip()) from None
    for key in ("state_dict", "model", "teacher"):  # common training-checkpoint wrappers
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise ConfigError(f"weights file {path} holds a {type(sd).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in sd.items()}
