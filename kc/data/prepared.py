"""Prepared datasets, read back: the folders kc.data.writer.prepare writes.

    d = load_prepared("data/prepared/fmnist")     # Prepared: .classes, .images(split), .labels(split)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kc.data.catalog import SPLITS, DataError, _check_split


# ---------------------------------------------------------------------------
# prepare
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Prepared arrays
# ---------------------------------------------------------------------------

_META_KEYS = ("source", "classes", "channels", "image_size", "counts", "mean", "std")


class Prepared:
    """A folder written by :func:`prepare`: ``.meta``, ``.classes``, ``.images(split)``, ``.labels(split)``."""

    def __init__(self, path, meta: dict):
        self.path = Path(path)
        self.meta = meta
        self._labels: dict[str, np.ndarray] = {}

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def channels(self) -> int:
        return int(self.meta["channels"])

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.meta["mean"], dtype=np.float64)

    @property
    def std(self) -> np.ndarray:
        return np.asarray(self.meta["std"], dtype=np.float64)

    def count(self, split: str) -> int:
        return int(self.meta["counts"][_check_split(split)])

    def _howto(self) -> str:
        return f"Run the prepare stage again to rebuild {self.path}."

    def images_path(self, split: str) -> Path:
        return self.path / f"{_check_split(split)}_images.npy"

    def images(self, split: str) -> np.ndarray:
        """The uint8 (N, C, S, S) images of ``split``, memory-mapped read-only."""
        path = self.images_path(split)
        arr = _load_npy(path, True, self._howto())
        expected = (self.count(split), self.channels, self.image_size, self.image_size)
        if arr.dtype != np.uint8 or arr.shape != expected:
            raise DataError(f"malformed {path}: {arr.dtype} {arr.shape}, expected uint8 {expected}. {self._howto()}")
        return arr

    def labels(self, split: str) -> np.ndarray:
        """The int64 labels of ``split`` (read once, then cached)."""
        if split not in self._labels:
            path = self.path / f"{_check_split(split)}_labels.npy"
            arr = _load_npy(path, False, self._howto())
            n = len(self.classes)
            if (arr.dtype != np.int64 or arr.shape != (self.count(split),)
                    or (len(arr) and (arr.min() < 0 or arr.max() >= n))):
                raise DataError(f"malformed {path}: expected {self.count(split)} int64 labels in 0..{n - 1}. "
                                f"{self._howto()}")
            self._labels[split] = arr
        return self._labels[split]

    def image_set(self, split: str):
        """All samples of ``split`` with this dataset's own classes and normalisation (an ImageSet)."""
        from kc.data.images import ImageSet

        return ImageSet(self.images(split), self.labels(split), self.mean, self.std, self.classes,
                        paths=[self.images_path(split)])

    def __repr__(self) -> str:
        return (f"Prepared({str(self.path)!r}, source={self.meta.get('source')!r}, "
                f"classes={len(self.classes)}, counts={self.meta.get('counts')})")


def _load_npy(path: Path, mmap: bool, howto: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"missing file {path}. {howto}") from None
    except (OSError, ValueError) as e:
        raise DataError(f"malformed {path}: {e}. {howto}") from None


def load_prepared(path) -> Prepared:
    """Open a folder written by :func:`prepare` (checks meta.json and that the four arrays exist)."""
    if isinstance(path, Prepared):
        return path
    path = Path(path)
    meta_path = path / "meta.json"
    howto = f"Run the prepare stage to create {path}."
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"missing file {meta_path}. {howto}") from None
    except (OSError, ValueError) as e:
        raise DataError(f"malformed {meta_path}: {e}. {howto}") from None
    if not isinstance(meta, dict) or any(k not in meta for k in _META_KEYS):
        raise DataError(f"malformed {meta_path}: needs keys {', '.join(_META_KEYS)}. {howto}")
    try:
        ok = (len(meta["mean"]) == len(meta["std"]) == int(meta["channels"])
              and all(s in meta["counts"] for s in SPLITS))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"malformed {meta_path}: mean/std/channels/counts disagree. {howto}")
    for split in SPLITS:
        for kind in ("images", "labels"):
            f = path / f"{split}_{kind}.npy"
            if not f.is_file():
                raise DataError(f"missing file {f}. {howto}")
    return Prepared(path, meta)


