"""The paper's classifier experiments on fixed features (Sections 4.1 and 4.3, Appendix A).

Fairness rules of the paper, kept here: g_θ is fitted without labels and then held fixed; the
backbones are never updated (features come from the feature stores); only a classifier learns, and
every row of a table (baselines included) gets the same recipe (epochs, batch size, learning rate).
A classifier is a deep copy of a net's upper layers (``kc.models.split``), so it starts from that
net's trained weights, as in the paper's fine-tuning::

    rows = refine_components(g, upper_a, upper_b, train, test, recipe)   # Table 3
    rows["x0+x1+x2"]["test_accuracy"], rows["b"]["test_accuracy"]

``train``/``test`` are ``PairFeatures``: the source and target features of the same images (normalised
views for g, raw views for the upper layers) and their labels.

Readings written down here (see README):

* Components are mapped back from the normalised space to the target net's feature scale as
  ``sum_k x^(k) * std + mean``: the mean is added once, to whatever sum a row feeds.
* Table 4 (a classifier for a class subset): the pretrained upper layers keep their output layer;
  the logits are restricted to the subset's classes, so no row gets new parameters.
* Diagnosis (a), "adding blind spots": the paper's wording (blind spots added back to g(x_A)) gives
  g(x_A) + x^Δ = x_B, i.e. just the strong feature in a weak classifier. We add the information to the
  weak feature itself instead: the weak upper layers read x_A + P x^Δ_B, where x^Δ_B (the strong
  feature's residual, resized to the weak map) enters through a learned 1x1 convolution P that starts
  at zero, so the classifier starts exactly as the weak net. The baseline is the weak upper layers
  on x_A with the same recipe (P fed zeros would stay zero: the same model).
* Diagnosis (b), "removing unreliable features": the weak upper layers on g'(x_strong), the weak
  feature reconstructed from the strong one (mapped back to the weak net's scale), against x_A.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kc.consistency import ConsistencyNet
from kc.features import FeatureArray
from kc.train import TrainConfig, train

Maker = Callable[[np.ndarray], torch.Tensor]


class FeatureSet:
    """Classifier inputs made batch by batch from feature arrays; the interface ``kc.train`` reads.

    ``make(indices) -> tensor`` computes the inputs of those samples (e.g. through a frozen g_θ).
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


@dataclass
class PairFeatures:
    """Source and target features of the same images, one split."""
    source: FeatureArray         # normalised, resized to the target's map size (g's input)
    target: FeatureArray         # normalised (g's output space)
    source_raw: FeatureArray     # the source net's own feature scale (its upper layers' input)
    target_raw: FeatureArray
    labels: np.ndarray


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
# Input makers (all frozen: they run under no_grad inside FeatureSet.batches)
# ------------------------------------------------------------------------------------------------
def raw_inputs(array: FeatureArray) -> Maker:
    return lambda idx: array.raw(idx)


def component_inputs(g: ConsistencyNet, data: PairFeatures, orders: int | None = None,
                     device: str | torch.device = "cpu") -> Maker:
    """x^(0) + ... + x^(orders-1) of g(source) (all orders when None), in the target net's scale."""
    g = g.eval()
    device = torch.device(device)

    def make(idx):
        comps = g.to(device).components(data.source[idx].to(device))
        total = comps[:orders].sum(0) if orders is not None else comps.sum(0)
        return data.target_raw.denormalise(total)
    return make


def residual_inputs(g: ConsistencyNet, data: PairFeatures, size: tuple[int, int] | None = None,
                    device: str | torch.device = "cpu") -> Maker:
    """x^Δ = target - g(source) in the normalised space, resized to ``size`` when given."""
    g = g.eval()
    device = torch.device(device)

    def make(idx):
        delta = data.target[idx].to(device) - g.to(device)(data.source[idx].to(device))
        if size is not None and tuple(delta.shape[2:]) != tuple(size):
            delta = F.interpolate(delta, size=size, mode="bilinear", align_corners=False)
        return delta
    return make


def concat_inputs(*makers: Maker) -> Maker:
    return lambda idx: torch.cat([m(idx) for m in makers], dim=1)


# ------------------------------------------------------------------------------------------------
# Experiments
# ------------------------------------------------------------------------------------------------
def _recipe(recipe: dict, seed: int, device: str) -> TrainConfig:
    return TrainConfig(epochs=recipe["epochs"], batch_size=recipe["batch_size"], lr=recipe["lr"],
                       momentum=recipe.get("momentum", 0.9), weight_decay=recipe.get("weight_decay", 5e-4),
                       schedule="cosine", seed=seed, device=device)


def finetune(classifier: nn.Module, train_set: FeatureSet, test_set: FeatureSet, recipe: dict, *,
             seed: int = 0, device: str = "cpu", progress: bool | None = None) -> dict:
    """Train only ``classifier`` (a copy the caller owns) with the shared recipe; returns its accuracies."""
    cfg = _recipe(recipe, seed, device)
    result = train(classifier, train_set, test_set, cfg, progress=progress)
    return {"test_accuracy": result["test_accuracy"], "test_loss": result["test_loss"],
            "train_accuracy": result["history"][-1]["train_accuracy"]}


def _rows(specs: dict[str, tuple[nn.Module, Maker, Maker]], train_labels, test_labels, recipe, seed, device,
          progress) -> dict[str, dict]:
    out = {}
    for name, (model, make_train, make_test) in specs.items():
        out[name] = finetune(model, FeatureSet(make_train, train_labels), FeatureSet(make_test, test_labels),
                             recipe, seed=seed, device=device, progress=progress)
    return out


def refine_components(g: ConsistencyNet, upper_a: nn.Module, upper_b: nn.Module, train_data: PairFeatures,
                      test_data: PairFeatures, recipe: dict, *, seed: int = 0, device: str = "cpu",
                      progress: bool | None = None) -> dict[str, dict]:
    """Table 3 (Exp. 1): B's upper layers on x^(0), x^(0)+x^(1), ...; baselines A on x_A and B on x_B."""
    specs = {"a": (copy.deepcopy(upper_a), raw_inputs(train_data.source_raw), raw_inputs(test_data.source_raw)),
             "b": (copy.deepcopy(upper_b), raw_inputs(train_data.target_raw), raw_inputs(test_data.target_raw))}
    for k in range(g.K + 1):
        name = "+".join(f"x{j}" for j in range(k + 1))
        specs[name] = (copy.deepcopy(upper_b), component_inputs(g, train_data, k + 1, device),
                       component_inputs(g, test_data, k + 1, device))
    return _rows(specs, train_data.labels, test_data.labels, recipe, seed, device, progress)


def refine_subset(g: ConsistencyNet, upper_a: nn.Module, upper_b: nn.Module, classes: list[int],
                  train_data: PairFeatures, test_data: PairFeatures, recipe: dict, *, seed: int = 0,
                  device: str = "cpu", progress: bool | None = None) -> dict[str, dict]:
    """Table 4 (Exp. 2): a classifier of the subset's classes from g(x_A), vs x_A and x_B.

    ``classes``: the subset's labels in the nets' label space; ``*_data.labels`` are already 0..n-1
    in the order of ``classes``.
    """
    specs = {"a": (RestrictLogits(copy.deepcopy(upper_a), classes), raw_inputs(train_data.source_raw),
                   raw_inputs(test_data.source_raw)),
             "b": (RestrictLogits(copy.deepcopy(upper_b), classes), raw_inputs(train_data.target_raw),
                   raw_inputs(test_data.target_raw)),
             "g": (RestrictLogits(copy.deepcopy(upper_b), classes), component_inputs(g, train_data, None, device),
                   component_inputs(g, test_data, None, device))}
    return _rows(specs, train_data.labels, test_data.labels, recipe, seed, device, progress)


def diagnose(g_blind: ConsistencyNet, g_unreliable: ConsistencyNet, upper_weak: nn.Module,
             upper_strong: nn.Module, blind_train: PairFeatures, blind_test: PairFeatures,
             unreliable_train: PairFeatures, unreliable_test: PairFeatures, recipe: dict, *, seed: int = 0,
             device: str = "cpu", progress: bool | None = None) -> dict[str, dict]:
    """Section 4.1: the weak net's upper layers on x_A, on x_A plus blind spots, on g'(x_strong).

    ``blind_*``: source = weak, target = strong (x^Δ = blind spots). ``unreliable_*``: source = strong,
    target = weak (g'(x_strong) = the weak feature without its unreliable components).
    Also the strong net's upper layers on its own feature, for reference.
    """
    weak_shape = blind_train.source_raw.shape[1:]
    residual_channels = blind_train.target.shape[1]

    def with_blind_spots(data: PairFeatures) -> Maker:
        return concat_inputs(raw_inputs(data.source_raw),
                             residual_inputs(g_blind, data, size=tuple(weak_shape[1:]), device=device))

    specs = {
        "weak": (copy.deepcopy(upper_weak), raw_inputs(blind_train.source_raw), raw_inputs(blind_test.source_raw)),
        "weak_plus_blind_spots": (BlindSpotClassifier(copy.deepcopy(upper_weak), weak_shape[0], residual_channels),
                                  with_blind_spots(blind_train), with_blind_spots(blind_test)),
        "weak_without_unreliable": (copy.deepcopy(upper_weak),
                                    component_inputs(g_unreliable, unreliable_train, None, device),
                                    component_inputs(g_unreliable, unreliable_test, None, device)),
        "strong": (copy.deepcopy(upper_strong), raw_inputs(blind_train.target_raw), raw_inputs(blind_test.target_raw)),
    }
    return _rows(specs, blind_train.labels, blind_test.labels, recipe, seed, device, progress)
