"""g_θ (Eq. 1-2), the exact decomposition (Eq. 3-4), planted ground truths and bad input."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kc.consistency import (GATES, NORMS, ConsistencyNet, FitDiverged, RunningVariance, decompose, fit,
                            load, save, variance, variances)


def _data(n=64, c=6, hw=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (n, c, hw, hw) if hw else (n, c)
    return torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)


@pytest.mark.parametrize("norm,gate,K,spatial", list(itertools.product(NORMS, GATES, range(4), (5, None))))
def test_components_sum_to_output(norm, gate, K, spatial):
    torch.manual_seed(K)
    x, y = _data(n=37, hw=spatial)
    net = ConsistencyNet(6, 4 if spatial else 3, K=K, norm=norm, gate=gate)
    y = y[:, :net.out_channels]
    fit(net, x, y, epochs=2, batch_size=10, progress=False)       # moves gates and Σ off their start
    dec = decompose(net, x, y, batch_size=10)                      # 10 does not divide 37
    assert dec.components.shape == (K + 1, 37, net.out_channels, *((5, 5) if spatial else ()))
    torch.testing.assert_close(dec.components.sum(0), dec.output, rtol=0, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(dec.output, net(x), rtol=0, atol=1e-5)
    torch.testing.assert_close(dec.residual, y - dec.output)
    assert net.gates.shape == (K,)


def test_component_k_passes_through_k_relus():
    """With every ReLU off (A = 0), only x^(0) = W^(0) x survives; the others are exactly zero."""
    net = ConsistencyNet(3, 2, K=2).eval()
    with torch.no_grad():
        for w in net.weights[1:]:
            w.weight.fill_(-1.0)
    x = torch.rand(4, 3, 4, 4) + 0.1                    # positive input -> negative h -> ReLU off
    comps = net.components(x)
    assert torch.equal(comps[1], torch.zeros_like(comps[1])) and torch.equal(comps[2], torch.zeros_like(comps[2]))
    with torch.no_grad():
        torch.testing.assert_close(comps[0], net.weights[0](x))


def test_first_order_component_matches_eq4_by_hand():
    """K = 1: x^(1) = W^(0) p^(1) A^(1) Σ^(-1/2) W^(1) x, computed here from the definitions."""
    torch.manual_seed(0)
    net = ConsistencyNet(3, 2, K=1, norm="dataset").eval()
    with torch.no_grad():
        net.running_var.uniform_(0.5, 2.0)
        net.q.fill_(0.7)
    x = torch.randn(5, 3, 4, 4)
    with torch.no_grad():
        h1 = net.weights[1](x)
        v = h1 / torch.sqrt(net.running_var[0] + net.eps).view(1, -1, 1, 1)
        expected = net.weights[0](0.7 * (v > 0).float() * v)
    torch.testing.assert_close(net.components(x)[1], expected)


def test_linear_target_lives_in_x0():
    torch.manual_seed(0)
    x = torch.randn(512, 8, 6, 6)
    y = F.conv2d(x, torch.randn(8, 8, 3, 3) / 8.5, padding=1)
    y = y / y.std()
    net = ConsistencyNet(8, 8, K=2)
    fit(net, x, y, lam=0.1, epochs=30, batch_size=64, lr=3e-3, progress=False)
    v = variances(net, x, y)
    assert v["delta"] / v["target"] < 0.01
    assert v["x0"] > 0.9 * v["target"]
    assert v["x1"] + v["x2"] < 0.02 * v["x0"]


def test_relu_target_needs_higher_orders():
    torch.manual_seed(0)
    x = torch.randn(512, 8, 6, 6)
    hidden = torch.relu(F.conv2d(x, torch.randn(8, 8, 3, 3) / 8.5, padding=1))
    y = F.conv2d(hidden, torch.randn(8, 8, 1, 1) / 2.8)
    y = (y - y.mean()) / y.std()
    ratios = {}
    for K in (0, 2):
        torch.manual_seed(1)
        net = ConsistencyNet(8, 8, K=K)
        fit(net, x, y, lam=0.1, epochs=30, batch_size=64, lr=3e-3, progress=False)
        ratios[K] = variances(net, x, y)["delta_ratio"]
    assert ratios[2] < 0.7 * ratios[0], ratios


def test_independent_noise_stays_in_residual():
    x, y = _data(n=512, c=8, hw=6)
    net = ConsistencyNet(8, 8, K=2)
    fit(net, x, y, lam=0.1, epochs=20, batch_size=64, lr=3e-3, progress=False)
    v = variances(net, x, y)
    assert v["delta_ratio"] > 0.97
    assert v["output"] < 0.03 * v["target"]


def test_larger_lambda_gives_smaller_gates():
    torch.manual_seed(0)
    x = torch.randn(256, 6, 5, 5)
    y = F.conv2d(torch.relu(F.conv2d(x, torch.randn(6, 6, 3, 3) / 7, padding=1)), torch.randn(6, 6, 1, 1) / 2.4)
    y = (y - y.mean()) / y.std()
    gates = {}
    for lam in (0.0, 10.0):
        torch.manual_seed(1)
        net = ConsistencyNet(6, 6, K=2)
        fit(net, x, y, lam=lam, epochs=15, batch_size=64, lr=3e-3, progress=False)
        gates[lam] = net.gates.detach().abs()
    assert bool((gates[10.0] < gates[0.0]).all()), gates


def test_fit_history_and_determinism():
    x, y = _data()
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        net = ConsistencyNet(6, 6, K=2)
        history = fit(net, x, y, epochs=3, batch_size=16, seed=5, progress=False)
        runs.append((history, net.state_dict()))
    assert [h["epoch"] for h in runs[0][0]] == [1, 2, 3]
    assert set(runs[0][0][0]) >= {"loss", "mse", "penalty", "p1", "p2"}
    assert runs[0][0][-1]["loss"] < runs[0][0][0]["loss"]
    for key, value in runs[0][1].items():
        assert torch.equal(value, runs[1][1][key]), key


def test_streaming_sources_match_in_memory(tmp_path):
    """A memory-mapped array pair, a paired Dataset and a loader all give the same decomposition."""
    x, y = _data(n=50)
    torch.manual_seed(0)
    net = ConsistencyNet(6, 6, K=2)
    fit(net, x, y, epochs=2, batch_size=16, progress=False)
    np.save(tmp_path / "x.npy", x.numpy().astype(np.float16))
    np.save(tmp_path / "y.npy", y.numpy().astype(np.float16))
    xm, ym = np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r")
    ref = variances(net, torch.from_numpy(np.array(xm)).float(), torch.from_numpy(np.array(ym)).float())
    from_memmap = variances(net, xm, ym, batch_size=7)
    pairs = torch.utils.data.TensorDataset(torch.from_numpy(np.array(xm)).float(),
                                           torch.from_numpy(np.array(ym)).float())
    from_dataset = variances(net, pairs, batch_size=9)
    from_loader = decompose(net, torch.utils.data.DataLoader(pairs, batch_size=11)).variances()
    for got in (from_memmap, from_dataset, from_loader):
        for key in ref:
            assert got[key] == pytest.approx(ref[key], rel=1e-6, abs=1e-9), key
    history = fit(ConsistencyNet(6, 6, K=1), xm, ym, epochs=1, batch_size=16, progress=False)
    assert np.isfinite(history[0]["loss"])


def test_variance_definition_and_streaming():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, 4, 4, generator=g) * 3 + 2
    assert variance(x) == pytest.approx(float(((x.double() - x.double().mean()) ** 2).mean()))
    acc = RunningVariance()
    for chunk in x.split(7):
        acc.update(chunk)
    assert acc.value == pytest.approx(variance(x), rel=1e-12)


def test_save_load_roundtrip(tmp_path):
    x, y = _data()
    net = ConsistencyNet(6, 6, K=2, norm="instance", gate="sigmoid")
    fit(net, x, y, epochs=1, batch_size=16, progress=False)
    save(net, tmp_path / "g.pt", pair="a_b")
    again, extra = load(tmp_path / "g.pt")
    assert extra == {"pair": "a_b"}
    with torch.no_grad():
        torch.testing.assert_close(again(x), net.eval()(x))


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,word", [
    (dict(K=-1), "K"), (dict(norm="batch"), "norm"), (dict(gate="tanh"), "gate"),
    (dict(in_channels=0), "in_channels"), (dict(kernel_size=0), "kernel_size")])
def test_bad_constructor_arguments(kwargs, word):
    args = dict(in_channels=4, out_channels=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        ConsistencyNet(**args)


def test_bad_fit_inputs():
    net = ConsistencyNet(6, 6, K=1)
    x, y = _data()
    with pytest.raises(ValueError, match="lam"):
        fit(net, x, y, lam=-0.1)
    with pytest.raises(ValueError, match="numbers of samples"):
        fit(net, x, y[:-1])
    with pytest.raises(ValueError, match="spatial sizes.*resize"):
        fit(net, x, torch.randn(64, 6, 4, 4))
    with pytest.raises(ValueError, match="channels"):
        fit(net, torch.randn(64, 5, 5, 5), y)
    bad = x.clone()
    bad[3, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="source contains NaN"):
        fit(net, bad, y)
    bad = y.clone()
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="target contains NaN"):
        decompose(net, x, bad)


def test_nonfinite_streamed_batch_is_reported(tmp_path):
    x, y = _data()
    arr = x.numpy().copy()
    arr[50, 0, 0, 0] = np.nan
    np.save(tmp_path / "x.npy", arr)
    with pytest.raises(ValueError, match="source contains NaN"):
        variances(ConsistencyNet(6, 6, K=1), np.load(tmp_path / "x.npy", mmap_mode="r"), y)


def test_diverging_fit_stops_with_clear_error():
    x, y = _data()
    net = ConsistencyNet(6, 6, K=2)
    with pytest.raises(FitDiverged, match="lower lr"):
        fit(net, x * 1e30, y * 1e30, epochs=3, lr=10.0, batch_size=16, progress=False)
