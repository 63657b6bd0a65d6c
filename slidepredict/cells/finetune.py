"""Fine-tune the last blocks of a timm encoder on an image cohort's units, saved as an encoder weights file.

Each unit (cell, tile or image) takes its image's label; a new linear head and the chosen blocks
learn together with augmentation (:mod:`.augment`), the rest of the backbone stays frozen. The
result is the whole backbone's state dict in one ``.safetensors`` file, loaded by the encoder
registry like any other weights (``--weights FILE``), so embedding, MIL training, deployment and
heatmaps need nothing new. The file's metadata records the images the encoder was tuned on; the
feature files it makes say per image whether it was one of them, and cross-validation refuses to
test on those (:func:`slidepredict.training.folds.check_held_out`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slidepredict.cells.augment import augment
from slidepredict.cells.images import Normalisation, cohort_ranges, load_rgb
from slidepredict.cells.table import IMAGE, ImageCohort
from slidepredict.cells.units import UnitSettings, crop, make_units, resize_square
from slidepredict.core.atomic import atomic_path, write_text_atomic
from slidepredict.core.digest import file_sha256
from slidepredict.core.errors import ConfigError, CohortError
from slidepredict.core.progress import track
from slidepredict.layout import TUNED_FILE, TUNED_RECORD as RECORD_FILE

log = logging.getLogger("slidepredict")
PROBE_UNITS = 4096  # training units whose untuned embeddings fit the head before tuning


@dataclass
class Units:
    """Training crops in memory at their stored size, each with its class index and image."""

    crops: np.ndarray  # (N, s, s, 3) uint8
    labels: np.ndarray  # (N,) int64
    images: np.ndarray  # (N,) index into the image list


def resolve_norm(cohort: ImageCohort, norm: Normalisation) -> Normalisation:
    """The cohort-wide intensity range from the whole table, as embedding computes it (so both see alike)."""
    if norm.scope == "cohort" and norm.ranges is None:
        return replace(norm, ranges=cohort_ranges(cohort.paths, norm))
    return norm


def collect_units(cohort: ImageCohort, images: list[str], labels: list[int], units: UnitSettings,
                  norm: Normalisation, px: int, per_image: int, seed: int) -> Units:
    """Up to ``per_image`` units of each image, kept small (a cell crop at its own size; whole images at ``px``)."""
    rng = np.random.default_rng(seed)
    paths = dict(zip(cohort.table[IMAGE].astype(str), cohort.paths))
    store = px if units.kind == "image" else min(units.size, px)
    crops, ys, where = [], [], []
    for i, (name, y) in enumerate(track(list(zip(images, labels)), "Cutting units for fine-tuning")):
        rgb = load_rgb(paths[name], norm)
        boxes = make_units(rgb, paths[name], name, units)
        if len(boxes) > per_image:
            boxes = boxes[np.sort(rng.choice(len(boxes), per_image, replace=False))]
        crops += [crop(rgb, b, store) for b in boxes]
        ys += [y] * len(boxes)
        where += [i] * len(boxes)
    if not crops:
        raise CohortError(f"no {units.kind} units found in the {len(images)} images to fine-tune on; check --unit")
    return Units(np.stack(crops), np.asarray(ys, np.int64), np.asarray(where, np.int64))


def _label(names: list[str]) -> str:
    """A group's name: 'layer3' for layer3.0-layer3.5; 'blocks.11 + norm' for one numbered block and the final norm."""
    numbers: dict[str, set[str]] = {}
    for n in names:
        parts = n.split(".")
        numbers.setdefault(parts[0], set()).update(parts[1:2] if len(parts) > 2 and parts[1].isdigit() else [])
    return " + ".join(f"{head}.{next(iter(n))}" if len(n) == 1 else head for head, n in numbers.items())


def tuned_parameters(backbone: nn.Module, used: nn.Module, blocks: int, name: str) -> tuple[list[str], list[nn.Parameter]]:
    """The last ``blocks`` of timm's coarse block groups among those the (truncated) encoder uses."""
    from timm.models import group_parameters

    matcher = getattr(backbone, "group_matcher", None)
    if matcher is None:
        raise ConfigError(f"encoder '{name}' ({type(backbone).__name__}) does not name its blocks; fine-tune a "
                          "timm encoder such as resnet50-trunc")
    params = dict(backbone.named_parameters())
    in_use = {id(p) for p in used.parameters()}
    groups = [names for _, names in sorted(group_parameters(backbone, matcher(coarse=True)).items())
              if any(id(params[n]) in in_use for n in names)]
    if blocks > len(groups):
        raise ConfigError(f"--blocks {blocks}: encoder '{name}' uses {len(groups)} blocks "
                          f"({', '.join(_label(g) for g in groups)}); use --blocks {len(groups)} or fewer")
    chosen = groups[-blocks:]
    return [_label(g) for g in chosen], [params[n] for g in chosen for n in g if id(params[n]) in in_use]


def _batch(units: Units, idx: np.ndarray, px: int, names: list[str], tune: Any, gen: torch.Generator | None) -> torch.Tensor:
    """uint8 (B, px, px, 3) for the encoder: resized as embedding resizes, augmented when ``gen`` is given."""
    x = torch.from_numpy(np.stack([resize_square(c, px) for c in units.crops[idx]]))
    if gen is None or not names:
        return x
    x = augment(x.permute(0, 3, 1, 2).float(), names, tune, gen)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _pass(runner: Any, head: nn.Module, units: Units, idx: np.ndarray, loss_fn: nn.Module, tune: Any,
          opt: torch.optim.Optimizer | None, gen: torch.Generator | None, what: str) -> tuple[float, float]:
    """One epoch's training (``opt`` given) or validation pass: mean loss and unit accuracy."""
    px = int(runner.encoder.cfg.input_px)
    total, right, n = 0.0, 0, 0
    batches = [idx[i : i + tune.batch_size] for i in range(0, len(idx), tune.batch_size)]
    for part in track(batches, what):
        x = _batch(units, part, px, tune.augment, tune, gen).to(runner.device)
        y = torch.from_numpy(units.labels[part]).to(runner.device)
        with torch.set_grad_enabled(opt is not None), runner.autocast():
            logits = head(runner.module(x)).float()
            loss = loss_fn(logits, y)
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        total += float(loss.detach()) * len(part)
        right += int((logits.argmax(1) == y).sum())
        n += len(part)
    return total / max(n, 1), right / max(n, 1)


class _Standardise(nn.Module):
    """Fixed per-feature centring and scaling: embeddings often vary by 1e-2 while their means differ by 1."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@torch.no_grad()
def _embed(runner: Any, units: Units, idx: np.ndarray, tune: Any) -> torch.Tensor:
    """Untuned embeddings of the units ``idx``, without augmentation (no graph kept: thousands of units)."""
    px = int(runner.encoder.cfg.input_px)
    return torch.cat([runner.forward(_batch(units, idx[i : i + tune.batch_size], px, [], tune, None))
                      for i in range(0, len(idx), tune.batch_size)])


def _probe(runner: Any, units: Units, tune: Any, n_classes: int, n: int = PROBE_UNITS) -> nn.Module:
    """Standardiser and linear head fitted on the untuned embeddings of up to ``n`` training units (balanced
    over classes).

    Tuning then starts from a head that already reads the frozen features (linear probing, then fine-tuning),
    so the first steps' gradients are not a random head's, which could wreck the features (a ResNet-50's
    layer3 trained from a random head lost its signal in one step on 24 CRC tiles: loss 2.7 -> 23.5).
    The fitted head is also the untuned baseline each epoch must beat on validation.
    """
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    per_class = max(1, n // n_classes)
    idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(units.labels == c))[:per_class]
                                  for c in range(n_classes)]))
    feats, y = _embed(runner, units, idx, tune), units.labels[idx]
    scale = _Standardise(feats.mean(0), feats.std(0) + 1e-6)
    fit = LogisticRegression(class_weight="balanced", max_iter=2000).fit(scale(feats).numpy(), y)
    linear = nn.Linear(feats.shape[1], n_classes)
    coef, bias = torch.from_numpy(fit.coef_).float(), torch.from_numpy(fit.intercept_).float()  # every class has units
    if n_classes == 2:  # one score z: logits (0, z) give the same probabilities
        coef, bias = torch.cat([torch.zeros_like(coef), coef]), torch.cat([torch.zeros_like(bias), bias])
    with torch.no_grad():
        linear.weight.copy_(coef)
        linear.bias.copy_(bias)
    return nn.Sequential(scale, linear).to(runner.device)


def train_blocks(runner: Any, backbone: nn.Module, blocks: int, train: Units, val: Units | None, n_classes: int,
                 tune: Any, seed: int) -> tuple[list[str], list[dict[str, float]], int]:
    """Train the last ``blocks`` and a linear head; leaves the backbone at its best epoch (lowest validation loss).

    Epoch 0 is the untuned encoder with its fitted linear head: when no epoch of tuning beats it on the
    validation images, the untuned weights are kept and the record says so (``best_epoch`` 0).
    """
    module = runner.module.eval()  # frozen batch-norm statistics: batches of a few cells are too small to update them
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = _probe(runner, train, tune, n_classes)
    labels, params = tuned_parameters(backbone, module, blocks, runner.encoder.name)
    for p in module.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    counts = np.bincount(train.labels, minlength=n_classes).astype(np.float32)
    weight = torch.tensor(len(train.labels) / (n_classes * np.maximum(counts, 1)), device=runner.device)
    loss_fn = nn.CrossEntropyLoss(weight=weight)  # balanced: a rare class is not learned away
    opt = torch.optim.AdamW([{"params": params, "lr": tune.lr}, {"params": head.parameters(), "lr": tune.lr}],
                            weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    order = np.random.default_rng(seed)
    history: list[dict[str, float]] = []
    best, best_loss = 0, 0.0  # without validation images the last epoch is kept (its score is -epoch)
    if val is not None:
        best_loss, acc = _pass(runner, head, val, np.arange(len(val.labels)), loss_fn, tune, None, None,
                               "Validating the untuned encoder")
        history.append({"epoch": 0, "val_loss": best_loss, "val_accuracy": acc})
        log.info("untuned encoder with a fitted linear head: val_loss %.3f, val_accuracy %.3f", best_loss, acc)
    kept = copy.deepcopy(backbone.state_dict())
    for epoch in range(1, tune.epochs + 1):
        idx = order.permutation(len(train.labels))
        loss, acc = _pass(runner, head, train, idx, loss_fn, tune, opt, gen, f"Fine-tuning {', '.join(labels)}: "
                          f"epoch {epoch}/{tune.epochs}")
        row = {"epoch": epoch, "train_loss": loss, "train_accuracy": acc}
        if val is not None:
            row["val_loss"], row["val_accuracy"] = _pass(runner, head, val, np.arange(len(val.labels)), loss_fn, tune,
                                                         None, None, f"Validating epoch {epoch}")
        history.append(row)
        log.info("fine-tuning epoch %d: %s", epoch, ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "epoch"))
        score = row.get("val_loss", -epoch)
        if score < best_loss:
            best, best_loss, kept = epoch, score, copy.deepcopy(backbone.state_dict())
    if best == 0:
        log.warning("no epoch of fine-tuning lowered the validation loss below the untuned encoder's (%.3f): the "
                    "untuned weights are kept (best_epoch 0); try a lower --tune-lr or more images", best_loss)
    backbone.load_state_dict(kept)
    for p in module.parameters():
        p.requires_grad_(False)
    return labels, history, best


def images_digest(images: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(images)).encode()).hexdigest()[:16]


def save_tuned(backbone: nn.Module, path: Path, record: dict[str, Any]) -> Path:
    """The whole backbone's weights with the tuning record as metadata, written atomically."""
    from safetensors.torch import save_file

    from slidepredict.features._builder import TUNING_KEY

    tensors = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={TUNING_KEY: json.dumps(record)})
    return path


def finetune_encoder(cohort: ImageCohort, target: str, train: list[str], val: list[str], units: UnitSettings,
                     norm: Normalisation, tune: Any, extract: Any, seed: int, out_dir: Path) -> Path:
    """Tune ``extract.encoder`` on the units of the ``train`` images (epoch chosen on ``val``) into ``out_dir``.

    A finished ``encoder.safetensors`` made with the same settings and images is reused; one made
    otherwise is refused rather than overwritten.
    """
    from slidepredict.features._builder import Encoder, encoder_hash, load_backbone, read_tuning, wrap_backbone
    from slidepredict.features._registry import get_encoder
    from slidepredict.features._weights import resolve_weights
    from slidepredict.features.extraction import Runner

    cfg = get_encoder(extract.encoder)
    if cfg.kind != "timm":
        raise ConfigError(f"encoder '{cfg.name}' has no trainable backbone; fine-tune a timm encoder such as "
                          "resnet50-trunc (--encoder)")
    resolved = resolve_weights(cfg, extract.weights)
    values = dict(zip(cohort.table[IMAGE].astype(str), cohort.table[target].astype(str)))
    categories = sorted({values[i] for i in train})
    if len(categories) < 2:
        raise CohortError(f"fine-tuning for '{target}' needs two classes among its {len(train)} training images; "
                          f"they are all '{categories[0] if categories else '-'}'")
    settings = {"encoder": cfg.name, "base_weights": resolved.identity, "target": target, "unit": units.kind,
                "unit_size": units.size, "normalisation": norm.describe(), "seed": seed,
                "train_images": images_digest(train), "val_images": images_digest(val), **tune.model_dump()}
    path = Path(out_dir) / TUNED_FILE
    if path.is_file():
        from slidepredict.features._weights import ResolvedWeights

        before = (read_tuning(ResolvedWeights("file", path=path)) or {}).get("settings", {})
        diff = sorted(k for k in settings if before.get(k) != settings[k])
        if not diff:
            log.info("%s exists with these settings, skipping fine-tuning", path)
            return path
        raise ConfigError(f"{path} was fine-tuned with {diff[0]}={before.get(diff[0])!r}, this run asks for "
                          f"{settings[diff[0]]!r}; use a new --out folder or delete it")
    backbone = load_backbone(cfg, resolved)
    encoder = Encoder(cfg, wrap_backbone(backbone, cfg), resolved, encoder_hash(cfg, resolved))
    runner = Runner(encoder, extract)
    px = int(cfg.input_px)
    cut = {i: categories.index(values[i]) for i in train + val if values[i] in categories}
    paths = dict(zip(cohort.table[IMAGE].astype(str), cohort.paths))
    train_units = collect_units(cohort, train, [cut[i] for i in train], units, norm, px, tune.units_per_image, seed)
    missing = [c for k, c in enumerate(categories) if not (train_units.labels == k).any()]
    if missing:
        raise CohortError(f"no {units.kind} units were found in the training images of class '{missing[0]}' of "
                          f"'{target}'; check --unit and --unit-size on those images")
    val = [i for i in val if i in cut]
    val_units = collect_units(cohort, val, [cut[i] for i in val], units, norm, px, tune.units_per_image, seed) if val else None
    labels, history, best = train_blocks(runner, backbone, tune.blocks, train_units, val_units, len(categories), tune, seed)
    record = {"encoder": cfg.name, "base_weights": resolved.identity, "target": target, "categories": categories,
              "blocks": labels, "best_epoch": best, "history": history, "units": int(len(train_units.labels)),
              "val_units": int(len(val_units.labels)) if val_units is not None else 0,
              "images": sorted(set(train) | set(val)), "n_train_images": len(train), "n_val_images": len(val),
              "image_sha256": sorted({file_sha256(paths[i]) for i in set(train) | set(val)}),
              "precision": runner.precision, "device": str(runner.device), "settings": settings}
    out = Path(out_dir)
    write_text_atomic(out / RECORD_FILE, json.dumps({k: v for k, v in record.items() if k not in ("images", "image_sha256")},
                                                    indent=1))
    return save_tuned(backbone.cpu(), path, record)  # written last: its presence marks the tuning done
