"""Bags for Lightning: sampled to ``bag_size`` tiles in training, complete at evaluation, padded with a mask.

Sampling draws come from a seeded sampler in the main process (not from worker RNG state), so a
run is reproducible whatever the number of DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from slidepredict.cohort.build import Cohort


@dataclass
class BagBatch:
    feats: torch.Tensor  # (B, N, D) float32, zero padded
    coords: torch.Tensor | None  # (B, N, 2) tile positions in microns (Cohort.load_bag), None when any bag has none
    mask: torch.Tensor  # (B, N) bool, True on real tiles
    labels: torch.Tensor  # (B,) class index, -1 when unlabelled
    index: torch.Tensor  # (B,) position of each bag in the cohort


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields (bag index, sampling seed); each pass over it is a new, reproducible epoch."""

    def __init__(self, n: int, shuffle: bool, seed: int, spread: np.ndarray | None = None) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0
        self.spread = spread  # survival: event patients, spaced evenly through each shuffled epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        seeds = rng.integers(0, 2**31 - 1, size=self.n)
        if self.shuffle and self.spread is not None:  # the k-th of E events sits at (k + u) / E of the epoch
            key = np.empty(self.n)
            for group in (self.spread[order], ~self.spread[order]):
                m = int(group.sum())
                key[group] = (np.arange(m) + rng.random()) / max(m, 1)
            order = order[np.argsort(key, kind="stable")]
        yield from zip(order.tolist(), seeds.tolist())


CACHE_BYTES = 1 << 30  # cohorts whose features fit in this are read once and kept in memory


class BagDataset(Dataset):
    """One item per patient: features, coords and label, read from h5 on access.

    Training draws thousands of bags; when the whole cohort's features are small (CACHE_BYTES)
    each patient's bag is read once and sampled in memory, drawing exactly the rows
    ``Cohort.load_bag`` would read, so caching never changes a result.
    """

    def __init__(self, cohort: Cohort, bag_size: int | None) -> None:
        self.cohort, self.bag_size = cohort, bag_size
        n_tiles = sum(cohort.n_tiles(p) for p in cohort.patients)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None]] | None = (
            {} if n_tiles * cohort.spec.dim * 4 <= CACHE_BYTES else None
        )

    def __len__(self) -> int:
        return len(self.cohort)

    def _bag(self, index: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        patient = self.cohort.patients[index]
        rng = np.random.default_rng(seed)
        if self._cache is None:
            return self.cohort.load_bag(patient, self.bag_size, rng)
        if index not in self._cache:
            self._cache[index] = self.cohort.load_bag(patient)
        feats, coords = self._cache[index]
        if self.bag_size is None or len(feats) <= self.bag_size:
            return feats, coords
        rows = np.sort(rng.choice(len(feats), size=self.bag_size, replace=False))
        return feats[rows], None if coords is None else coords[rows]

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, object]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        feats, coords = self._bag(index, seed)
        labels = self.cohort.labels
        label = -1 if labels is None else labels[index].tolist() if labels.ndim > 1 else labels[index].item()
        return {"feats": feats, "coords": coords, "label": label, "index": index}


def collate_bags(items: Sequence[dict[str, object]]) -> BagBatch:
    """Pad bags to the longest in the batch; the mask tells heads which rows are real."""
    sizes = [len(it["feats"]) for it in items]  # type: ignore[arg-type]
    b, n, d = len(items), max(sizes), items[0]["feats"].shape[1]  # type: ignore[union-attr]
    feats = torch.zeros(b, n, d)
    mask = torch.zeros(b, n, dtype=torch.bool)
    have_coords = all(it["coords"] is not None for it in items)
    coords = torch.zeros(b, n, 2, dtype=torch.float32) if have_coords else None
    for i, (it, k) in enumerate(zip(items, sizes)):
        feats[i, :k] = torch.from_numpy(it["feats"])  # type: ignore[arg-type]
        mask[i, :k] = True
        if coords is not None:
            coords[i, :k] = torch.from_numpy(it["coords"])  # type: ignore[arg-type]
    values = [it["label"] for it in items]
    labels = torch.tensor(values, dtype=torch.float32 if isinstance(values[0], (float, list)) else torch.long)
    index = torch.tensor([it["index"] for it in items], dtype=torch.long)
    return BagBatch(feats=feats, coords=coords, mask=mask, labels=labels, index=index)


def bag_loader(
    cohort: Cohort, *, train: bool, bag_size: int | None = 512, batch_size: int = 16,
    seed: int = 0, num_workers: int = 0,
) -> DataLoader:
    """Training loaders sample and shuffle; evaluation loaders read complete bags one patient at a time."""
    return DataLoader(
        BagDataset(cohort, bag_size if train else None),
        batch_size=batch_size if train else 1,
        sampler=EpochSampler(len(cohort), shuffle=train, seed=seed,
                             spread=cohort.labels[:, 1] > 0 if cohort.kind == "survival" else None),  # type: ignore[index]
        collate_fn=collate_bags,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
