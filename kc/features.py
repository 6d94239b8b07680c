"""Feature stores: one named layer of one net over a fixed set of images, as memory-mapped arrays.

    extract(model, ["conv4_3", "conv5_3"], images, "data/features/vgg_a", ...)  # writes the store
    store = FeatureStore("data/features/vgg_a")
    x = store.array("conv4_3", "train")          # FeatureArray: x[idx] -> normalised float32 tensor
    x.shape                                      # (N, 512, 28, 28); memory use is one batch

Layout of a store (written to a temporary folder, then renamed into place)::

    meta.json                     net, arch, task, layers {layer: shape, dtype, mean, std, channel_mean,
                                  channel_std}, counts
    {train,test}_index.npy        the images: indices into the task's datasets' prepared split
    {train,test}_labels.npy       the images' labels in the datasets' label space
    <layer>/{train,test}.npy      float16 (N, C, H, W), written chunk by chunk through open_memmap

Footnote 2 of the paper: "re-scaling the magnitude of all neural activations does not affect the
knowledge encoded in the DNN. Therefore, we normalize x and x* to zero mean and unit variance". We
read this as one scalar shift and scale per feature map: the mean and standard deviation over all
images, channels and positions of the *training* images' features (accumulated in float64 while
writing), the same scalar mean as the paper's Var definition (Section 4.2). Rescaling every
activation by one factor keeps the relative energy of the channels; per-channel scaling would blow
nearly dead channels (e.g. of a heavily pruned net) up to unit variance. Per-channel statistics are
stored too. Test features use the training statistics.

When two nets' maps differ in spatial size, ``FeatureArray(..., size=(H, W))`` resizes the source map
to the target's size by bilinear interpolation (align_corners=False) after normalisation, batch by
batch; the stored arrays are never changed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kc.io import atomic_dir, write_json
from kc.util import progress_bar as _tqdm
from kc.util import show_progress as _progress

FLOAT16_MAX = 65504.0


class FeatureArray:
    """A normalised, optionally resized, view of a stored feature array; ``x[idx]`` is a float32 tensor.

    Anything in kc that takes arrays (``kc.consistency.fit``, ``variances``, ``kc.similarity``) takes it.
    """

    def __init__(self, path: str | Path, mean=0.0, std=1.0, *, rows: np.ndarray | None = None,
                 size: tuple[int, int] | None = None, normalise: bool = True):
        """``mean``/``std``: scalars or one value per channel; ``normalise=False`` reads raw values."""
        self.path = Path(path)
        try:
            self._data = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise FileNotFoundError(f"feature array {self.path} does not exist (run the stage that extracts it)") from None
        except (ValueError, OSError, EOFError) as exc:  # truncated ("mmap length is greater than file size"), bad header
            raise ValueError(f"feature array {self.path} is damaged ({exc}); delete its store and rerun the stage "
                             "that extracts it") from None
        self.rows = np.arange(len(self._data)) if rows is None else np.asarray(rows, dtype=np.int64)
        c = self._data.shape[1]
        mean, std = (mean, std) if normalise else (0.0, 1.0)
        self.mean = torch.as_tensor(mean, dtype=torch.float32).expand(c).clone()
        std = torch.as_tensor(std, dtype=torch.float32).expand(c).clone()
        self.std = torch.where(std > 0, std, torch.ones_like(std))
        self.size = tuple(size) if size is not None else None
        spatial = self._data.shape[2:]
        if self.size is not None and len(spatial) != 2:
            raise ValueError(f"{self.path}: only (N, C, H, W) maps can be resized")
        self.shape = (len(self.rows), c, *(self.size if self.size and spatial else spatial))

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, indices) -> "FeatureArray":
        new = object.__new__(FeatureArray)
        new.__dict__.update(self.__dict__)
        new.rows = self.rows[np.asarray(indices, dtype=np.int64)]
        new.shape = (len(new.rows), *self.shape[1:])
        return new

    def resized(self, size: tuple[int, int] | None) -> "FeatureArray":
        new = self.subset(np.arange(len(self)))
        new.size = tuple(size) if size is not None else None
        spatial = self._data.shape[2:]
        new.shape = (len(new.rows), self.shape[1], *(new.size if new.size else spatial))
        return new

    def raw(self, indices) -> torch.Tensor:
        """The stored values (un-normalised, not resized) as float32."""
        rows = self.rows[np.asarray(indices, dtype=np.int64)]
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), *self._data.shape[1:]), dtype=np.float32)
        out[order] = self._data[rows[order]]
        return torch.from_numpy(out)

    def __getitem__(self, indices) -> torch.Tensor:
        x = self.raw(indices)
        view = (1, -1) + (1,) * (x.dim() - 2)
        x = (x - self.mean.view(view)) / self.std.view(view)
        if self.size is not None and tuple(x.shape[2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return x

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Back from the normalised space to this net's feature scale (for its upper layers)."""
        view = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.std.to(x.device).view(view) + self.mean.to(x.device).view(view)


class FeatureStore:
    """Read side of a store written by ``extract``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"feature store {self.path} has no meta.json (run the stage that extracts it)")
        try:
            self.meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"feature store {self.path}: meta.json is damaged; delete the store and rerun the "
                             "stage that extracts it") from None

    @property
    def layers(self) -> list[str]:
        return list(self.meta["layers"])

    def _layer(self, layer: str) -> dict:
        if layer not in self.meta["layers"]:
            raise KeyError(f"feature store {self.path} holds layers {self.layers}, not {layer!r}")
        return self.meta["layers"][layer]

    def array(self, layer: str, split: str, *, rows=None, size=None, normalise: bool = True,
              stats: "FeatureStore | None" = None) -> FeatureArray:
        """``split`` of ``layer``; normalised with this store's statistics, or with those of ``stats``
        (another store of the same net, e.g. the images g was fitted on)."""
        info = (stats or self)._layer(layer)
        self._layer(layer)
        return FeatureArray(self.path / layer / f"{split}.npy", info["mean"], info["std"], rows=rows, size=size,
                            normalise=normalise)

    def shape(self, layer: str) -> tuple[int, ...]:
        return tuple(self._layer(layer)["shape"])

    def labels(self, split: str) -> np.ndarray:
        return np.load(self.path / f"{split}_labels.npy")

    def index(self, split: str) -> np.ndarray:
        return np.load(self.path / f"{split}_index.npy")


def _extractor(model: torch.nn.Module, layers: list[str]):
    from torchvision.models.feature_extraction import create_feature_extractor

    from kc.models import resolve_layer, split

    for layer in layers:  # the same validation and messages as split()
        split(model, layer)
    nodes = {resolve_layer(model, layer): layer for layer in layers}
    return create_feature_extractor(model, nodes, suppress_diff_warning=True)


@torch.no_grad()
def extract(model: torch.nn.Module, layers: list[str], splits: dict[str, Any], out_dir: str | Path, *,
            meta: dict | None = None, batch_size: int = 256, device: str | torch.device = "cpu",
            dtype: str = "float16", progress: bool | None = None) -> dict:
    """Run ``model`` once per batch over each split's images and store every layer in ``layers``.

    ``splits``: {"train": (images, labels, index), "test": ...}: an ImageSet in the store's order, the
    labels the store records per image (the datasets' labels) and each image's index in its
    datasets' prepared split (for drawing it later).
    Memory stays bounded by the batch. Returns the meta written to meta.json.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    feats = _extractor(model, layers).to(device).eval()
    np_dtype = np.dtype(dtype)
    show = _progress(progress)
    info: dict[str, dict] = {}
    counts = {}
    with atomic_dir(out_dir) as tmp:
        for split, (images, labels, index) in splits.items():
            n = len(images)
            counts[split] = n
            np.save(tmp / f"{split}_labels.npy", np.asarray(labels, dtype=np.int64))
            np.save(tmp / f"{split}_index.npy", np.asarray(index, dtype=np.int64))
            arrays, sums = {}, {}
            start = 0
            for x, _ in _tqdm(images.batches(batch_size), show, desc=f"extract {split}",
                              total=-(-n // batch_size), leave=False):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    out = feats(x.to(device))
                for layer in layers:
                    f = out[layer].float()
                    if layer not in arrays:
                        (tmp / layer).mkdir(exist_ok=True)
                        arrays[layer] = np.lib.format.open_memmap(tmp / layer / f"{split}.npy", mode="w+",
                                                                  dtype=np_dtype, shape=(n, *f.shape[1:]))
                        sums[layer] = torch.zeros(3, f.shape[1], dtype=torch.float64)
                    if np_dtype == np.float16 and float(f.abs().max()) > FLOAT16_MAX:
                        raise ValueError(f"layer {layer!r} has values beyond float16's range; "
                                         "set features.dtype: float32")
                    dims = [0] + list(range(2, f.dim()))
                    d = f.double()
                    sums[layer] += torch.stack([torch.full((f.shape[1],), float(d[:, 0].numel()), dtype=torch.float64),
                                                d.sum(dims), (d * d).sum(dims)]).cpu()
                    arrays[layer][start:start + len(f)] = f.cpu().numpy().astype(np_dtype)
                start += len(x)
            for layer, arr in arrays.items():
                arr.flush()
                if split == "train" or layer not in info:
                    count, s, ss = sums[layer]
                    mean = s / count
                    std = torch.sqrt(torch.clamp(ss / count - mean ** 2, min=0))
                    total_mean = s.sum() / count.sum()
                    total_std = torch.sqrt(torch.clamp(ss.sum() / count.sum() - total_mean ** 2, min=0))
                    entry = info.setdefault(layer, {"shape": list(arr.shape[1:]), "dtype": dtype})
                    entry.update(mean=float(total_mean), std=float(total_std), channel_mean=mean.tolist(),
                                 channel_std=std.tolist())
                del arr
            arrays.clear()
        meta = {**(meta or {}), "layers": info, "counts": counts}
        write_json(tmp / "meta.json", meta)
    return meta
