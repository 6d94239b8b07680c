"""Deterministic, class-stratified choices of samples: half splits (Case 2) and balanced subsets.

    half_split(labels, "half0", seed=0)        # sorted indices of one of two disjoint halves
    stratified_subset(labels, 300, seed=0)     # 30 images of each of 10 classes
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from kc.data.catalog import HALVES


# ---------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------


def _as_labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional; got shape {labels.shape}")
    return labels


def _rank_within_class(codes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random order grouped by class, and each sample's rank inside its class."""
    n = len(codes)
    order = np.lexsort((rng.random(n), codes))
    sorted_codes = codes[order]
    pos = np.arange(n)
    start = np.r_[True, sorted_codes[1:] != sorted_codes[:-1]] if n else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(start, pos, 0)) if n else pos
    rank = np.empty(n, dtype=np.int64)
    rank[order] = pos - first
    return order, rank


def expand_classes(members, dataset_names: Sequence[str], class_counts: Sequence[int]) -> list:
    """Expand ``"dataset:<name>"`` to every class index of that dataset in a mix; keep other members.

    ``expand_classes(["dataset:dogs"], ["cub", "dogs"], [200, 120]) == list(range(200, 320))``: the
    paper's bird-vs-dog task groups all 200 CUB classes against all 120 dog classes.
    """
    if isinstance(members, (str, int, np.integer)):
        members = [members]
    offsets = np.cumsum([0] + list(class_counts))
    out: list = []
    for m in members:
        if isinstance(m, str) and m.startswith("dataset:"):
            name = m.split(":", 1)[1]
            if name not in dataset_names:
                raise ValueError(f"{m!r}: {name!r} is not one of this task's datasets ({', '.join(dataset_names)})")
            k = list(dataset_names).index(name)
            out += list(range(int(offsets[k]), int(offsets[k + 1])))
        else:
            out.append(m)
    return out


def half_split(labels, which: str, seed: int = 0) -> np.ndarray:
    """Sorted int64 indices of "full" (all), "half0" or "half1" of ``labels``.

    The halves are disjoint, cover everything and are class-stratified: the
    samples, grouped by class in a seeded random order, alternate between the
    halves (the alternation runs on across classes, so both the halves and each
    class differ in size by at most one).
    """
    if which not in HALVES:
        raise ValueError(f"unknown split {which!r}; valid: {', '.join(HALVES)}")
    labels = _as_labels(labels)
    n = len(labels)
    if which == "full":
        return np.arange(n, dtype=np.int64)
    _, codes = np.unique(labels, return_inverse=True)
    order = np.lexsort((np.random.default_rng(seed).random(n), codes.ravel()))
    half = int(which[-1])
    return np.sort(order[half::2]).astype(np.int64)


def stratified_subset(labels, n: int, seed: int = 0) -> np.ndarray:
    """Sorted int64 indices of a seeded class-balanced subset of size ``min(n, len(labels))``.

    Samples are taken round-robin over the classes (in a seeded random order
    inside each class); classes that run out leave their share to the others,
    and which classes get the one extra sample of an uneven division is random.
    """
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    labels = _as_labels(labels)
    total = len(labels)
    n = int(n)
    if n >= total:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng(seed)
    _, codes = np.unique(labels, return_inverse=True)
    codes = codes.ravel()
    _, rank = _rank_within_class(codes, rng)
    class_priority = rng.permutation(int(codes.max()) + 1 if total else 0)
    take = np.lexsort((class_priority[codes], rank))[:n]
    return np.sort(take).astype(np.int64)


