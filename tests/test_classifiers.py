"""Classifier heads of the refinement and diagnosis experiments: only the classifier learns."""
import copy

import numpy as np
import torch

from helpers import synthetic_images
from kc.consistency import ConsistencyNet, fit
from kc.features import extract, FeatureStore
from kc.models import build, split
from kc.studies import BlindSpotClassifier, PairFeatures, RestrictLogits, diagnose, refine_components, refine_subset

RECIPE = {"epochs": 1, "batch_size": 16, "lr": 0.05}


def _setup(tmp_path):
    data = synthetic_images(n=96)
    stores = {}
    nets = {}
    for name, arch, layer, seed in (("a", "vgg_s", "conv4_3", 0), ("b", "vgg_s", "conv4_3", 1), ("w", "alexnet_s", "conv5", 2)):
        torch.manual_seed(seed)
        nets[name] = (build(arch, 4).eval(), layer)
        splits = {"train": (data.subset(np.arange(64)), data.labels[:64], np.arange(64)),
                  "test": (data.subset(np.arange(64, 96)), data.labels[64:], np.arange(64, 96))}
        extract(nets[name][0], [layer], splits, tmp_path / name, batch_size=32)
        stores[name] = FeatureStore(tmp_path / name)
    return nets, stores


def _pair(stores, src, tgt, s_layer, t_layer, split_name, rows=None):
    s, t = stores[src], stores[tgt]
    labels = s.labels(split_name)
    rows = np.arange(len(labels)) if rows is None else rows
    return PairFeatures(s.array(s_layer, split_name, rows=rows), t.array(t_layer, split_name, rows=rows),
                        s.array(s_layer, split_name, rows=rows, normalise=False),
                        t.array(t_layer, split_name, rows=rows, normalise=False), labels[rows])


def _snapshot(*modules):
    return [copy.deepcopy(m.state_dict()) for m in modules]


def _same(before, modules):
    return all(torch.equal(v, m.state_dict()[k]) for s, m in zip(before, modules) for k, v in s.items())


def test_components_and_subset_keep_g_and_backbones_frozen(tmp_path):
    nets, stores = _setup(tmp_path)
    train_d, test_d = _pair(stores, "a", "b", "conv4_3", "conv4_3", "train"), _pair(stores, "a", "b", "conv4_3", "conv4_3", "test")
    g = ConsistencyNet(32, 32, K=2)
    fit(g, train_d.source, train_d.target, epochs=1, batch_size=16, progress=False)
    upper_a, upper_b = split(nets["a"][0], "conv4_3")[1], split(nets["b"][0], "conv4_3")[1]
    frozen = [g, nets["a"][0], nets["b"][0]]
    before = _snapshot(*frozen)
    rows = refine_components(g, upper_a, upper_b, train_d, test_d, RECIPE)
    assert set(rows) == {"a", "b", "x0", "x0+x1", "x0+x1+x2"}
    assert all(0 <= r["test_accuracy"] <= 1 for r in rows.values())
    assert _same(before, frozen)
    sub = np.flatnonzero(np.isin(stores["a"].labels("train"), [1, 3]))
    sub_test = np.flatnonzero(np.isin(stores["a"].labels("test"), [1, 3]))
    tr = _pair(stores, "a", "b", "conv4_3", "conv4_3", "train", sub)
    te = _pair(stores, "a", "b", "conv4_3", "conv4_3", "test", sub_test)
    tr.labels, te.labels = (tr.labels == 3).astype(np.int64), (te.labels == 3).astype(np.int64)
    rows = refine_subset(g, upper_a, upper_b, [1, 3], tr, te, RECIPE)
    assert set(rows) == {"a", "b", "g"}
    assert _same(before, frozen)


def test_diagnosis_keeps_everything_but_the_classifier_frozen(tmp_path):
    nets, stores = _setup(tmp_path)
    blind = [_pair(stores, "w", "b", "conv5", "conv4_3", s) for s in ("train", "test")]
    unrel = [_pair(stores, "b", "w", "conv4_3", "conv5", s) for s in ("train", "test")]
    g_blind, g_unrel = ConsistencyNet(32, 32, K=1), ConsistencyNet(32, 32, K=1)
    fit(g_blind, blind[0].source, blind[0].target, epochs=1, progress=False)
    fit(g_unrel, unrel[0].source, unrel[0].target, epochs=1, progress=False)
    frozen = [g_blind, g_unrel, nets["w"][0], nets["b"][0]]
    before = _snapshot(*frozen)
    rows = diagnose(g_blind, g_unrel, split(nets["w"][0], "conv5")[1], split(nets["b"][0], "conv4_3")[1],
                    blind[0], blind[1], unrel[0], unrel[1], RECIPE)
    assert set(rows) == {"weak", "weak_plus_blind_spots", "weak_without_unreliable", "strong"}
    assert _same(before, frozen)


def test_heads_start_as_the_upper_layers():
    model = build("alexnet_s", 5).eval()
    upper = split(model, "conv5")[1]
    x = torch.randn(3, 32, 7, 7)
    head = BlindSpotClassifier(copy.deepcopy(upper), 32, 16).eval()
    with torch.no_grad():
        torch.testing.assert_close(head(torch.cat([x, torch.randn(3, 16, 7, 7)], 1)), upper(x))
        torch.testing.assert_close(RestrictLogits(upper, [4, 1])(x), upper(x)[:, [4, 1]])
