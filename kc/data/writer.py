"""prepare: a reader -> uint8 arrays on disk, written atomically (the stage prepare@<dataset>).

    prepare("fashion_mnist", "/usr/share/datasets/fashion-mnist", "data/prepared/fmnist", max_train=12000)

Writes ``{train,test}_images.npy`` (uint8 (N, C, S, S), memory-mappable), ``{train,test}_labels.npy``
and ``meta.json`` (class names, per-channel mean/std of the training pixels, content fingerprints)
into a temporary folder (kc.io.atomic_dir) that then replaces the output by rename.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from kc.data.catalog import FASHION_MNIST_ROOT, SPLITS, DataError
from kc.data.readers import RawDataset, open_source
from kc.data.splits import stratified_subset
from kc.io import atomic_dir

_BATCH = 256  # images per DataLoader batch in prepare()


def _write_split(ds: RawDataset, indices: np.ndarray, images_path: Path, labels_path: Path,
                 num_workers: int, progress: bool, desc: str) -> np.ndarray:
    """Decode ``ds[indices]`` into ``images_path`` chunk by chunk; return the (C, 256) pixel histogram."""
    c, s = ds.channels, ds.image_size
    n = len(indices)
    labels = ds.labels[indices].astype(np.int64)
    np.save(labels_path, labels)
    hist = np.zeros((c, 256), dtype=np.int64)
    if n == 0:
        np.save(images_path, np.zeros((0, c, s, s), dtype=np.uint8))
        return hist
    out = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8, shape=(n, c, s, s))
    bar = None
    if progress:
        from tqdm.auto import tqdm  # lazy

        bar = tqdm(total=n, desc=desc, unit="img")

    def chunks() -> Iterator[np.ndarray]:
        if hasattr(ds, "get_batch"):  # vectorised readers (Fashion-MNIST)
            step = max(1, min(n, (1 << 24) // (c * s * s)))
            for lo in range(0, n, step):
                yield ds.get_batch(indices[lo:lo + step])
            return
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(ds, indices.tolist()), batch_size=_BATCH, shuffle=False,
            num_workers=num_workers)
        pos = 0
        for x, y in loader:
            if not np.array_equal(y.numpy(), labels[pos:pos + len(y)]):
                raise DataError(f"{type(ds).__name__}: labels of decoded samples disagree with .labels")
            pos += len(y)
            yield x.numpy()

    try:
        pos = 0
        for batch in chunks():
            if batch.shape[1:] != (c, s, s) or batch.dtype != np.uint8:
                raise DataError(f"{type(ds).__name__} produced {batch.dtype} images of shape "
                                f"{batch.shape[1:]}, expected uint8 {(c, s, s)}")
            out[pos:pos + len(batch)] = batch
            for ch in range(c):
                hist[ch] += np.bincount(batch[:, ch].ravel(), minlength=256)
            pos += len(batch)
            if bar is not None:
                bar.update(len(batch))
        if pos != n:
            raise DataError(f"{type(ds).__name__} produced {pos} images, expected {n}")
        out.flush()
    finally:
        del out
        if bar is not None:
            bar.close()
    return hist


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare(source: str, root, out_dir, *, image_size: int | None = None, max_train: int | None = None,
            max_test: int | None = None, seed: int = 0, download: bool = False,
            skip_difficult: bool = True, num_workers: int = 0, progress: bool = False) -> dict:
    """Materialise a dataset into ``out_dir`` and return its meta.

    Writes ``{train,test}_images.npy`` (uint8 (N, C, S, S)), ``{train,test}_labels.npy``
    (int64) and ``meta.json``.  ``max_train``/``max_test`` keep a seeded
    class-stratified subset (chosen from the labels, so only kept images are
    decoded; original order kept).  Everything is written into a temporary
    folder (kc.io.atomic_dir) that then replaces ``out_dir`` by rename.
    """
    if root is None and source == "fashion_mnist":
        root = FASHION_MNIST_ROOT
    out_dir = Path(out_dir)
    datasets = {split: open_source(source, root, split, image_size=image_size, download=download,
                                   skip_difficult=skip_difficult) for split in SPLITS}
    train = datasets["train"]
    limits = {"train": max_train, "test": max_test}
    chosen = {}
    for split, ds in datasets.items():
        m = limits[split]
        chosen[split] = (np.arange(len(ds), dtype=np.int64) if m is None
                         else stratified_subset(ds.labels, m, seed))
    if len(chosen["train"]) == 0:
        raise DataError(f"{source} at {root}: the train split has no samples")
    if datasets["test"].classes != train.classes:
        raise DataError(f"{source} at {root}: train and test splits have different classes")
    with atomic_dir(out_dir) as tmp:
        hists = {}
        for split, ds in datasets.items():
            hists[split] = _write_split(ds, chosen[split], tmp / f"{split}_images.npy",
                                        tmp / f"{split}_labels.npy", num_workers, progress,
                                        f"{source} {split}")
        hist = hists["train"].astype(np.float64)
        values = np.arange(256, dtype=np.float64) / 255.0
        count = hist.sum(axis=1)
        mean = hist @ values / count
        second = hist @ (values ** 2) / count
        std = np.sqrt(np.maximum(second - mean ** 2, 0.0))
        meta = {
            "source": source,
            "root": str(root),
            "classes": list(train.classes),
            "channels": int(train.channels),
            "image_size": int(train.image_size),
            "counts": {split: int(len(chosen[split])) for split in SPLITS},
            "mean": [float(v) for v in mean],
            "std": [float(v) for v in std],
            "seed": seed,
            "max_train": max_train,
            "max_test": max_test,
            "skip_difficult": bool(skip_difficult),
            # content fingerprints: what a task manifest records of the data it trains on
            "sha256": {f.name: _sha256(f) for f in sorted(tmp.glob("*.npy"))},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


