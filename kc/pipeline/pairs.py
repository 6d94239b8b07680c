"""Fit g and decompose, for the pairs of a study (Eq. 1-4; Section 4.2's variances).

    results = fit_pairs(cfg, pairs, out_dir, reading="paper")   # {pair name: metrics}

For each pair (source net/layer -> target net/layer): g is fitted on the ``fit`` images' features
(kc.pipeline.extract) and measured on the ``test`` images, where the reconstruction is split
exactly into x^(0) ... x^(K) and x^Δ. Written to ``out_dir``:

    <pair>.pt          the fitted g (kc.consistency.save)
    moments.npz        per pair, per test image: [count, sum, sum of squares] of x^(0..K), x^Δ, x* and
                       g(x): the sufficient statistics from which kc.stats bootstraps every variance
                       and ratio over test images
    <pair>.figure.npz  for pairs drawn in the report: a few test images, x*, x^(k), x^Δ

Under the paper's reading x and x* are normalised (one scalar mean and std each, footnote 2) and
the source map is resized to the target's size (bilinear) when they differ; under the authors' the
features are raw (g scales its own input). Var(x) pools every element around one scalar mean
(Section 4.2); the per-channel-mean variance of the authors' Variance.py is reported beside it.
"""
from __future__ import annotations

import contextlib
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kc import consistency
from kc.archs import tap_for
from kc.config import Config, NetSpec
from kc.features import FeatureStore
from kc.io import write_npz
from kc.paths import Paths
from kc.pipeline.env import device, log
from kc.pipeline.journal import Journal
from kc.pipeline.workers import map_items
from kc.readings import READINGS
from kc.similarity import linear_cka, linear_predictivity

CODE = ("kc/consistency.py", "kc/util.py", "kc/features.py", "kc/pipeline/pairs.py", "kc/readings.py")


@dataclass(frozen=True)
class Pair:
    """g: source net's feature at source_layer -> target net's feature at target_layer."""
    source: NetSpec
    target: NetSpec
    source_layer: str
    target_layer: str
    lam: float
    K: int
    classes: tuple | None = None   # the datasets' class names or indices: fit and measure on those images only
    figure: bool = False           # keep a few test images' components for the report's figures

    @property
    def name(self) -> str:
        if self.source_layer == self.target_layer:
            return f"{self.source_layer}__{self.source.name}__{self.target.name}"
        return f"{self.source.name}_{self.source_layer}__{self.target.name}_{self.target_layer}"

    def describe(self) -> str:
        return f"{self.source.name}.{self.source_layer} -> {self.target.name}.{self.target_layer}"


@dataclass
class PairData:
    """The aligned features of a pair on one image set."""
    source: object          # FeatureArray as g reads it (normalised and resized, or raw)
    target: object
    source_raw: object      # stored values (for the nets' own upper layers and CKA)
    target_raw: object
    labels: np.ndarray      # the datasets' labels
    index: np.ndarray       # the images, as indices into the datasets' prepared split


def stores(root, pair: Pair) -> tuple[FeatureStore, FeatureStore]:
    paths = Paths(root)
    return FeatureStore(paths.features(pair.source.set, pair.source.name)), \
        FeatureStore(paths.features(pair.target.set, pair.target.name))


def class_labels(store: FeatureStore, classes, root=".") -> list[int]:
    """``classes`` (names, indices or dataset:<name>) as labels of the store's datasets, in that order."""
    from kc.data.prepared import load_prepared
    from kc.data.splits import expand_classes
    from kc.data.tasks import Task

    datasets = store.meta["datasets"]
    prepared = [load_prepared(Paths(root).prepared(d)) for d in datasets]
    members = expand_classes(list(classes), datasets, [len(p.classes) for p in prepared])
    return Task(prepared).class_indices(members)        # every class of the datasets: indices = labels


def class_rows(store: FeatureStore, split: str, classes, root=".") -> np.ndarray:
    """Rows of a store's split whose label is one of ``classes``."""
    return np.flatnonzero(np.isin(store.labels(split), class_labels(store, classes, root)))


def pair_data(cfg: Config, pair: Pair, split: str, reading: str, root=".", data_stores=None) -> PairData:
    """The pair's features on ``split`` ("fit" or "test"; "train" with ``data_stores`` from
    :func:`classifier_data`) as the reading uses them, normalised with the fit images' statistics."""
    src_store, tgt_store = stores(root, pair)
    src_data, tgt_data = data_stores or (src_store, tgt_store)
    if not np.array_equal(src_data.index(split), tgt_data.index(split)) or \
            src_store.meta["datasets"] != tgt_store.meta["datasets"]:
        raise ValueError(f"{pair.describe()}: the feature stores of {pair.source.name} and {pair.target.name} hold "
                         "different images; rerun their features stages with the same features settings")
    src_layer = tap_for(pair.source.arch, pair.source_layer, reading)
    tgt_layer = tap_for(pair.target.arch, pair.target_layer, reading)
    rows = class_rows(src_data, split, pair.classes, root) if pair.classes is not None else None
    src_shape, tgt_shape = src_store.shape(src_layer), tgt_store.shape(tgt_layer)
    size = tuple(tgt_shape[1:]) if len(tgt_shape) == 3 and tuple(src_shape[1:]) != tuple(tgt_shape[1:]) else None
    normalise = READINGS[reading].normalise
    labels = src_data.labels(split)
    index = src_data.index(split)
    return PairData(
        source=src_data.array(src_layer, split, rows=rows, size=size, normalise=normalise, stats=src_store),
        target=tgt_data.array(tgt_layer, split, rows=rows, normalise=normalise, stats=tgt_store),
        source_raw=src_data.array(src_layer, split, rows=rows, normalise=False),
        target_raw=tgt_data.array(tgt_layer, split, rows=rows, normalise=False),
        labels=labels if rows is None else labels[rows], index=index if rows is None else index[rows])


@contextlib.contextmanager
def classifier_data(cfg: Config, pairs: list[Pair], reading: str, root="."):
    """{pair name: (train, test)} PairData for the classifiers of Tables 3-4 and Section 4.1: the nets'
    own training images (what they learned on) and every test image of the datasets, their features
    extracted for the occasion into a temporary store (kc.io staging), normalised like g's inputs."""
    from kc.features import extract
    from kc.io import staging_dir
    from kc.pipeline.extract import all_test_images, training_images
    from kc.pipeline.nets import load_net

    nets, taps = {}, {}
    for p in pairs:
        for net, layer in ((p.source, p.source_layer), (p.target, p.target_layer)):
            nets[net.name] = net
            taps.setdefault(net.name, set()).add(tap_for(net.arch, layer, reading))
    with tempfile.TemporaryDirectory(prefix="classifier-features.", dir=staging_dir(Path(root) / "data" / "x")) as tmp:
        made = {}
        for name, net in nets.items():
            model, _ = load_net(root, net)
            splits = {"train": training_images(cfg, net.task, root), "test": all_test_images(cfg, net.task, root)}
            extract(model, sorted(taps[name]), splits, Path(tmp) / name,
                    meta={"net": name, "datasets": list(cfg.tasks[net.task].datasets)},
                    batch_size=cfg.features["batch_size"], device=device(), dtype=cfg.features["dtype"])
            made[name] = FeatureStore(Path(tmp) / name)
        yield {p.name: tuple(pair_data(cfg, p, split, reading, root, (made[p.source.name], made[p.target.name]))
                             for split in ("train", "test")) for p in pairs}


def _moments(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B, 3) float64 [count, sum, sum of squares] per image."""
    flat = x.reshape(x.shape[0], -1).double()
    return torch.stack([torch.full((x.shape[0],), float(flat.shape[1]), dtype=torch.float64, device=x.device),
                        flat.sum(1), (flat * flat).sum(1)], 1)


class _ChannelMoments:
    """Per-channel count, sum and sum of squares, for the per-channel-mean variance (authors' Variance.py)."""

    def __init__(self):
        self.s = None

    def update(self, x: torch.Tensor) -> None:
        d = x.double().transpose(0, 1).reshape(x.shape[1], -1)
        row = torch.stack([torch.full((d.shape[0],), float(d.shape[1]), dtype=torch.float64, device=d.device),
                           d.sum(1), (d * d).sum(1)], 1)
        self.s = row if self.s is None else self.s + row

    @property
    def variance(self) -> float:
        count, s, ss = self.s[:, 0], self.s[:, 1], self.s[:, 2]
        return float((ss - s * s / count).sum() / count.sum())


@torch.no_grad()
def measure(g: consistency.ConsistencyNet, test: PairData, batch_size: int, dev: str) -> tuple[dict, np.ndarray]:
    """Decompose every test image (Eq. 3-4) and return the variances and the per-image moments
    (N, K+4, 3): x^(0) .. x^(K), x^Δ, x*, g(x)."""
    g = g.to(dev).eval()
    rows, per_channel = [], {"delta": _ChannelMoments(), "target": _ChannelMoments()}
    n = len(test.source)
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(n, start + batch_size))
        src, tgt = test.source[idx].to(dev), test.target[idx].to(dev)
        comps = g.components(src).float()
        out = comps.sum(0)
        delta = tgt - out
        rows.append(torch.stack([_moments(c) for c in comps] + [_moments(delta), _moments(tgt), _moments(out)], 1).cpu())
        if delta.dim() == 4:
            per_channel["delta"].update(delta)
            per_channel["target"].update(tgt)
    moments = torch.cat(rows).numpy()
    pooled = moments.sum(0)
    var = (pooled[:, 2] - pooled[:, 1] ** 2 / pooled[:, 0]) / pooled[:, 0]
    K = g.K
    metrics = {f"var_x{k}": float(var[k]) for k in range(K + 1)}
    metrics.update(var_delta=float(var[K + 1]), var_target=float(var[K + 2]), var_output=float(var[K + 3]))
    metrics["delta_ratio"] = metrics["var_delta"] / metrics["var_target"] if metrics["var_target"] > 0 else float("nan")
    if per_channel["target"].s is not None:
        vt = per_channel["target"].variance
        metrics["delta_ratio_channel_mean"] = per_channel["delta"].variance / vt if vt > 0 else float("nan")
    return metrics, moments.astype(np.float64)


def _fingerprint(store: FeatureStore, layer: str) -> str:
    info = store.meta["layers"][layer]
    text = repr((info["shape"], info["mean"], info["std"], store.meta["counts"], store.meta["net"]))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fit_pair(cfg: Config, pair: Pair, reading: str, root=".", journal: Journal | None = None) -> tuple[consistency.ConsistencyNet, list[dict]]:
    """g fitted on the pair's ``fit`` images (Eq. 2), or reused from an interrupted run's journal."""
    r = READINGS[reading]
    fit_data = pair_data(cfg, pair, "fit", reading, root)
    key = None
    if journal is not None:
        src_store, tgt_store = stores(root, pair)
        key = journal.key(pair=pair.name, lam=pair.lam, K=pair.K, classes=pair.classes, reading=reading,
                          fit=cfg.fit.__dict__, seed=cfg.seed, device=device(),
                          source=_fingerprint(src_store, tap_for(pair.source.arch, pair.source_layer, reading)),
                          target=_fingerprint(tgt_store, tap_for(pair.target.arch, pair.target_layer, reading)))
        cached = journal.get(key, ".pt")
        if cached is not None:
            g, extra = consistency.load(cached)
            return g, extra["history"]
    torch.manual_seed(cfg.seed)
    g = consistency.ConsistencyNet(fit_data.source.shape[1], fit_data.target.shape[1], K=pair.K,
                                   kernel_size=cfg.fit.kernel_size, **r.net_options())
    try:
        history = consistency.fit(g, fit_data.source, fit_data.target, lam=pair.lam, device=device(), seed=cfg.seed,
                                  **r.fit_options(cfg.fit))
    except consistency.FitDiverged as exc:
        raise consistency.FitDiverged(f"{pair.describe()}: {exc} (params: fit.lr, fit.epochs, lam)") from None
    history = [{k: v for k, v in row.items() if k != "seconds"} for row in history]
    if journal is not None:
        tmp = journal.dir / f".{key}.pt"
        journal.dir.mkdir(parents=True, exist_ok=True)
        consistency.save(g.cpu(), tmp, history=history)
        journal.put(key, tmp, ".pt")
        tmp.unlink()
    return g, history


def fit_pairs(cfg: Config, pairs: list[Pair], out_dir: Path, reading: str, root=".", stage: str = "pairs") -> dict:
    """Fit and decompose every pair into ``out_dir`` (a folder being built), the pairs side by side on
    the CPU (kc.pipeline.workers); {pair name: metrics}."""
    journal = Journal(root, stage, CODE)
    dev = device()

    def one(pair: Pair) -> tuple[dict, np.ndarray]:
        g, history = fit_pair(cfg, pair, reading, root, journal)
        test = pair_data(cfg, pair, "test", reading, root)
        metrics, moments = measure(g, test, cfg.features["batch_size"], dev)
        fit_data = pair_data(cfg, pair, "fit", reading, root)
        metrics["cka"] = linear_cka(test.source_raw, test.target_raw, seed=cfg.seed)
        metrics["linear_predictivity"] = linear_predictivity(fit_data.source, fit_data.target, test.source, test.target,
                                                             kernel_size=cfg.fit.kernel_size, max_rows=20000)
        last = history[-1]
        metrics.update(fit_loss=last["loss"], fit_mse=last["mse"], lam=pair.lam, K=pair.K, test_images=len(test.source),
                       fit_images=len(fit_data.source),
                       **{k: v for k, v in last.items() if k.startswith("p") and k[1:].isdigit()})
        metrics["source"], metrics["target"] = pair.source.name, pair.target.name
        metrics["source_layer"], metrics["target_layer"] = pair.source_layer, pair.target_layer
        consistency.save(g.cpu(), out_dir / f"{pair.name}.pt", pair=pair.name, reading=reading, history=history)
        if pair.figure:
            write_figure_data(cfg, pair, g, test, out_dir / f"{pair.name}.figure.npz", root)
        gates = " ".join(f"p{k + 1}={float(p):.3f}" for k, p in enumerate(g.gates.detach()))
        log(f"{pair.describe()} ({reading}): Var(x^Δ)/Var(x*) = {metrics['delta_ratio']:.4f}, "
            + ", ".join(f"Var(x^({k}))={metrics[f'var_x{k}']:.4f}" for k in range(pair.K + 1))
            + f", {gates}, CKA {metrics['cka']:.3f}, linear R^2 {metrics['linear_predictivity']:.3f}")
        return metrics, moments

    done = map_items(one, pairs, dev)
    results = {pair.name: m for pair, (m, _) in zip(pairs, done)}
    write_npz(out_dir / "moments.npz", **{pair.name: mom for pair, (_, mom) in zip(pairs, done)})
    journal.clear()
    return results


def write_figure_data(cfg: Config, pair: Pair, g, test: PairData, path: Path, root=".") -> None:
    """A few test images with their features and components, for the report's figures."""
    from kc.data.tasks import Task

    n = min(cfg.report["figure_images"], len(test.source))
    rows = np.linspace(0, len(test.source) - 1, n).astype(np.int64) if n else np.zeros(0, np.int64)
    src_store, _ = stores(root, pair)
    base = Task([Paths(root).prepared(d) for d in src_store.meta["datasets"]]).load("test")
    with torch.no_grad():
        src, tgt = test.source[rows], test.target[rows]
        comps = g.eval().cpu().components(src) if n else torch.zeros(g.K + 1, 0, *tgt.shape[1:])
    write_npz(path, images=base.raw(test.index[rows]) if n else np.zeros((0,), np.uint8),
              labels=test.labels[rows], target=tgt.numpy().astype(np.float16),
              components=comps.numpy().astype(np.float16),
              residual=(tgt - comps.sum(0)).numpy().astype(np.float16))
