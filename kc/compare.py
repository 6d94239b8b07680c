"""Compare two networks layer by layer: ``kc.compare(model_a, model_b, data, ...) -> Comparison``.

What CKA libraries give (hooks on named layers of any model, every layer pair at once, a heatmap,
a DataLoader as input, a device) plus what only knowledge consistency can say: which part of B's
feature A explains, through how many non-linearities (x^(0) ... x^(K)), and which part it cannot
(x^Δ), where and on which images::

    import kc
    with kc.compare(model_a, model_b, loader, ["layer2", "layer3"], ["conv4", "conv5"]) as cmp:
        cmp.table                                   # one row per (layer_a, layer_b, direction)
        cmp.heatmap().savefig("kc.png")             # Var(x^(k))/Var(x*) and Var(x^Δ)/Var(x*) per pair
        cmp.residual_map("layer3", "conv5").figure()  # where A cannot explain B
        cmp.g("layer3", "conv5")                    # the fitted g_θ (ConsistencyNet, eval mode)
        cmp.spliced("layer3", "conv5")              # B's upper layers on g(x_A): one nn.Module
        cmp.save("out/kc")                          # Comparison.load("out/kc") without the models

What it does, in order:

1. **Taps.** Layers are kc aliases (``model.kc_arch`` models from ``kc.models.build``) or torchvision
   feature-extraction node names (``kc.models.node_names(model)``; a module name such as ``layer3``
   means that module's output). Models are traced with torch.fx (``create_feature_extractor``); one
   that cannot be traced is tapped with forward hooks on the named modules instead. DataParallel /
   DistributedDataParallel / ``torch.compile`` wrappers are unwrapped. When a tapped node's value is a
   tuple, list or dict (e.g. a module returning ``(out, attention)``), its first tensor is used.
   Take block outputs (after the ReLU, after a residual add): that is what the next layer reads.
2. **One pass.** Every batch goes through both models once (so a shuffling DataLoader still pairs
   the same images); every requested layer is written to a temporary memory-mapped float16 store
   (memory bounded by the batch), with the input images (to draw residual maps) and labels when the
   data yields ``(images, labels)``. The store is removed by ``close()``, at the end of a ``with``
   block, or when the Comparison is garbage-collected.
3. **Split.** A seeded ``holdout`` fraction of the images (default 0.25) is held out: g_θ, the
   normalisation statistics and the ridge of linear predictivity are fitted on the rest; every
   number in the table is measured on the held-out images.
4. **Normalisation (paper, footnote 2).** Each layer's feature is shifted and scaled to zero mean
   and unit variance with ONE scalar mean and std over all fit images, channels and positions (as
   ``kc.features`` does). Without it Var(x^Δ)/Var(x*) is meaningless (raw features of different
   scales gave ratios like 1193); kc.compare always does it.
5. **Shapes.** Conv maps (N, C, H, W) of different spatial sizes: the source is resized to the
   target's size by bilinear interpolation after normalisation; channel counts may differ. When the
   two layers are not both conv maps (token sequences (N, T, C) of a ViT — 3-D outputs are read as
   (N, tokens, channels) — or vectors (N, C)), both are pooled to vectors by the mean over positions
   or tokens, and normalised as vectors. ``spatial="pool"`` pools conv maps too.
6. **Fits.** One g_θ per (layer_a, layer_b, direction), ``directions="both"`` by default
   (A -> B: g reconstructs B's feature from A's, and B -> A), by ``kc.consistency.fit`` (mixed
   precision on CUDA). Pooled pairs use a 1x1 g (a vector has no neighbours).
7. **Scores.** Var(x^(k)) per order, Var(x^Δ), Var(x*), ``delta_ratio`` = Var(x^Δ)/Var(x*) with a
   95% bootstrap interval over held-out images (``kc.stats.ratio_interval``), linear CKA (on the
   unresized features) and linear predictivity (held-out R^2 of a ridge map with g's receptive field,
   fitted on at most ``ridge_rows`` positions of the fit images) beside them: the 0-order baselines.
   The shares Var(x^(k))/Var(x*) need not sum with the residual share to 1 (the parts correlate).

Defaults (epochs=5, batch_size=16, lr=3e-3: small batches, many steps) fit a 4 x 4 layer map of two
small kc nets, both directions (32 fits), on 1,000 28 px images in about 65 s on 2 idle CPU cores
(about 105 s on one; bench/compare_speed.py); the 28 x 28 maps take most of it. For final numbers
raise ``epochs`` (10 epochs lower the hardest pairs' Var(x^Δ)/Var(x*) by a further ~0.01-0.03; the
pipeline fits 20). On CPU cores shared with other busy processes, ``torch.set_num_threads(1)`` can be
several times faster than the default for these small convolutions.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import shutil
import sys
import tempfile
import time
import types
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kc import consistency
from kc.models import ALIASES, STUDY_LAYERS, node_names, resolve_layer, splice, unwrap

DIRECTIONS = ("a->b", "b->a")
FLOAT16_MAX = 65504.0
MIN_FIT, MIN_HELDOUT = 2, 4
SAVE_VERSION = 1

__all__ = ["compare", "Comparison", "ResidualMap", "DIRECTIONS"]


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------
def _show(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else bool(progress)


def _bar(iterable, enabled: bool, **kw):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, **kw)


def _first_tensor(value: Any, what: str = "value") -> torch.Tensor:
    """A tensor, or the first tensor inside a tuple / list / dict (depth first)."""
    if torch.is_tensor(value):
        return value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (tuple, list)) else ()
    for item in items:
        try:
            return _first_tensor(item, what)
        except TypeError:
            continue
    raise TypeError(f"{what} is a {type(value).__name__} holding no tensor")


def _shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def _check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    return direction


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ------------------------------------------------------------------------------------------------
# layer taps
# ------------------------------------------------------------------------------------------------
def _short_nodes(nodes: list[str], limit: int = 24) -> str:
    """The node names collapsed to their first two components, in order, at most ``limit``."""
    seen: list[str] = []
    for n in nodes:
        head = ".".join(n.split(".")[:2])
        if head not in seen:
            seen.append(head)
    more = f", ... ({len(nodes)} node names in all: kc.models.node_names(model))" if len(seen) > limit else ""
    return ", ".join(seen[:limit]) + more


def _graph_nodes(model: nn.Module) -> list[str] | None:
    try:
        return node_names(model)
    except Exception:  # not traceable by torch.fx: hooks on modules instead
        return None


def check_layers(model: nn.Module, layers: Sequence[str], which: str = "model") -> list[str]:
    """The layer names, validated: unknown names raise ValueError listing the valid ones."""
    arch = getattr(model, "kc_arch", None)
    aliases = list(ALIASES.get(arch, {}))
    nodes = _graph_nodes(model)
    names = nodes if nodes is not None else [n for n, _ in model.named_modules() if n]
    out = []
    for layer in layers:
        if not isinstance(layer, str) or not layer:
            raise ValueError(f"{which}: layer names must be non-empty strings, got {layer!r}")
        query = resolve_layer(model, layer)
        if not any(n == query or n.startswith(query + ".") for n in names):
            what = arch or type(model).__name__
            kind = "node names" if nodes is not None else "module names (not traceable by torch.fx)"
            raise ValueError(f"unknown layer {layer!r} for {which} ({what}); valid: aliases: "
                             f"{', '.join(aliases) or 'none'}; {kind}: {_short_nodes(names)}")
        if layer not in out:
            out.append(layer)
    return out


class _Tap:
    """``tap(x) -> {layer: tensor}`` for the named layers: torch.fx feature extraction, else hooks."""

    def __init__(self, model: nn.Module, layers: list[str]):
        self.model, self.layers, self.handles = model, layers, []
        queries = {resolve_layer(model, layer): layer for layer in layers}
        try:
            from torchvision.models.feature_extraction import create_feature_extractor
            self.extractor = create_feature_extractor(model, queries, suppress_diff_warning=True)
            self.extractor.eval()
        except Exception:  # untraceable forward: fall back to forward hooks on modules
            self.extractor = None
            modules = dict(model.named_modules())
            self.outputs: dict[str, Any] = {}
            for query, layer in queries.items():
                if query not in modules:
                    raise ValueError(f"{type(model).__name__} cannot be traced by torch.fx, so layers must be "
                                     f"module names; {layer!r} is not one") from None
                self.handles.append(modules[query].register_forward_hook(self._hook(layer)))

    def _hook(self, layer):
        def hook(_module, _inputs, output):
            self.outputs[layer] = output
        return hook

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.extractor is not None:
            out = self.extractor(x)
        else:
            self.outputs = {}
            self.model(x)
            out = self.outputs
        return {layer: _first_tensor(out[layer], f"the output of layer {layer!r}") for layer in self.layers}

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


# ------------------------------------------------------------------------------------------------
# data: tensors, (images, labels), Datasets, DataLoaders and other iterables, kc ImageSets
# ------------------------------------------------------------------------------------------------
def _split_item(item: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(item, dict):
        item = list(item.values())
    if isinstance(item, (tuple, list)):
        if not item:
            raise ValueError("data yielded an empty batch")
        x = item[0]
        y = item[1] if len(item) > 1 else None
    else:
        x, y = item, None
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not torch.is_tensor(x):
        raise TypeError(f"data must yield image tensors or (images, labels), got {type(x).__name__}")
    if y is not None:
        y = torch.as_tensor(y)
        if y.dim() != 1 or len(y) != len(x) or y.is_floating_point():
            y = None  # not one integer label per image (e.g. masks): ignore
    return x.float(), y


def _data_len(data: Any) -> int | None:
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        return len(data[0])
    if torch.is_tensor(data) or isinstance(data, np.ndarray):
        return len(data)
    if isinstance(data, torch.utils.data.DataLoader):
        return None
    if hasattr(data, "__len__") and (hasattr(data, "__getitem__") or hasattr(data, "batches")):
        return len(data)
    return None


def _batches(data: Any, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """(images, labels or None) batches of any supported data, in a fixed order for one pass."""
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        images, labels = data[0], torch.as_tensor(data[1])
        if len(labels) != len(images):
            raise ValueError(f"data: {len(images)} images but {len(labels)} labels")
        for s in range(0, len(images), batch_size):
            yield images[s:s + batch_size].float(), labels[s:s + batch_size]
        return
    if torch.is_tensor(data):
        if data.dim() < 2:
            raise ValueError(f"data: a tensor of images must be shaped (N, ...), got {tuple(data.shape)}")
        for s in range(0, len(data), batch_size):
            yield data[s:s + batch_size].float(), None
        return
    if hasattr(data, "batches") and hasattr(data, "labels") and hasattr(data, "batch"):  # kc ImageSet
        for x, y in data.batches(batch_size):
            yield x.float(), y
        return
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        data = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    if not hasattr(data, "__iter__"):
        raise TypeError("data must be a tensor of images, (images, labels), a Dataset, a DataLoader or an "
                        f"iterable of batches; got {type(data).__name__}")
    for item in data:
        yield _split_item(item)


# ------------------------------------------------------------------------------------------------
# the temporary feature store
# ------------------------------------------------------------------------------------------------
class _Column:
    """One array (N, ...) written batch by batch to a raw file, then read back memory-mapped."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.path, self.dtype = path, np.dtype(dtype)
        self.file = open(path, "wb")
        self.n, self.item_shape, self.array = 0, None, None

    def append(self, x: np.ndarray) -> None:
        if self.item_shape is None:
            self.item_shape = tuple(x.shape[1:])
        elif tuple(x.shape[1:]) != self.item_shape:
            raise ValueError(f"batches changed shape: {self.item_shape} then {tuple(x.shape[1:])} "
                             "(all images must have one size)")
        self.file.write(np.ascontiguousarray(x, dtype=self.dtype).tobytes())
        self.n += len(x)

    def finish(self) -> np.ndarray:
        self.file.close()
        self.array = np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.n, *self.item_shape))
        return self.array


def _pool(f: torch.Tensor) -> torch.Tensor:
    """Vectors (N, C): maps (N, C, H, W) averaged over positions, tokens (N, T, C) over tokens."""
    if f.dim() == 4:
        return f.mean((2, 3))
    if f.dim() == 3:
        return f.mean(1)
    return f


class _View:
    """An array-like (``len``, ``shape``, ``[idx]``) over stored features: normalised by one scalar
    mean/std (footnote 2), optionally resized (bilinear) to ``size``."""

    def __init__(self, data, rows: np.ndarray, mean: float, std: float, size=None):
        self.data, self.rows = data, np.asarray(rows, dtype=np.int64)
        self.mean, self.std = float(mean), float(std) if std > 0 else 1.0
        spatial = tuple(data.shape[2:])
        self.size = tuple(size) if size is not None and tuple(size) != spatial else None
        self.shape = (len(self.rows), data.shape[1], *(self.size or spatial))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx) -> torch.Tensor:
        rows = self.rows[np.asarray(idx, dtype=np.int64)]
        if torch.is_tensor(self.data):
            x = self.data[torch.from_numpy(rows).to(self.data.device)].float()
        else:
            order = np.argsort(rows, kind="stable")
            out = np.empty((len(rows), *self.data.shape[1:]), dtype=np.float32)
            out[order] = self.data[rows[order]]
            x = torch.from_numpy(out)
        x = (x - self.mean) / self.std
        if self.size is not None:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return x

    def nbytes(self) -> int:
        return 4 * math.prod(self.shape)


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------
@dataclass
class ResidualMap:
    """Where A cannot explain B (or B cannot explain A), on the held-out images.

    ``energy``: (n, H, W) residual energy per held-out image and position, Σ_channels (x^Δ)^2 in the
    normalised target space ((n, 1, 1) for pooled vectors); ``per_image``: its sum per image;
    ``share``: each image's residual share Σ(x^Δ - m_Δ)^2 / Σ(x* - m*)^2 with the held-out means;
    ``images``: indices of the held-out images in the data's order (``Comparison.image(i)``);
    ``top``: the ``top_k`` of them with the highest residual energy; ``per_class``: mean residual
    share per class when the data had labels.
    """
    layer_a: str
    layer_b: str
    direction: str
    energy: np.ndarray
    per_image: np.ndarray
    share: np.ndarray
    images: np.ndarray
    labels: np.ndarray | None
    classes: list[str] | None
    top_k: int = 8
    fetch: Any = field(default=None, repr=False)

    @property
    def top(self) -> np.ndarray:
        order = np.argsort(-self.per_image, kind="stable")[:self.top_k]
        return self.images[order]

    @property
    def per_class(self):
        """DataFrame: class, images, mean residual share, pooled share (class Σ residual / Σ target)."""
        import pandas as pd
        if self.labels is None:
            return None
        rows = []
        for c in np.unique(self.labels):
            sel = self.labels == c
            name = self.classes[c] if self.classes is not None and 0 <= c < len(self.classes) else str(int(c))
            rows.append({"label": int(c), "class": name, "images": int(sel.sum()),
                         "residual_share": float(np.mean(self.share[sel]))})
        return pd.DataFrame(rows).sort_values("residual_share", ascending=False, ignore_index=True)

    def figure(self, top_k: int | None = None):
        """The top-k held-out images by residual energy, the energy map upsampled over each."""
        from matplotlib.figure import Figure
        k = min(self.top_k if top_k is None else top_k, len(self.images))
        order = np.argsort(-self.per_image, kind="stable")[:k]
        cols = min(k, 4) or 1
        rows = max(1, -(-k // cols))
        fig = Figure(figsize=(2.6 * cols, 2.8 * rows), layout="constrained")
        arrow = "A → B" if self.direction == "a->b" else "B → A"
        fig.suptitle(f"{arrow}: residual energy Σc(x^Δ)² of {self.layer_a} / {self.layer_b}, "
                     f"top {k} held-out images")
        vmax = float(self.energy[order].max()) if k else 1.0
        for j, pos in enumerate(order):
            ax = fig.add_subplot(rows, cols, j + 1)
            i = int(self.images[pos])
            energy = torch.from_numpy(np.asarray(self.energy[pos], dtype=np.float32))[None, None]
            img = None
            if self.fetch is not None:
                try:
                    img = self.fetch(i)
                except KeyError:
                    img = None
            if img is not None:
                img = img.float()
                img = (img - img.min()) / (img.max() - img.min() + 1e-12)
                size = tuple(img.shape[-2:])
                shown = img[0].numpy() if img.shape[0] == 1 else img[:3].permute(1, 2, 0).numpy()
                ax.imshow(shown, cmap="gray" if img.shape[0] == 1 else None)
                over = F.interpolate(energy, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
                ax.imshow(over, cmap="inferno", alpha=0.55, vmin=0, vmax=vmax)
            else:
                ax.imshow(energy[0, 0].numpy(), cmap="inferno", vmin=0, vmax=vmax)
            label = ""
            if self.labels is not None:
                c = int(self.labels[pos])
                label = self.classes[c] if self.classes is not None and 0 <= c < len(self.classes) else str(c)
            ax.set_title(f"#{i} {label}\nshare {self.share[pos]:.2f}", fontsize=8)
            ax.set_axis_off()
        return fig


class Comparison:
    """The result of :func:`compare`. See the module docstring; ``close()`` removes the feature store."""

    def __init__(self, *, table, layers_a, layers_b, directions, K, names, gs, residuals, stats, shapes,
                 forms, heldout, labels, classes, options, model_a=None, model_b=None, store=None,
                 images=None):
        self.table = table
        self.layers_a, self.layers_b = list(layers_a), list(layers_b)
        self.directions, self.K, self.names = list(directions), int(K), tuple(names)
        self._gs, self._residuals = gs, residuals
        self.stats = stats        # {(side, layer, form): (mean, std)} on the fit images
        self.shapes = shapes      # {(side, layer): raw feature shape per image}
        self.forms = forms        # {(layer_a, layer_b): "map" | "pool"}
        self.heldout = np.asarray(heldout, dtype=np.int64)
        self.labels, self.classes, self.options = labels, classes, options
        self.model_a, self.model_b = model_a, model_b
        self._store, self._images = store, images   # images: memmap in data order, or {i: tensor}
        self._features: dict = {}
        self.timings: dict = {}   # seconds per (layer_a, layer_b, direction); not in the table (reproducible bytes)
        self._finalizer = weakref.finalize(self, shutil.rmtree, store, ignore_errors=True) if store else None

    # -- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Remove the temporary feature store (table, g's and residual maps stay)."""
        self._features.clear()
        if isinstance(self._images, np.memmap):
            self._images = None
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> "Comparison":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._finalizer is None or not self._finalizer.alive

    def __repr__(self) -> str:
        return (f"Comparison({self.names[0]} {self.layers_a} vs {self.names[1]} {self.layers_b}, "
                f"directions={self.directions}, K={self.K}, held-out images={len(self.heldout)})")

    # -- access -----------------------------------------------------------------------------------
    def _key(self, layer_a: str, layer_b: str, direction: str) -> tuple[str, str, str]:
        _check_direction(direction)
        if layer_a not in self.layers_a:
            raise ValueError(f"layer_a {layer_a!r} was not compared; layers_a: {', '.join(self.layers_a)}")
        if layer_b not in self.layers_b:
            raise ValueError(f"layer_b {layer_b!r} was not compared; layers_b: {', '.join(self.layers_b)}")
        if direction not in self.directions:
            raise ValueError(f"direction {direction!r} was not fitted; directions: {', '.join(self.directions)}")
        return layer_a, layer_b, direction

    def row(self, layer_a: str, layer_b: str, direction: str = "a->b") -> dict:
        """The table's row of one pair as a dict."""
        la, lb, d = self._key(layer_a, layer_b, direction)
        t = self.table
        return t[(t.layer_a == la) & (t.layer_b == lb) & (t.direction == d)].iloc[0].to_dict()

    def g(self, layer_a: str, layer_b: str, direction: str = "a->b") -> consistency.ConsistencyNet:
        """The fitted g_θ of a pair (eval mode): maps the normalised (resized or pooled) source
        feature to the normalised target feature."""
        return self._gs[self._key(layer_a, layer_b, direction)].eval()

    def image(self, i: int) -> torch.Tensor:
        """Image ``i`` of the data (its position in the pass), as the models saw it: (C, H, W) float."""
        if self._images is None:
            raise KeyError("the images are gone (the Comparison was closed); save() keeps the held-out ones")
        if isinstance(self._images, dict):
            if int(i) not in self._images:
                raise KeyError(f"image {i} was not saved (only held-out images are)")
            return self._images[int(i)]
        return torch.from_numpy(np.asarray(self._images[int(i)], dtype=np.float32))

    def residual_map(self, layer_a: str, layer_b: str, direction: str = "a->b", top_k: int = 8) -> ResidualMap:
        """Residual energy per held-out image and position, the top-k images, per-class shares."""
        key = self._key(layer_a, layer_b, direction)
        r = self._residuals[key]
        energy = r["energy"]
        d, t = r["delta_moments"], r["target_moments"]

        def centred(m):
            mean = m[:, 1].sum() / m[:, 0].sum()
            return m[:, 2] - 2 * mean * m[:, 1] + mean * mean * m[:, 0]

        with np.errstate(divide="ignore", invalid="ignore"):
            share = centred(d) / centred(t)
        return ResidualMap(*key, energy=energy, per_image=energy.reshape(len(energy), -1).sum(1), share=share,
                           images=self.heldout, labels=self.labels, classes=self.classes,
                           top_k=_positive_int("top_k", top_k), fetch=self.image)

    def features(self, model: str, layer: str, part: str = "heldout", form: str | None = None) -> _View:
        """The normalised stored feature of ``model`` ("a" or "b") at ``layer`` on the "fit" or "heldout"
        images (an array-like: ``x[idx]`` is a float tensor); needs the store (before ``close``)."""
        if self.closed or not self._features:
            raise RuntimeError("the feature store is gone (the Comparison was closed or loaded)")
        side = {"a": 0, "b": 1}[model]
        form = form or ("map" if (side, layer, "map") in self._features else "vec")
        rows = self.heldout if part == "heldout" else self.options["fit_rows"]
        mean, std = self.stats[(side, layer, form)]
        return _View(self._features[(side, layer, form)], rows, mean, std)

    # -- figures ----------------------------------------------------------------------------------
    def heatmap(self, order: int | str | None = None, direction: str | None = None, *, annotate: bool = True):
        """A matplotlib Figure: layers of A (rows) x layers of B (columns), one panel per order k
        (Var(x^(k))/Var(x*)) and one for the residual share Var(x^Δ)/Var(x*); one row of panels per
        direction. ``order``: an int for one order, ``"delta"`` for the residual only."""
        from matplotlib.figure import Figure
        dirs = self.directions if direction is None else [self._key(self.layers_a[0], self.layers_b[0], direction)[2]]
        if order is None:
            panels: list = list(range(self.K + 1)) + ["delta"]
        elif order in ("delta", "residual"):
            panels = ["delta"]
        elif isinstance(order, (int, np.integer)) and not isinstance(order, bool) and 0 <= order <= self.K:
            panels = [int(order)]
        else:
            raise ValueError(f"order must be None, 'delta' or an integer in 0..{self.K}, got {order!r}")
        na, nb = len(self.layers_a), len(self.layers_b)
        w = max(2.8, 0.75 * nb + 1.6)
        h = max(2.4, 0.55 * na + 1.2)
        fig = Figure(figsize=(w * len(panels), h * len(dirs)), layout="constrained")
        t = self.table
        for r, d in enumerate(dirs):
            arrow = f"{self.names[0]} → {self.names[1]}" if d == "a->b" else f"{self.names[1]} → {self.names[0]}"
            for c, p in enumerate(panels):
                ax = fig.add_subplot(len(dirs), len(panels), r * len(panels) + c + 1)
                col = "delta_ratio" if p == "delta" else f"share_x{p}"
                grid = np.full((na, nb), np.nan)
                for _, row in t[t.direction == d].iterrows():
                    grid[self.layers_a.index(row.layer_a), self.layers_b.index(row.layer_b)] = row[col]
                im = ax.imshow(grid, vmin=0, vmax=1, cmap="magma_r" if p == "delta" else "viridis")
                if annotate:
                    for i in range(na):
                        for j in range(nb):
                            v = grid[i, j]
                            if np.isfinite(v):
                                light = (v > 0.5) if p == "delta" else (v < 0.5)
                                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                                        color="white" if light else "black")
                ax.set_xticks(range(nb), self.layers_b, rotation=45, ha="right", fontsize=8)
                ax.set_yticks(range(na), self.layers_a, fontsize=8)
                ax.set_xlabel(self.names[1], fontsize=8)
                ax.set_ylabel(self.names[0], fontsize=8)
                what = "Var(x^Δ)/Var(x*)" if p == "delta" else f"Var(x^({p}))/Var(x*)"
                ax.set_title(f"{arrow}: {what}", fontsize=9)
                fig.colorbar(im, ax=ax, shrink=0.8)
        return fig

    # -- splicing ---------------------------------------------------------------------------------
    def spliced(self, layer_a: str, layer_b: str, direction: str = "a->b", *, model_a: nn.Module | None = None,
                model_b: nn.Module | None = None) -> nn.Module:
        """The target net's upper layers on g(source feature): one nn.Module, x -> output.

        ``a->b``: x -> upper_B(denormalise_B(g(resize(normalise_A(lower_A(x)))))); ``b->a`` the other way.
        Pass the models after ``Comparison.load`` (they are not saved).
        """
        la, lb, d = self._key(layer_a, layer_b, direction)
        ma, mb = model_a or self.model_a, model_b or self.model_b
        if ma is None or mb is None:
            raise ValueError("spliced needs both models: pass model_a= and model_b= (a loaded Comparison has none)")
        ma, mb = unwrap(ma), unwrap(mb)
        (src_side, src_model, src_layer), (tgt_side, tgt_model, tgt_layer) = (
            ((0, ma, la), (1, mb, lb)) if d == "a->b" else ((1, mb, lb), (0, ma, la)))
        form = self.forms[(la, lb)]
        f_src = "vec" if form == "pool" else "map"
        tgt_shape = self.shapes[(tgt_side, tgt_layer)]
        if form == "pool" and len(tgt_shape) != 1:
            raise ValueError(f"{la} / {lb} was compared as pooled vectors, and the target {tgt_layer!r} is "
                             f"{_shape_str(tgt_shape)}: a pooled g cannot feed the target net's upper layers")
        f_tgt = "vec" if form == "pool" else "map"
        size = tuple(tgt_shape[1:]) if form == "map" and len(tgt_shape) == 3 else None
        return splice(tgt_model, tgt_layer, self.g(la, lb, d), src_model, src_layer,
                      source_stats=self.stats[(src_side, src_layer, f_src)],
                      target_stats=self.stats[(tgt_side, tgt_layer, f_tgt)], size=size,
                      pool=form == "pool" and len(self.shapes[(src_side, src_layer)]) != 1)

    # -- saving -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, images: bool = True) -> Path:
        """Write table.csv, meta.json, g/pair_NNN.pt (kc.consistency.save), residual/pair_NNN.npz and,
        with ``images``, the held-out images (images.npy, float16) into ``path`` (replaced atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            self.table.to_csv(tmp / "table.csv", index=False)
            (tmp / "g").mkdir()
            (tmp / "residual").mkdir()
            pairs = []
            for i, key in enumerate(self._gs):
                name = f"pair_{i:03d}"
                consistency.save(self._gs[key].cpu(), tmp / "g" / f"{name}.pt", layer_a=key[0], layer_b=key[1],
                                 direction=key[2])
                r = self._residuals[key]
                _save_npz(tmp / "residual" / f"{name}.npz", r)
                pairs.append({"layer_a": key[0], "layer_b": key[1], "direction": key[2], "file": name})
            has_images = False
            if images and self._images is not None:
                try:
                    stack = torch.stack([self.image(i) for i in self.heldout]).numpy().astype(np.float16)
                    np.save(tmp / "images.npy", stack)
                    has_images = True
                except KeyError:
                    pass
            meta = {
                "kc_comparison": SAVE_VERSION, "layers_a": self.layers_a, "layers_b": self.layers_b,
                "directions": self.directions, "K": self.K, "names": list(self.names), "pairs": pairs,
                "stats": [[s, l, f, float(m), float(sd)] for (s, l, f), (m, sd) in self.stats.items()],
                "shapes": [[s, l, list(v)] for (s, l), v in self.shapes.items()],
                "forms": [[a, b, v] for (a, b), v in self.forms.items()],
                "heldout": self.heldout.tolist(),
                "labels": None if self.labels is None else np.asarray(self.labels).tolist(),
                "classes": self.classes, "images": has_images,
                "options": {k: v for k, v in self.options.items() if k != "fit_rows"},
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
                path.rename(old / "x")
                tmp.rename(path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Comparison":
        """A saved Comparison: table, g's, residual maps, held-out images; no models, no feature store."""
        import pandas as pd
        path = Path(path)
        meta_path = path / "meta.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} is not a saved Comparison (no meta.json)") from None
        if not isinstance(meta, dict) or "kc_comparison" not in meta:
            raise ValueError(f"{meta_path} is not the meta.json of a saved Comparison")
        gs, residuals = {}, {}
        for p in meta["pairs"]:
            key = (p["layer_a"], p["layer_b"], p["direction"])
            gs[key], _ = consistency.load(path / "g" / f"{p['file']}.pt")
            with np.load(path / "residual" / f"{p['file']}.npz") as z:
                residuals[key] = {k: z[k] for k in z.files}
        heldout = np.asarray(meta["heldout"], dtype=np.int64)
        images = None
        if meta.get("images"):
            arr = np.load(path / "images.npy")
            images = {int(i): torch.from_numpy(arr[j].astype(np.float32)) for j, i in enumerate(heldout)}
        text = {c: str for c in ("layer_a", "layer_b", "direction", "source", "target", "source_shape",
                                  "target_shape", "spatial")}
        return cls(table=pd.read_csv(path / "table.csv", dtype=text), layers_a=meta["layers_a"],
                   layers_b=meta["layers_b"], directions=meta["directions"], K=meta["K"], names=meta["names"], gs=gs, residuals=residuals,
                   stats={(s, l, f): (m, sd) for s, l, f, m, sd in meta["stats"]},
                   shapes={(s, l): tuple(v) for s, l, v in meta["shapes"]},
                   forms={(a, b): v for a, b, v in meta["forms"]}, heldout=heldout,
                   labels=None if meta["labels"] is None else np.asarray(meta["labels"], dtype=np.int64),
                   classes=meta["classes"], options=meta["options"], images=images)


# ------------------------------------------------------------------------------------------------
# compare
# ------------------------------------------------------------------------------------------------
def _device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _model_state(model: nn.Module):
    p = next(iter(model.parameters()), None)
    p = next(iter(model.buffers()), None) if p is None else p
    return model.training, (p.device if p is not None else torch.device("cpu"))


def _default_layers(model: nn.Module, layers, which: str) -> list[str]:
    if layers is None:
        arch = getattr(model, "kc_arch", None)
        if arch not in STUDY_LAYERS:
            names = _graph_nodes(model) or [n for n, _ in model.named_modules() if n]
            raise ValueError(f"layers_{which[-1]} is required for {which} ({type(model).__name__} was not built by "
                             f"kc.models.build); valid names: {_short_nodes(names)}")
        return list(STUDY_LAYERS[arch])
    if isinstance(layers, str):
        layers = [s for s in layers.split(",") if s]
    return list(layers)


def compare(model_a: nn.Module, model_b: nn.Module, data: Any, layers_a: Sequence[str] | str | None = None,
            layers_b: Sequence[str] | str | None = None, *, K: int = 2, lam: float = 0.1,
            directions: str = "both", spatial: str = "auto", holdout: float = 0.25, images: int | None = None,
            epochs: int = 5, batch_size: int = 16, lr: float = 3e-3, kernel_size: int = 3,
            norm: str = "dataset", gate: str = "linear", seed: int = 0,
            device: str | torch.device | None = None, amp: bool | None = None, progress: bool | None = None,
            bootstrap: int = 1000, extract_batch_size: int = 128, store_dtype: str = "float16",
            max_memory: int = 256 * 2**20, ridge_rows: int = 2**16, names: tuple[str, str] = ("A", "B"),
            fit_options: dict | None = None) -> Comparison:
    """Knowledge consistency between every layer of ``layers_a`` and every layer of ``layers_b``.

    ``data``: a tensor of images (N, C, H, W), a pair (images, labels), a Dataset, a DataLoader or any
    iterable yielding images or (images, labels), or a kc ImageSet. ``images``: use at most this many.
    ``K``, ``lam``, ``epochs``, ``batch_size``, ``lr``, ``kernel_size``, ``norm``, ``gate``, ``seed``:
    g_θ and its fit (``kc.consistency``). ``device``: default CUDA when available (the fits run in
    mixed precision there unless ``amp=False``). ``fit_options``: more keyword arguments for
    ``kc.consistency.fit`` (e.g. optimizer, weight_decay). ``spatial``: "auto" (maps stay maps when
    both layers are maps, else both are pooled) or "pool". ``bootstrap``: resamples of the interval.
    ``max_memory``: a pair's fit features up to this many bytes are held in memory, larger ones stream
    from the store. ``names``: how figures and summaries call the two models.

    Returns a :class:`Comparison` (use it as a context manager, or ``close()`` it, to remove the
    temporary store at once). Raises ValueError for unknown layers (listing the valid names), too few
    images (at least 2 to fit and 4 held out) and bad options.
    """
    import pandas as pd
    from kc import stats
    from kc.similarity import linear_cka, linear_predictivity

    # -- arguments -----------------------------------------------------------------------------
    if directions == "both":
        dirs = list(DIRECTIONS)
    elif directions in DIRECTIONS:
        dirs = [directions]
    else:
        raise ValueError(f"directions must be 'both', 'a->b' or 'b->a', got {directions!r}")
    if spatial not in ("auto", "pool"):
        raise ValueError(f"spatial must be 'auto' or 'pool', got {spatial!r}")
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 < holdout < 1:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout!r}")
    K = _positive_int("K", K, 0)
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("kernel_size", kernel_size),
                        ("extract_batch_size", extract_batch_size), ("bootstrap", bootstrap)):
        _positive_int(name, value)
    if images is not None:
        images = _positive_int("images", images)
    ridge_rows = _positive_int("ridge_rows", ridge_rows)
    if store_dtype not in ("float16", "float32"):
        raise ValueError(f"store_dtype must be 'float16' or 'float32', got {store_dtype!r}")
    # check fit options once, before the pass (the same checks as kc.consistency)
    consistency.ConsistencyNet(1, 1, K=K, kernel_size=kernel_size, norm=norm, gate=gate)
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")

    model_a, model_b = unwrap(model_a), unwrap(model_b)
    layers_a = check_layers(model_a, _default_layers(model_a, layers_a, "model_a"), "model_a")
    layers_b = check_layers(model_b, _default_layers(model_b, layers_b, "model_b"), "model_b")
    n_known = _data_len(data)
    if n_known is not None:
        _check_counts(min(n_known, images or n_known), holdout)
    dev = _device(device)
    show = _show(progress)

    # -- one pass: both models, every layer ----------------------------------------------------
    store = tempfile.mkdtemp(prefix="kc-compare-")
    try:
        (features, moments, shapes, forms, image_col, labels, n) = _extract(
            (model_a, model_b), (layers_a, layers_b), data, images, spatial, dev, amp, extract_batch_size,
            np.dtype(store_dtype), Path(store), show)
        n_fit, n_hold = _check_counts(n, holdout)
        perm = np.random.default_rng(seed).permutation(n)
        heldout, fit_rows = np.sort(perm[:n_hold]), np.sort(perm[n_hold:])

        # footnote 2: one scalar mean / std per stored feature, on the fit images
        norm_stats = {}
        for key, m in moments.items():
            tot = m[fit_rows].sum(0)
            mean = tot[1] / tot[0]
            std = math.sqrt(max(tot[2] / tot[0] - mean * mean, 0.0))
            if not std > 0:
                warnings.warn(f"layer {key[1]!r} of model_{'ab'[key[0]]} is constant on the fit images; "
                              "its pairs have no variance to explain (NaN ratios)", RuntimeWarning, stacklevel=2)
            norm_stats[key] = (float(mean), float(std))

        # -- fits ----------------------------------------------------------------------------------
        jobs = [(la, lb, d) for d in dirs for la in layers_a for lb in layers_b]
        gs, residuals, rows, timings = {}, {}, [], {}
        held_labels = None if labels is None else labels[heldout]
        outer = _bar(jobs, show, desc="kc.compare", unit="fit")
        for la, lb, d in outer:
            t0 = time.perf_counter()
            form = forms[(la, lb)]
            f = "vec" if form == "pool" else "map"
            (ss, sl), (ts, tl) = ((0, la), (1, lb)) if d == "a->b" else ((1, lb), (0, la))
            src_arr, tgt_arr = features[(ss, sl, f)], features[(ts, tl, f)]
            size = tuple(tgt_arr.shape[2:]) if f == "map" else None
            src_stats, tgt_stats = norm_stats[(ss, sl, f)], norm_stats[(ts, tl, f)]
            ks = kernel_size if f == "map" else 1
            # views: fit part (for g and the ridge), held-out part (scores)
            src_fit = _View(src_arr, fit_rows, *src_stats, size=size)
            tgt_fit = _View(tgt_arr, fit_rows, *tgt_stats)
            src_hold = _View(src_arr, heldout, *src_stats, size=size)
            tgt_hold = _View(tgt_arr, heldout, *tgt_stats)
            if src_fit.nbytes() + tgt_fit.nbytes() <= max_memory:
                everything = np.arange(n_fit)
                train_src, train_tgt = src_fit[everything], tgt_fit[everything]
                if dev.type == "cuda":
                    train_src, train_tgt = train_src.to(dev), train_tgt.to(dev)
            else:
                train_src, train_tgt = src_fit, tgt_fit
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                g = consistency.ConsistencyNet(src_fit.shape[1], tgt_fit.shape[1], K=K, kernel_size=ks,
                                               norm=norm, gate=gate)
            # near-equal batches: no tiny last batch, whose statistics Σ would be noise
            bs = -(-n_fit // -(-n_fit // batch_size))
            history = consistency.fit(g, train_src, train_tgt, lam=lam, epochs=epochs, batch_size=bs, lr=lr,
                                      device=dev, seed=seed, progress=show, amp=amp, **(fit_options or {}))
            del train_src, train_tgt
            scores, residual = _score(g, src_hold, tgt_hold, dev, max_memory)
            g.cpu().eval()
            iv = stats.ratio_interval(residual["delta_moments"], residual["target_moments"], draws=bootstrap,
                                      seed=seed)
            # 0-order baselines: CKA on the unresized features; the ridge fitted and scored on at most
            # ridge_rows regression rows (positions) of seeded subsets of the fit and held-out images
            cka = linear_cka(_View(src_arr, heldout, *src_stats), tgt_hold,
                             batch_size=_rows_for(max(_dim(src_arr), _dim(tgt_arr)), 4, 256), seed=seed)
            positions = math.prod(tgt_fit.shape[2:]) if f == "map" else 1
            ridge_fit, ridge_test = (_subset(rows_, max(MIN_HELDOUT, ridge_rows // positions), seed)
                                     for rows_ in (fit_rows, heldout))
            pred = linear_predictivity(_View(src_arr, ridge_fit, *src_stats, size=size),
                                       _View(tgt_arr, ridge_fit, *tgt_stats),
                                       _View(src_arr, ridge_test, *src_stats, size=size),
                                       _View(tgt_arr, ridge_test, *tgt_stats), kernel_size=ks,
                                       batch_size=_rows_for(positions * src_fit.shape[1] * ks * ks, 1, 256))
            last = history[-1]
            row = {"layer_a": la, "layer_b": lb, "direction": d, "source": sl, "target": tl,
                   "source_shape": _shape_str(shapes[(ss, sl)]), "target_shape": _shape_str(shapes[(ts, tl)]),
                   "spatial": form, "resized": bool(src_fit.size is not None)}
            row.update(scores)
            row.update(delta_ratio_low=iv.low, delta_ratio_high=iv.high)
            vt = scores["var_target"]
            row.update({f"share_x{k}": scores[f"var_x{k}"] / vt if vt > 0 else float("nan") for k in range(K + 1)})
            row.update(cka=cka, linear_predictivity=pred, loss=last["loss"], mse=last["mse"],
                       penalty=last["penalty"])
            row.update({f"p{k + 1}": last[f"p{k + 1}"] for k in range(K)})
            row.update(images_fit=n_fit, images_heldout=n_hold)
            rows.append(row)
            timings[(la, lb, d)] = time.perf_counter() - t0
            gs[(la, lb, d)] = g
            residuals[(la, lb, d)] = residual
        table = pd.DataFrame(rows)
        classes = _classes(data)
        options = dict(K=K, lam=lam, epochs=epochs, batch_size=batch_size, lr=lr, kernel_size=kernel_size,
                       norm=norm, gate=gate, seed=seed, holdout=holdout, spatial=spatial,
                       images=n, device=str(dev), bootstrap=bootstrap, fit_rows=fit_rows)
        cmp = Comparison(table=table, layers_a=layers_a, layers_b=layers_b, directions=dirs, K=K, names=names,
                         gs=gs, residuals=residuals, stats=norm_stats, shapes=shapes, forms=forms, heldout=heldout,
                         labels=held_labels, classes=classes, options=options, model_a=model_a, model_b=model_b,
                         store=store, images=image_col)
        cmp._features = features
        cmp.timings = timings
        return cmp
    except BaseException:
        shutil.rmtree(store, ignore_errors=True)
        raise


def _save_npz(path: Path, arrays: dict) -> None:
    """np.savez_compressed with fixed zip timestamps: the same arrays give the same bytes."""
    import io
    import zipfile
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, buf.getvalue())


def _subset(rows: np.ndarray, keep: int, seed: int) -> np.ndarray:
    """At most ``keep`` of ``rows``, a seeded choice, in order."""
    if keep >= len(rows):
        return rows
    return np.sort(np.random.default_rng([seed, 1]).choice(rows, keep, replace=False))


def _dim(arr) -> int:
    return int(math.prod(arr.shape[1:]))


def _rows_for(elements_per_row: int, lo: int, hi: int, budget: int = 2**26) -> int:
    """A batch size so that a float64 batch of rows holds about ``budget`` bytes, within [lo, hi]."""
    return int(min(hi, max(lo, budget // (8 * max(1, elements_per_row)))))


def _classes(data) -> list[str] | None:
    for obj in (data, getattr(data, "dataset", None)):
        classes = getattr(obj, "classes", None)
        if isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes):
            return list(classes)
    return None


def _check_counts(n: int, holdout: float) -> tuple[int, int]:
    n_hold = min(n - 1, max(1, int(round(holdout * n)))) if n > 1 else n
    n_fit = n - n_hold
    if n_fit < MIN_FIT or n_hold < MIN_HELDOUT:
        raise ValueError(f"too few images: kc.compare needs at least {MIN_FIT} images to fit g and {MIN_HELDOUT} "
                         f"held-out images to score it (CKA, the interval); got {n} images, holdout={holdout} "
                         f"-> {n_fit} to fit, {n_hold} held out. Pass more images (e.g. >= "
                         f"{math.ceil(MIN_HELDOUT / holdout) + MIN_FIT}) or a larger holdout")
    return n_fit, n_hold


@torch.no_grad()
def _extract(models, layer_lists, data, limit, spatial, dev, amp, batch_size, dtype, store: Path, show):
    """One pass over ``data``: every batch through both models; features, per-image moments, images."""
    from kc import stats
    states = [_model_state(m) for m in models]
    taps = []
    try:
        for m, layers in zip(models, layer_lists):
            m.to(dev).eval()
            taps.append(_Tap(m, layers))
        cols: dict = {}
        moments: dict = {}
        shapes: dict = {}
        forms: dict = {}
        labels: list = []
        has_labels = True
        image_col = _Column(store / "images.bin", np.float16)
        n = 0
        bar = _bar(_batches(data, batch_size), show, desc="kc.compare: extract", unit="batch", leave=False)
        for x, y in bar:
            if limit is not None and n >= limit:
                break
            if limit is not None and n + len(x) > limit:
                x, y = x[:limit - n], (None if y is None else y[:limit - n])
            if len(x) == 0:
                continue
            outs = []
            for tap in taps:
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda" and amp is not False):
                    outs.append({k: v.detach().float() for k, v in tap(x.to(dev)).items()})
            if not forms:  # the first batch decides how each pair is compared, hence what to store
                for side, out in enumerate(outs):
                    for layer, v in out.items():
                        if v.dim() not in (2, 3, 4):
                            raise ValueError(f"layer {layer!r} of model_{'ab'[side]} gives shape {tuple(v.shape)}; "
                                             "kc.compare takes maps (N, C, H, W), tokens (N, T, C) or vectors (N, C)")
                        shapes[(side, layer)] = tuple(v.shape[1:])
                for la in layer_lists[0]:
                    for lb in layer_lists[1]:
                        both_maps = len(shapes[(0, la)]) == 3 and len(shapes[(1, lb)]) == 3
                        forms[(la, lb)] = "map" if both_maps and spatial == "auto" else "pool"
                for side, layers in enumerate(layer_lists):
                    for layer in layers:
                        pairs = [forms[(layer, o)] if side == 0 else forms[(o, layer)] for o in layer_lists[1 - side]]
                        for f in (["map"] if "map" in pairs else []) + (["vec"] if "pool" in pairs else []):
                            cols[(side, layer, f)] = _Column(store / f"{side}-{len(cols)}.bin", dtype)
                            moments[(side, layer, f)] = []
            for (side, layer, f), col in cols.items():
                v = outs[side][layer] if f == "map" else _pool(outs[side][layer])
                if dtype == np.float16 and float(v.abs().max()) > FLOAT16_MAX:
                    raise ValueError(f"layer {layer!r} of model_{'ab'[side]} has values beyond float16's range; "
                                     "pass store_dtype='float32'")
                if not bool(torch.isfinite(v).all()):
                    raise ValueError(f"layer {layer!r} of model_{'ab'[side]} gives NaN or infinite values")
                moments[(side, layer, f)].append(stats.image_moments(v))
                col.append(v.cpu().numpy())
            image_col.append(x.cpu().numpy())
            if y is None:
                has_labels = False
            else:
                labels.append(y.cpu().numpy().astype(np.int64))
            n += len(x)
        if n == 0:
            raise ValueError("data yielded no images")
        features = {key: col.finish() for key, col in cols.items()}
        moments = {key: np.concatenate(m) for key, m in moments.items()}
        return (features, moments, shapes, forms, image_col.finish(),
                np.concatenate(labels) if has_labels and labels else None, n)
    finally:
        for tap in taps:
            tap.close()
        for m, (training, device) in zip(models, states):
            m.to(device).train(training)


@torch.no_grad()
def _score(g, src: _View, tgt: _View, dev, max_memory) -> tuple[dict, dict]:
    """Held-out variances of x^(k), output, x^Δ, x*, per-image moments and residual energy maps."""
    from kc import stats
    g.to(dev).eval()
    per = max(1, (g.K + 3) * (tgt.nbytes() // max(1, len(tgt))))
    bs = int(min(256, max(1, (max_memory // 4) // per)))
    acc: dict[str, list] = {}
    energy = []
    for s in range(0, len(src), bs):
        idx = np.arange(s, min(s + bs, len(src)))
        x, y = src[idx].to(dev), tgt[idx].to(dev)
        c = g.components(x).float()
        out = c.sum(0)
        delta = y - out
        parts = {f"x{k}": c[k] for k in range(c.shape[0])}
        parts.update(output=out, delta=delta, target=y)
        for key, v in parts.items():
            acc.setdefault(key, []).append(stats.image_moments(v))
        e = (delta * delta).sum(1)
        energy.append((e if e.dim() == 3 else e[:, None, None]).cpu().numpy().astype(np.float32))
    m = {k: np.concatenate(v) for k, v in acc.items()}
    var = {k: stats.pooled_variance(v) for k, v in m.items()}
    scores = {f"var_x{k}": var[f"x{k}"] for k in range(g.K + 1)}
    scores.update(var_output=var["output"], var_delta=var["delta"], var_target=var["target"],
                  delta_ratio=var["delta"] / var["target"] if var["target"] > 0 else float("nan"))
    return scores, {"energy": np.concatenate(energy), "delta_moments": m["delta"], "target_moments": m["target"]}



# ------------------------------------------------------------------------------------------------
# command line: python -m kc compare A.pt B.pt --data DATA --layers-a .. --layers-b .. --out DIR
# ------------------------------------------------------------------------------------------------
class _UsageError(Exception):
    pass


def _parser():
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise _UsageError(message)

    p = Parser(prog="python -m kc compare", description="Knowledge consistency between two kc checkpoints, "
               "every layer pair, both directions: table.csv, heatmap.png, summary.md and the saved Comparison.")
    p.add_argument("a", metavar="A.pt", help="checkpoint of net A (kc.train.save_checkpoint)")
    p.add_argument("b", metavar="B.pt", help="checkpoint of net B")
    p.add_argument("--data", required=True, help="a prepared dataset folder, or the name of one under data/prepared/")
    p.add_argument("--split", default="test", choices=("train", "test"), help="which split's images (default test)")
    p.add_argument("--layers-a", default=None, help="comma-separated layers of A (default: its study layers)")
    p.add_argument("--layers-b", default=None, help="comma-separated layers of B (default: its study layers)")
    p.add_argument("--out", required=True, help="output folder (replaced)")
    p.add_argument("--images", type=int, default=1000, help="class-balanced subset of this many images (default 1000)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--K", type=int, default=2)
    p.add_argument("--lam", type=float, default=0.1)
    p.add_argument("--holdout", type=float, default=0.25)
    p.add_argument("--directions", default="both", choices=("both",) + DIRECTIONS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    return p


def _resolve_data(name: str) -> Path:
    path = Path(name)
    if (path / "meta.json").is_file():
        return path
    under = Path("data") / "prepared" / name  # kc.paths.Paths(".").prepared(name)
    if "/" not in name and (under / "meta.json").is_file():
        return under
    raise _UsageError(f"argument --data: no prepared dataset at {path} or {under} (a folder written by the "
                      "prepare stage, with meta.json)")


def summary_markdown(cmp: Comparison, title: str = "kc compare") -> str:
    """A short Markdown summary: per direction the best- and worst-explained layer pairs, and the table."""
    o = cmp.options
    lines = [f"# {title}", "",
             f"{o.get('images')} images ({len(cmp.heldout)} held out for every number below), K = {cmp.K}, "
             f"λ = {o.get('lam')}, {o.get('epochs')} epochs. Var(x^Δ)/Var(x*): the share of the target feature "
             "that the source cannot explain (lower: more consistent), with its bootstrap 95% interval over "
             "held-out images; x^(k): the share explained through k non-linearities; CKA and linear R² are "
             "0-order baselines.", ""]
    t = cmp.table
    for d in cmp.directions:
        src, tgt = (cmp.names if d == "a->b" else cmp.names[::-1])
        rows = t[t.direction == d].sort_values("delta_ratio", kind="stable")
        lines += [f"## {src} → {tgt} (g reconstructs {tgt}'s feature from {src}'s)", ""]
        if len(rows):
            for label, r in (("Best explained", rows.iloc[0]), ("Worst explained", rows.iloc[-1])):
                lines.append(f"- {label}: {r.source} → {r.target}: Var(x^Δ)/Var(x*) = {r.delta_ratio:.3f} "
                             f"[{r.delta_ratio_low:.3f}, {r.delta_ratio_high:.3f}], x^(0) share "
                             f"{r.share_x0:.3f}, CKA {r.cka:.3f}, linear R² {r.linear_predictivity:.3f}")
        lines += ["", "| source | target | Var(x^Δ)/Var(x*) | 95% interval | "
                  + " | ".join(f"x^({k})" for k in range(cmp.K + 1)) + " | CKA | linear R² |",
                  "|---|---|---|---|" + "---|" * (cmp.K + 1) + "---|---|"]
        for _, r in rows.iterrows():
            lines.append(f"| {r.source} | {r.target} | {r.delta_ratio:.3f} | [{r.delta_ratio_low:.3f}, "
                         f"{r.delta_ratio_high:.3f}] | "
                         + " | ".join(f"{r[f'share_x{k}']:.3f}" for k in range(cmp.K + 1))
                         + f" | {r.cka:.3f} | {r.linear_predictivity:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m kc compare``: 0 on success, 2 for usage errors, 1 when the work fails."""
    args = sys.argv[1:] if argv is None else argv
    try:
        ns = _parser().parse_args(args)
        for name in ("images", "epochs", "batch_size", "K"):
            value = getattr(ns, name)
            if value < (0 if name == "K" else 1):
                raise _UsageError(f"argument --{name.replace('_', '-')}: must be >= {0 if name == 'K' else 1}, "
                                  f"got {value}")
        from kc.data import DataError, Task, stratified_subset
        from kc.train import load_checkpoint
        models = []
        for label, path in (("A.pt", ns.a), ("B.pt", ns.b)):
            try:
                models.append(load_checkpoint(path)[0])
            except (FileNotFoundError, ValueError) as exc:
                raise _UsageError(f"argument {label}: {exc}") from None
        data_path = _resolve_data(ns.data)
        try:
            images = Task([data_path]).load(ns.split)
        except (DataError, ValueError) as exc:
            raise _UsageError(f"argument --data: {exc}") from None
        for label, m in zip(("A.pt", "B.pt"), models):
            first = next(m.parameters())
            if first.dim() == 4 and first.shape[1] != images.channels:
                raise _UsageError(f"argument {label}: the net takes {first.shape[1]}-channel images, {data_path} has "
                                  f"{images.channels} channels")
        if ns.images < len(images):
            images = images.subset(stratified_subset(images.labels, ns.images, ns.seed))
        layers = []
        for flag, m, value in (("--layers-a", models[0], ns.layers_a), ("--layers-b", models[1], ns.layers_b)):
            try:
                chosen = _default_layers(m, value, "model_" + flag[-1])
                layers.append(check_layers(m, chosen, "model_" + flag[-1]))
            except ValueError as exc:
                raise _UsageError(f"argument {flag}: {exc}") from None
        names = (Path(ns.a).stem, Path(ns.b).stem)
        if names[0] == names[1]:
            names = (f"A:{names[0]}", f"B:{names[1]}")
        try:
            cmp = compare(models[0], models[1], images, layers[0], layers[1], K=ns.K, lam=ns.lam,
                          directions=ns.directions, holdout=ns.holdout, epochs=ns.epochs, batch_size=ns.batch_size,
                          lr=ns.lr, seed=ns.seed, device=ns.device, names=names)
        except ValueError as exc:
            if "too few images" in str(exc):
                raise _UsageError(f"argument --images: {exc}") from None
            raise
        with cmp:
            out = cmp.save(ns.out)
            fig = cmp.heatmap()
            fig.savefig(out / "heatmap.png", dpi=120)
            (out / "summary.md").write_text(
                summary_markdown(cmp, f"kc compare: {names[0]} vs {names[1]} on {data_path} ({ns.split})") + "\n",
                encoding="utf-8")
        print(f"kc compare: {len(cmp.table)} fits -> {out}/table.csv, heatmap.png, summary.md")
        return 0
    except _UsageError as exc:
        print(f"kc: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"kc: error: {type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr)
        return 1


# ``kc.compare`` is this module; calling it calls :func:`compare`, so that both ``kc.compare(...)`` and
# ``kc.compare.Comparison`` work whichever way the package attribute was bound.
class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs) -> Comparison:
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
sys.modules[__name__].__signature__ = inspect.signature(compare)
