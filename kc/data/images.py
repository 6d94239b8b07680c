"""ImageSet: a view over prepared uint8 arrays that yields normalised float batches.

    images = ImageSet(d.images("train"), d.labels("train"), d.mean, d.std, d.classes)
    for x, y in images.batches(128, shuffle=True, seed=0, epoch=1): ...   # DDP: rank=, world_size=
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

# ---------------------------------------------------------------------------
# ImageSet
# ---------------------------------------------------------------------------


class ImageSet:
    """A lazy view over one or more uint8 image arrays, with labels and normalisation.

    ``ImageSet(images, labels, mean, std, classes)``: ``images`` is one uint8
    array (N, C, S, S) (typically a memmap) or a list of them; sample ``i`` of the
    view is row ``rows[i]`` of array ``sources[i]`` (defaults: all rows of all
    arrays, in order) with label ``labels[i]``.  ``paths`` (optional, one .npy
    path per array) lets a pickled view re-open its memmaps instead of copying
    them (DataLoader workers, DDP).
    """

    def __init__(self, images, labels, mean, std, classes, *, sources=None, rows=None, paths=None):
        arrays = list(images) if isinstance(images, (list, tuple)) else [images]
        if not arrays:
            raise ValueError("ImageSet needs at least one image array")
        shape = arrays[0].shape[1:]
        for a in arrays:
            if a.ndim != 4 or a.shape[1:] != shape or a.dtype != np.uint8:
                raise ValueError(f"image arrays must be uint8 (N, C, S, S) of one shape; got {a.dtype} {a.shape}")
        if shape[1] != shape[2]:
            raise ValueError(f"images must be square; got {shape}")
        if sources is None and rows is None:
            sources = np.concatenate([np.full(len(a), k, dtype=np.int64) for k, a in enumerate(arrays)])
            rows = np.concatenate([np.arange(len(a), dtype=np.int64) for a in arrays])
        elif sources is None and len(arrays) == 1:
            sources = np.zeros(len(rows), dtype=np.int64)
        elif sources is None or rows is None:
            raise ValueError("with several image arrays give both sources and rows (or neither)")
        self._arrays = arrays
        self._sources = np.asarray(sources, dtype=np.int64)
        self._rows = np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        if not (len(self._sources) == len(self._rows) == len(self.labels)):
            raise ValueError("labels, sources and rows must have one entry per sample")
        self._paths = list(paths) if paths is not None else [None] * len(arrays)
        if len(self._paths) != len(arrays):
            raise ValueError("paths must give one entry per image array")
        self.classes = list(classes)
        self.channels = int(shape[0])
        self.image_size = int(shape[1])
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(std, dtype=np.float64).reshape(-1)
        if self.mean.shape != (self.channels,) or self.std.shape != (self.channels,):
            raise ValueError(f"mean and std need one value per channel ({self.channels})")
        safe_std = np.where(self.std > 0, self.std, 1.0)
        self._scale = torch.tensor(1.0 / (255.0 * safe_std), dtype=torch.float32).view(1, -1, 1, 1)
        self._shift = torch.tensor(-self.mean / safe_std, dtype=torch.float32).view(1, -1, 1, 1)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(len(self.labels))

    def __repr__(self) -> str:
        return (f"ImageSet(n={len(self)}, classes={len(self.classes)}, channels={self.channels}, "
                f"image_size={self.image_size}, arrays={len(self._arrays)})")

    def _index(self, indices) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise IndexError(f"boolean mask of shape {idx.shape} for {len(self)} samples")
            return np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False).reshape(-1)
        n = len(self)
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"indices out of range for {n} samples")
        return np.where(idx < 0, idx + n, idx)

    def subset(self, indices) -> "ImageSet":
        """The samples ``indices`` of this view, in that order (no image copy)."""
        idx = self._index(indices)
        new = object.__new__(ImageSet)
        new.__dict__.update(self.__dict__)
        new._sources = self._sources[idx]
        new._rows = self._rows[idx]
        new.labels = self.labels[idx]
        return new

    def relabel(self, labels, classes) -> "ImageSet":
        """The same samples with other labels/class names (used by tasks)."""
        new = self.subset(np.arange(len(self)))
        new.labels = np.asarray(labels, dtype=np.int64)
        if new.labels.shape != (len(self),):
            raise ValueError("relabel needs one label per sample")
        new.classes = list(classes)
        return new

    def raw(self, indices) -> np.ndarray:
        """uint8 images (B, C, S, S) of ``indices``: one sorted fancy-index per underlying array."""
        idx = self._index(indices)
        src, rows = self._sources[idx], self._rows[idx]
        out = np.empty((len(idx), self.channels, self.image_size, self.image_size), dtype=np.uint8)
        for k, arr in enumerate(self._arrays):
            pos = np.flatnonzero(src == k) if len(self._arrays) > 1 else np.arange(len(idx))
            if len(pos) == 0:
                continue
            r = rows[pos]
            order = np.argsort(r, kind="stable")
            out[pos[order]] = arr[r[order]]
        return out

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``: float32 (B, C, S, S) as ``(pixel/255 - mean)/std`` per channel, int64 labels."""
        idx = self._index(indices)
        x = torch.from_numpy(self.raw(idx)).float()
        x.mul_(self._scale).add_(self._shift)
        return x, torch.from_numpy(self.labels[idx].copy())

    def order(self, *, shuffle: bool = False, seed: int = 0, epoch: int = 0, rank: int = 0,
              world_size: int = 1, drop_last: bool = False) -> np.ndarray:
        """The sample indices that :meth:`batches` visits on this rank, in order."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size; got rank={rank}, world_size={world_size}")
        n = len(self)
        perm = (np.random.default_rng([int(seed), int(epoch)]).permutation(n) if shuffle
                else np.arange(n, dtype=np.int64))
        if world_size > 1:
            if drop_last:
                perm = perm[: (n // world_size) * world_size]
            elif n:
                perm = np.resize(perm, -(-n // world_size) * world_size)  # pad by wrapping
            perm = perm[rank::world_size]
        return perm.astype(np.int64, copy=False)

    def num_batches(self, batch_size: int, *, world_size: int = 1, drop_last: bool = False) -> int:
        """How many batches :meth:`batches` yields per rank."""
        m = len(self.order(world_size=world_size, drop_last=drop_last))
        return m // batch_size if drop_last else -(-m // batch_size)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                rank: int = 0, world_size: int = 1, drop_last: bool = False
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate ``(x, y)`` batches over the view.

        With ``shuffle`` the permutation comes from ``np.random.default_rng([seed, epoch])``.
        With ``world_size > 1`` rank ``r`` takes positions ``r, r + world_size, ...`` of
        that permutation, padded by wrapping (or trimmed with ``drop_last``) so all ranks
        get the same number of batches.  ``drop_last`` also drops an incomplete last batch.
        """
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        batch_size = int(batch_size)
        idx = self.order(shuffle=shuffle, seed=seed, epoch=epoch, rank=rank,
                         world_size=world_size, drop_last=drop_last)
        stop = (len(idx) // batch_size) * batch_size if drop_last else len(idx)
        for lo in range(0, stop, batch_size):
            yield self.batch(idx[lo:lo + batch_size])

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_arrays"] = [None if (p is not None and isinstance(a, np.memmap)) else a
                            for a, p in zip(self._arrays, self._paths)]
        return state

    def __setstate__(self, state):
        arrays = state["_arrays"]
        state["_arrays"] = [np.load(p, mmap_mode="r") if a is None else a
                            for a, p in zip(arrays, state["_paths"])]
        self.__dict__.update(state)


