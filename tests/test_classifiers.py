"""Classifiers on frozen features (refinement and diagnosis experiments): only the classifier learns."""
import copy

import numpy as np
import torch

from helpers import synthetic_images
from kc.config import ClassifierSpec
from kc.consistency import ConsistencyNet, fit
from kc.features import extract, FeatureStore
from kc.models import build, split
from kc.classifiers import (BlindSpotClassifier, RestrictLogits, Row, component_inputs, concat_inputs, raw_inputs,
                            residual_inputs, run_rows)

RECIPE = ClassifierSpec(epochs=1, batch_size=16, lr=0.05)


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


def _views(stores, src, tgt, s_layer, t_layer, split_name):
    """(source, target normalised; source, target raw; labels) of two stores on one split."""
    s, t = stores[src], stores[tgt]
    return (s.array(s_layer, split_name), t.array(t_layer, split_name), s.array(s_layer, split_name, normalise=False),
            t.array(t_layer, split_name, normalise=False), s.labels(split_name))


def _snapshot(*modules):
    return [copy.deepcopy(m.state_dict()) for m in modules]


def _same(before, modules):
    return all(torch.equal(v, m.state_dict()[k]) for s, m in zip(before, modules) for k, v in s.items())


def test_rows_train_only_the_classifier_and_score_every_test_image(tmp_path):
    nets, stores = _setup(tmp_path)
    tr = _views(stores, "a", "b", "conv4_3", "conv4_3", "train")
    te = _views(stores, "a", "b", "conv4_3", "conv4_3", "test")
    g = ConsistencyNet(32, 32, K=2)
    fit(g, tr[0], tr[1], epochs=1, batch_size=16, progress=False)
    upper_a, upper_b = split(nets["a"][0], "conv4_3")[1], split(nets["b"][0], "conv4_3")[1]
    frozen = [g, nets["a"][0], nets["b"][0]]
    before = _snapshot(*frozen)
    rows = {"a": lambda: Row(copy.deepcopy(upper_a), raw_inputs(tr[2]), raw_inputs(te[2])),
            "x0+x1+x2": lambda: Row(copy.deepcopy(upper_b), component_inputs(g, tr[0], tr[1]), component_inputs(g, te[0], te[1])),
            "subset": lambda: Row(RestrictLogits(copy.deepcopy(upper_b), [1, 3]), raw_inputs(tr[3]), raw_inputs(te[3]))}
    sub = (tr[4] % 2).astype(np.int64)
    correct = run_rows(rows, sub, (te[4] % 2).astype(np.int64), RECIPE, seeds=(0, 1))
    assert set(correct) == set(rows)
    assert all(c.shape == (2, 32) and c.dtype == bool for c in correct.values())     # (seeds, test images)
    assert _same(before, frozen)
    again = run_rows({"a": rows["a"]}, sub, (te[4] % 2).astype(np.int64), RECIPE, seeds=(0, 1))
    np.testing.assert_array_equal(again["a"], correct["a"])                          # seeded: the same answers


def test_components_are_mapped_back_to_the_target_scale(tmp_path):
    """A g that reproduces its input exactly feeds the upper layers the target's raw feature (not the
    normalised one): the classifier reads what the net's own upper layers read."""
    _, stores = _setup(tmp_path)
    source, target, _, target_raw, _ = _views(stores, "b", "b", "conv4_3", "conv4_3", "test")
    g = ConsistencyNet(32, 32, K=0, kernel_size=1)
    with torch.no_grad():
        g.weights[0].weight.copy_(torch.eye(32).view(32, 32, 1, 1))
    idx = np.arange(8)
    torch.testing.assert_close(component_inputs(g, source, target)(idx), target_raw.raw(idx), rtol=1e-3, atol=1e-3)
    delta = residual_inputs(g, source, target)(idx)
    assert float(delta.abs().max()) < 1e-4                                         # nothing left unexplained
    both = concat_inputs(raw_inputs(target_raw), residual_inputs(g, source, target))(idx)
    assert both.shape == (8, 64, 7, 7)


def test_heads_start_as_the_upper_layers():
    model = build("alexnet_s", 5).eval()
    upper = split(model, "conv5")[1]
    x = torch.randn(3, 32, 7, 7)
    head = BlindSpotClassifier(copy.deepcopy(upper), 32, 16).eval()
    with torch.no_grad():
        torch.testing.assert_close(head(torch.cat([x, torch.randn(3, 16, 7, 7)], 1)), upper(x))
        torch.testing.assert_close(RestrictLogits(upper, [4, 1])(x), upper(x)[:, [4, 1]])
