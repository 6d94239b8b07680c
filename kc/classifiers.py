"""Classifiers on frozen features: the experiments of Sections 4.1 and 4.3 (Appendix A).

The paper's fairness rules, kept here: g is fitted without labels and then held fixed; the backbones
are never updated (features come from the feature stores); only a classifier learns, and every row of
a table (baselines included) gets the same recipe. A classifier is a copy of a net's upper layers
(``kc.models.split``), so it starts from that net's trained weights, as in the paper's fine-tuning.
Each row is trained once per classifier seed and scored per test image, so rows can be compared on
the same images with intervals over images and seeds (kc.stats.accuracy_difference)::

    rows = {"a": Row(copy_of_upper_a, raw_inputs(train.source_raw), raw_inputs(test.source_raw)), ...}
    correct = run_rows(rows, train_labels, test_labels, recipe, seeds=(0, 1, 2))   # {row: (seeds, images) bool}

Readings written down here (see README):

* Components are mapped back to the target net's feature scale before its upper layers read them
  (``sum_k x^(k) * std + mean`` under the paper's normalisation; the identity on raw features).
* Table 4 (a classifier for a class subset): the pretrained upper layers keep their output layer;
  the logits are restricted to the subset's classes, so no row gets new parameters.
* Diagnosis (a), "adding blind spots": the weak upper layers read x_A + P x^Δ_B, where x^Δ_B (the
  strong feature's residual, resized to the weak map) enters through a learned 1x1 convolution P
  that starts at zero, so the classifier starts exactly as the weak net.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kc.consistency import ConsistencyNet
from kc.train import TrainConfig, evaluate, train

Maker = Callable[[np.ndarray], torch.Tensor]


class FeatureSet:
    """Classifier inputs made batch by batch (e.g. through a frozen g); the interface kc.train reads.

    ``make(indices) -> tensor`` computes the inputs of those samples.
    """

    def __init__(self, make: Maker, labels: np.ndarray, rows: np.ndarray | None = None):
        self.make = make
        self.all_labels = np.asarray(labels, dtype=np.int64)
        self.rows = np.arange(len(self.all_labels)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.labels = self.all_labels[self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, indices) -> "FeatureSet":
        return FeatureSet(self.make, self.all_labels, self.rows[np.asarray(indices, dtype=np.int64)])

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0, rank: int = 0,
                world_size: int = 1, drop_last: bool = False):
        n = len(self)
        order = np.random.default_rng([int(seed), int(epoch)]).permutation(n) if shuffle else np.arange(n)
        if world_size > 1:
            order = np.resize(order, -(-n // world_size) * world_size)[rank::world_size]
        stop = (len(order) // batch_size) * batch_size if drop_last else len(order)
        for lo in range(0, stop, batch_size):
            idx = self.rows[order[lo:lo + batch_size]]
            with torch.no_grad():
                x = self.make(idx)
            yield x, torch.from_numpy(self.all_labels[idx])


class RestrictLogits(nn.Module):
    """The upper layers with their logits restricted to a class subset (Table 4)."""

    def __init__(self, upper: nn.Module, classes: list[int]):
        super().__init__()
        self.upper = upper
        self.register_buffer("classes", torch.as_tensor(classes, dtype=torch.long))

    def forward(self, x):
        return self.upper(x)[:, self.classes]


class BlindSpotClassifier(nn.Module):
    """The weak net's upper layers on x_A + P x^Δ, with P a 1x1 convolution that starts at zero.

    Input: x_A and x^Δ concatenated on channels (the first ``weak_channels`` are x_A).
    """

    def __init__(self, upper: nn.Module, weak_channels: int, residual_channels: int):
        super().__init__()
        self.upper, self.weak_channels = upper, weak_channels
        self.adapter = nn.Conv2d(residual_channels, weak_channels, 1, bias=False)
        nn.init.zeros_(self.adapter.weight)

    def forward(self, x):
        weak, residual = x[:, :self.weak_channels], x[:, self.weak_channels:]
        return self.upper(weak + self.adapter(residual))


# ------------------------------------------------------------------------------------------------
# Input makers (frozen: they run under no_grad inside FeatureSet.batches)
# ------------------------------------------------------------------------------------------------
def raw_inputs(array) -> Maker:
    """The stored feature itself (the net's own scale)."""
    return lambda idx: array.raw(idx)


def component_inputs(g: ConsistencyNet, source, target, orders: int | None = None,
                     device: str | torch.device = "cpu") -> Maker:
    """x^(0) + ... + x^(orders-1) of g(source) (all orders when None), mapped back from g's output
    space (``target``'s view: normalised or raw) to the target net's feature scale."""
    g = g.eval()
    device = torch.device(device)

    @torch.no_grad()
    def make(idx):
        comps = g.to(device).components(source[idx].to(device))
        total = comps[:orders].sum(0) if orders is not None else comps.sum(0)
        return target.denormalise(total).cpu()
    return make


def residual_inputs(g: ConsistencyNet, source, target, size: tuple[int, int] | None = None,
                    device: str | torch.device = "cpu") -> Maker:
    """x^Δ = target - g(source) in g's output space, resized to ``size`` when given."""
    g = g.eval()
    device = torch.device(device)

    @torch.no_grad()
    def make(idx):
        delta = target[idx].to(device) - g.to(device)(source[idx].to(device))
        if size is not None and tuple(delta.shape[2:]) != tuple(size):
            delta = F.interpolate(delta, size=size, mode="bilinear", align_corners=False)
        return delta.cpu()
    return make


def concat_inputs(*makers: Maker) -> Maker:
    return lambda idx: torch.cat([m(idx) for m in makers], dim=1)


# ------------------------------------------------------------------------------------------------
# Rows
# ------------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One classifier of a table: a model (the caller's copy) and its inputs on the train and test images."""
    model: nn.Module
    train_inputs: Maker
    test_inputs: Maker


def finetune(classifier: nn.Module, train_set: FeatureSet, test_set: FeatureSet, recipe, *, seed: int = 0,
             device: str = "cpu", progress: bool | None = None) -> dict:
    """Train only ``classifier`` with the shared recipe; returns accuracies and per-image test correctness."""
    cfg = TrainConfig(epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, momentum=recipe.momentum,
                      weight_decay=recipe.weight_decay, schedule="cosine", seed=seed, device=device)
    torch.manual_seed(seed)
    result = train(classifier, train_set, None, cfg, progress=progress)
    ev = evaluate(classifier, test_set, device=device, per_image=True)
    return {"test_accuracy": ev["accuracy"], "correct": ev["correct"],
            "train_accuracy": result["history"][-1]["train_accuracy"]}


def cached(make: Maker, n: int, max_bytes: int = 512 * 2**20, batch: int = 500) -> Maker:
    """``make`` with every sample's input computed once (the classifier rows of one table train several
    seeds on the same frozen inputs), when they fit in ``max_bytes``; else ``make`` itself."""
    first = make(np.arange(min(batch, n)))
    if first.numel() * first.element_size() * n / max(1, len(first)) > max_bytes:
        return make
    parts = [first] + [make(np.arange(lo, min(n, lo + batch))) for lo in range(len(first), n, batch)]
    values = torch.cat(parts)
    return lambda idx: values[torch.as_tensor(np.asarray(idx, dtype=np.int64))]


def run_rows(rows: dict[str, Callable[[], Row]], train_labels, test_labels, recipe, seeds, *,
             device: str = "cpu", progress: bool | None = None) -> dict[str, np.ndarray]:
    """Each row once per classifier seed, side by side on the CPU (kc.pipeline.workers);
    {row: bool array (seeds, test images)}. ``rows[name]()`` builds a fresh Row (a new copy of the
    upper layers) for each seed; a row's inputs are computed once for all its seeds."""
    from kc.pipeline.workers import map_items

    inputs = {}
    for name, build in rows.items():
        row = build()
        inputs[name] = (cached(row.train_inputs, len(train_labels)), cached(row.test_inputs, len(test_labels)))
    jobs = [(name, seed) for name in rows for seed in seeds]

    def one(job):
        name, seed = job
        model = rows[name]().model
        make_train, make_test = inputs[name]
        return finetune(model, FeatureSet(make_train, train_labels), FeatureSet(make_test, test_labels),
                        recipe, seed=seed, device=device, progress=progress)["correct"]
    done = dict(zip(jobs, map_items(one, jobs, str(device))))
    return {name: np.stack([done[(name, seed)] for seed in seeds]) for name in rows}
