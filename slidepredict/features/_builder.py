"""Build an encoder from its config and load its weights: the one loading path for every source.

The backbone is built locally from ``cfg.arch`` (on the meta device, so nothing is
initialised for nothing), then the resolved weight file is assigned into it, whatever its
origin (HF cache, ``local-dir:``, explicit file). ``random`` builds a seeded random init.
The result is a :class:`TileEncoder` that takes the uint8 NHWC batches the DataLoader
yields and does the float conversion, stain normalisation and mean/std on the device.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from slidepredict.core.errors import ConfigError
from slidepredict.features import stain_texture_spec
from slidepredict.features._registry import EncoderConfig, get_encoder
from slidepredict.features._weights import ResolvedWeights, load_state_dict, resolve_weights


def _timm_kwargs(cfg: EncoderConfig) -> dict:
    """Hub-config kwargs with layer names resolved to timm classes (kept as strings in configs for hashing)."""
    from timm.layers import SwiGLUPacked

    kwargs = dict(cfg.arch_kwargs)
    layers = {"swiglu_packed": SwiGLUPacked}
    if "mlp_layer" in kwargs:
        kwargs["mlp_layer"] = layers[kwargs["mlp_layer"]]
    return kwargs


def _build_timm(cfg: EncoderConfig) -> nn.Module:
    import timm

    return timm.create_model(cfg.arch, pretrained=False, num_classes=0, **_timm_kwargs(cfg))


def _build_stain_texture(cfg: EncoderConfig) -> nn.Module:
    from slidepredict.features.stain_texture import StainTexture

    return StainTexture()


# Builders by ``EncoderConfig.kind``: a new family of encoders adds one entry here.
BUILDERS: dict[str, Callable[[EncoderConfig], nn.Module]] = {
    "timm": _build_timm,
    "stain-texture": _build_stain_texture,
}


def build_backbone(cfg: EncoderConfig, seed: int = 0, device: str | torch.device | None = None) -> nn.Module:
    """The architecture as the hub weights expect it, randomly initialised (deterministic per seed).

    ``device="meta"`` builds the structure without allocating or initialising anything,
    which is how real weights are loaded: a 1.1B-parameter ViT-g skips ~30 s of random init.
    """
    with torch.random.fork_rng(devices=[]), (torch.device(device) if device else contextlib.nullcontext()):
        torch.manual_seed(seed)
        return BUILDERS[cfg.kind](cfg)


def load_weights_into(model: nn.Module, weights: ResolvedWeights, cfg: EncoderConfig) -> nn.Module:
    """Load a weight file strictly (only a classifier head the encoder drops may be left over).

    Tensors are assigned, so ``model`` may live on the meta device; they take the dtype
    the architecture declares, whatever precision the checkpoint was saved in.
    """
    if weights.path is None:
        return model
    sd = load_state_dict(weights.path)
    head = getattr(model, "pretrained_cfg", {}).get("classifier") or "head"
    own = model.state_dict()
    sd = {k: v for k, v in sd.items() if k in own or not k.startswith(f"{head}.")}
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    if missing or unexpected:
        raise ConfigError(
            f"weights file {weights.path} does not fit encoder '{cfg.name}' ({cfg.arch}): "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    sd = {k: v.to(own[k].dtype) for k, v in sd.items()}
    try:
        model.load_state_dict(sd, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise ConfigError(f"weights file {weights.path} does not fit encoder '{cfg.name}': {first}") from None
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:  # a non-persistent buffer the file cannot provide: rebuild it for real
        real = build_backbone(cfg)
        real.load_state_dict(sd, strict=True)
        return real
    return model


def _truncate(model: nn.Module, after: str) -> nn.Module:
    """Keep the children up to and including ``after``, then average-pool (e.g. ResNet-50 layer 3)."""
    kept = []
    for name, child in model.named_children():
        kept.append(child)
        if name == after:
            return nn.Sequential(*kept, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    raise ValueError(f"{type(model).__name__} has no child {after!r}")


class TileEncoder(nn.Module):
    """uint8 (B, H, W, 3) tiles -> float (B, dim) embeddings, all on the model's device."""

    def __init__(self, backbone: nn.Module, cfg: EncoderConfig, stain_norm: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.stain_norm = stain_norm
        self.pooling = cfg.pooling
        self.normalise = cfg.kind != "stain-texture"  # hand-crafted features want raw RGB
        self.num_prefix_tokens = int(getattr(backbone, "num_prefix_tokens", 1))
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1) * 255.0)

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        x = tiles.permute(0, 3, 1, 2).float()  # an NHWC buffer viewed as NCHW is channels_last already
        if self.stain_norm is not None:
            x = self.stain_norm(x)
        if self.normalise:
            x = (x - self.mean) / self.std
        out = self.backbone(x)
        if self.pooling == "cls+mean":
            out = torch.cat([out[:, 0], out[:, self.num_prefix_tokens :].mean(1)], dim=1)
        return out.float()


# Where a fine-tuned encoder's weights file records what it was tuned on (safetensors metadata).
TUNING_KEY = "slidepredict.finetune"


@dataclass
class Encoder:
    """A ready-to-run encoder and the provenance that goes into every feature file.

    ``tuning`` is what a fine-tuned weights file records (``slidepredict finetune``): the target,
    the blocks tuned and the images seen, so features of those images can be told apart from
    features of images the encoder never saw (the held-out ones).
    """

    cfg: EncoderConfig
    module: TileEncoder
    weights: ResolvedWeights
    encoder_hash: str
    tuning: dict | None = None

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def tuned_on(self) -> frozenset[str]:
        """Content hashes (sha256) of the images the encoder was fine-tuned on: the same file under another
        name or folder is still recognised; empty for an untuned encoder."""
        return frozenset(self.tuning["image_sha256"]) if self.tuning else frozenset()


def encoder_hash(cfg: EncoderConfig, weights: ResolvedWeights) -> str:
    """Short hash of what determines the features: architecture, preprocessing and the weights."""
    spec = {
        "name": cfg.name, "kind": cfg.kind, "arch": cfg.arch, "arch_kwargs": dict(cfg.arch_kwargs),
        "input_px": cfg.input_px, "mean": cfg.mean, "std": cfg.std, "pooling": cfg.pooling,
        "truncate_after": cfg.truncate_after, "weights": weights.identity,
        "stain_texture": stain_texture_spec.VERSION if cfg.kind == "stain-texture" else None,
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{digest}-{weights.identity}" if weights.source == "random" else digest


def load_backbone(cfg: EncoderConfig, resolved: ResolvedWeights) -> nn.Module:
    """The whole architecture with its weights (before truncation): what fine-tuning trains and saves."""
    if resolved.path is not None:
        return load_weights_into(build_backbone(cfg, device="meta"), resolved, cfg)
    return build_backbone(cfg, seed=resolved.seed or 0)


def wrap_backbone(backbone: nn.Module, cfg: EncoderConfig, stain_norm: nn.Module | None = None) -> TileEncoder:
    """Truncate where the config says and wrap: the truncated module shares the backbone's parameters."""
    if cfg.truncate_after:
        backbone = _truncate(backbone, cfg.truncate_after)
    return TileEncoder(backbone, cfg, stain_norm)


def read_tuning(weights: ResolvedWeights) -> dict | None:
    """The fine-tuning record a weights file carries (None: not tuned here, or not a safetensors file)."""
    if weights.path is None or weights.path.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    with safe_open(str(weights.path), "pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta[TUNING_KEY]) if TUNING_KEY in meta else None


def load_encoder(
    name: str,
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    stain_norm: nn.Module | None = None,
) -> Encoder:
    """Resolve weights (see :mod:`._weights`), build, load, and move to ``device`` in eval mode."""
    cfg = get_encoder(name)
    resolved = resolve_weights(cfg, weights)
    tuning = read_tuning(resolved)
    if tuning is not None and tuning.get("encoder") != cfg.name:
        raise ConfigError(f"weights file {resolved.path} was fine-tuned from encoder '{tuning.get('encoder')}'; "
                          f"use --encoder {tuning.get('encoder')}")
    module = wrap_backbone(load_backbone(cfg, resolved), cfg, stain_norm).eval().to(device)
    module = module.to(memory_format=torch.channels_last)
    return Encoder(cfg=cfg, module=module, weights=resolved, encoder_hash=encoder_hash(cfg, resolved), tuning=tuning)
