"""Tasks: what a net learns to classify over prepared datasets (mixes, class subsets, groups).

    task = Task(["data/prepared/cub", "data/prepared/dogs"], groups={"bird": ["dataset:cub"], ...})
    task.load("train")          # an ImageSet with the task's labels
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from kc.data.catalog import _check_split, slug
from kc.data.images import ImageSet
from kc.data.prepared import Prepared, load_prepared


# ---------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------


class Task:
    """A classification task over one or more prepared datasets.

    ``Task(datasets, classes=None, groups=None)``:

    * several datasets form a mix with disjoint label ranges (dataset ``i``'s
      labels are offset by the class counts of the datasets before it);
    * ``classes`` keeps a subset of the (mixed) classes, given by name (matched
      by :func:`slug`) or index, relabelled 0..n-1 in the order given;
    * ``groups`` ({name: [classes]} or a list of lists, named "group0", ...)
      merges classes into groups; classes in no group are dropped.
    """

    def __init__(self, datasets, classes=None, groups=None):
        if classes is not None and groups is not None:
            raise ValueError("give either classes or groups, not both")
        if isinstance(datasets, (str, os.PathLike, Prepared)):
            datasets = [datasets]
        self.datasets = [load_prepared(d) for d in datasets]
        if not self.datasets:
            raise ValueError("a task needs at least one dataset")
        first = self.datasets[0]
        for d in self.datasets[1:]:
            if (d.channels, d.image_size) != (first.channels, first.image_size):
                raise ValueError(
                    f"cannot mix {_describe(first)} ({first.channels} channels, {first.image_size}px) with "
                    f"{_describe(d)} ({d.channels} channels, {d.image_size}px): channels and image_size must match")
        self.channels = first.channels
        self.image_size = first.image_size
        self.offsets = np.cumsum([0] + [len(d.classes) for d in self.datasets])[:-1].astype(np.int64)
        self.base_classes = [c for d in self.datasets for c in d.classes]
        counts = np.asarray([d.count("train") for d in self.datasets], dtype=np.float64)
        means = np.stack([d.mean for d in self.datasets])
        stds = np.stack([d.std for d in self.datasets])
        w = counts / counts.sum() if counts.sum() > 0 else np.full(len(counts), 1 / len(counts))
        self.mean = w @ means
        self.std = np.sqrt(np.maximum(w @ (stds ** 2 + means ** 2) - self.mean ** 2, 0.0))
        nb = len(self.base_classes)
        self._lut = np.full(nb, -1, dtype=np.int64)  # base label -> task label (-1: dropped)
        if groups is not None:
            items = (list(groups.items()) if isinstance(groups, dict)
                     else [(f"group{k}", g) for k, g in enumerate(groups)])
            if not items:
                raise ValueError("groups is empty")
            owner: dict[int, str] = {}
            for g, (name, members) in enumerate(items):
                resolved = _resolve(members, self.base_classes, what=f"group {name!r}")
                if not resolved:
                    raise ValueError(f"group {name!r} has no classes")
                for b in resolved:
                    if b in owner:
                        raise ValueError(f"class {self.base_classes[b]!r} is in groups {owner[b]!r} and {name!r}; "
                                         "a class may be in at most one group")
                    owner[b] = str(name)
                    self._lut[b] = g
            self.classes = [str(name) for name, _ in items]
        elif classes is not None:
            resolved = _resolve(classes, self.base_classes, what="classes")
            if not resolved:
                raise ValueError("classes is empty")
            if len(set(resolved)) != len(resolved):
                raise ValueError(f"classes lists a class twice: {classes}")
            self._lut[resolved] = np.arange(len(resolved))
            self.classes = [self.base_classes[b] for b in resolved]
        else:
            self._lut[:] = np.arange(nb)
            self.classes = list(self.base_classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_indices(self, names_or_indices) -> list[int]:
        """Task labels of the given class names (matched by slug) or indices of this task."""
        return _resolve(names_or_indices, self.classes, what="classes")

    def base_labels(self, split: str) -> np.ndarray:
        """Labels of the task's samples of ``split`` in the datasets' own (mixed) label space, in
        :meth:`load` order (e.g. the 10 garment classes behind a binary task's two groups)."""
        _check_split(split)
        out = []
        for d, off in zip(self.datasets, self.offsets):
            labels = d.labels(split) + off
            out.append(labels[self._lut[labels] >= 0])
        return np.concatenate(out)

    def task_labels(self, base_labels) -> np.ndarray:
        """Base labels (the datasets' mixed label space) -> task labels, -1 for classes not in the task."""
        return self._lut[np.asarray(base_labels, dtype=np.int64)]

    def load(self, split: str) -> ImageSet:
        """The samples of ``split`` that belong to the task, with task labels."""
        _check_split(split)
        arrays, paths, sources, rows, labels = [], [], [], [], []
        for k, (d, off) in enumerate(zip(self.datasets, self.offsets)):
            task_labels = self._lut[d.labels(split) + off]
            keep = np.flatnonzero(task_labels >= 0)
            arrays.append(d.images(split))
            paths.append(d.images_path(split))
            sources.append(np.full(len(keep), k, dtype=np.int64))
            rows.append(keep)
            labels.append(task_labels[keep])
        return ImageSet(arrays, np.concatenate(labels), self.mean, self.std, self.classes,
                        sources=np.concatenate(sources), rows=np.concatenate(rows), paths=paths)

    def __repr__(self) -> str:
        return f"Task({[_describe(d) for d in self.datasets]}, classes={self.num_classes})"


def _describe(d: Prepared) -> str:
    return f"{d.meta.get('source', '?')} at {d.path}"


def _resolve(items, names: Sequence[str], *, what: str) -> list[int]:
    """Class names (by slug) or integer indices -> indices into ``names``; unknown -> ValueError."""
    if isinstance(items, (str, int, np.integer)):
        items = [items]
    slugs: dict[str, list[int]] = {}
    for k, name in enumerate(names):
        slugs.setdefault(slug(name), []).append(k)
    valid = f"valid class names: {', '.join(names)} (or indices 0..{len(names) - 1})"
    out = []
    for item in items:
        if isinstance(item, (bool, np.bool_)):
            raise ValueError(f"{what}: {item!r} is not a class name or index; {valid}")
        if isinstance(item, (int, np.integer)):
            if not 0 <= int(item) < len(names):
                raise ValueError(f"{what}: class index {int(item)} out of range; {valid}")
            out.append(int(item))
        elif isinstance(item, str):
            hits = slugs.get(slug(item), [])
            if not hits:
                raise ValueError(f"{what}: unknown class {item!r}; {valid}")
            if len(hits) > 1:
                raise ValueError(f"{what}: class name {item!r} is ambiguous (indices {hits}); use an index")
            out.append(hits[0])
        else:
            raise ValueError(f"{what}: {item!r} is not a class name or index; {valid}")
    return out
