"""g_θ (Eq. 1-2), the exact decomposition (Eq. 3-4), planted ground truths and bad input."""
import fractions
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kc.consistency as consistency
from kc.consistency import (GATES, INPUT_SCALES, NORMS, ConsistencyNet, FitDiverged, RunningVariance, channel_var,
                            decompose, fit, instance_divisor, load, lr_schedule, save, variance, variances)


def _data(n=64, c=6, hw=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (n, c, hw, hw) if hw else (n, c)
    return torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)


@pytest.mark.parametrize("norm,gate,input_scale,K,spatial",
                         list(itertools.product(NORMS, GATES, INPUT_SCALES, range(4), (5, None))))
def test_components_sum_to_output(norm, gate, input_scale, K, spatial):
    torch.manual_seed(K)
    x, y = _data(n=37, hw=spatial)
    net = ConsistencyNet(6, 4 if spatial else 3, K=K, norm=norm, gate=gate, input_scale=input_scale)
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
    net = ConsistencyNet(6, 6, K=2, norm="instance", gate="sigmoid", input_scale="instance", init="kaiming_fan_out")
    fit(net, x, y, epochs=1, batch_size=16, progress=False)
    save(net, tmp_path / "g.pt", pair="a_b")
    again, extra = load(tmp_path / "g.pt")
    assert extra == {"pair": "a_b"}
    assert again.config == net.config and again.config["input_scale"] == "instance"
    assert again.config["init"] == "kaiming_fan_out"
    with torch.no_grad():
        torch.testing.assert_close(again(x), net.eval()(x))


def test_load_file_written_before_the_options_existed(tmp_path):
    net = ConsistencyNet(4, 4, K=1)
    config = {k: v for k, v in net.config.items() if k not in ("input_scale", "init")}
    torch.save({"config": config, "state_dict": net.state_dict()}, tmp_path / "old.pt")
    again, _ = load(tmp_path / "old.pt")
    assert again.input_scale == "none" and again.init == "default"


# -- the authors' reading: hand-computed values -------------------------------------------------------
# A 1x1x2x2 map [[1, 2], [3, 4]]: mean 2.5, unbiased variance ((1.5^2 + 0.5^2) * 2) / 3 = 5/3,
# so s = sqrt(5/3) + 1e-5 = 1.2909944487358056 + 0.00001 (eps added to the standard deviation).
S_1234 = 1.2910044487358056


def test_instance_divisor_by_hand():
    h = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 5.0], [5.0, 5.0]]]], dtype=torch.float64)  # 1x2x2x2
    s = instance_divisor(h, eps=1e-5)
    assert s.shape == (1, 2, 1, 1)
    assert float(s[0, 0]) == pytest.approx(S_1234, rel=1e-15)
    assert float(s[0, 1]) == pytest.approx(1e-5, rel=1e-12)          # constant channel: std 0, s = eps
    ones = instance_divisor(torch.randn(3, 4, 1, 1))                   # 1x1 maps: no scaling at all
    assert torch.equal(ones, torch.ones(3, 4, 1, 1))


def _identity_net(K, **kw):
    """in = out = 1 channel, 1x1 convolutions of weight 1: W^(k) = identity."""
    net = ConsistencyNet(1, 1, K=K, kernel_size=1, **kw).double()
    with torch.no_grad():
        for conv in net.weights:
            conv.weight.fill_(1.0)
    return net


def test_instance_norm_forward_by_hand():
    """K = 1, W = identity, gate sigmoid(0) = 0.5: g(x) = x + 0.5 ReLU(x / s(x)), s as above."""
    net = _identity_net(1, norm="instance", gate="sigmoid")
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)
    expected = torch.tensor([[[[1 + 0.5 / S_1234, 2 + 1.0 / S_1234], [3 + 1.5 / S_1234, 4 + 2.0 / S_1234]]]],
                            dtype=torch.float64)
    for mode in (net.train(), net.eval()):                              # no running statistics: same both ways
        torch.testing.assert_close(mode(x), expected, rtol=1e-14, atol=0)
    x = torch.tensor([[[[-2.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)  # a negative entry: ReLU cuts it
    s = math.sqrt((3.75 ** 2 + 0.25 ** 2 + 1.25 ** 2 + 2.25 ** 2) / 3) + 1e-5   # mean 1.75
    expected = x + 0.5 * torch.relu(x) / s
    torch.testing.assert_close(net(x), expected, rtol=1e-14, atol=0)


def test_instance_norm_leaves_1x1_maps_and_vectors_unscaled():
    net = _identity_net(1, norm="instance", gate="sigmoid")
    x = torch.tensor([[3.0], [-2.0], [0.5]], dtype=torch.float64)      # (N, C) vectors
    expected = x + 0.5 * torch.relu(x)                                 # s = 1
    torch.testing.assert_close(net(x), expected, rtol=1e-15, atol=0)
    torch.testing.assert_close(net(x[:, :, None, None]), expected[:, :, None, None], rtol=1e-15, atol=0)


def test_input_scale_by_hand():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)
    linear = _identity_net(0, input_scale="instance")                  # K = 0: g(x) = W^(0) (x / s(x))
    torch.testing.assert_close(linear(x), x / S_1234, rtol=1e-15, atol=0)
    torch.testing.assert_close(_identity_net(0)(x), x, rtol=0, atol=0)  # input_scale="none"
    net = _identity_net(1, norm="instance", gate="sigmoid", input_scale="instance")
    xs = x / S_1234                                                    # then s(xs) = sqrt(5/3)/S_1234 + 1e-5
    s2 = math.sqrt(5 / 3) / S_1234 + 1e-5
    torch.testing.assert_close(net(x), xs + 0.5 * xs / s2, rtol=1e-14, atol=0)
    comps = net.components(x)                                          # x enters the components scaled
    torch.testing.assert_close(comps[0], xs, rtol=1e-15, atol=0)
    torch.testing.assert_close(comps.sum(0), net(x), rtol=1e-14, atol=0)
    v = torch.randn(5, 1, 1, 1, dtype=torch.float64)                   # 1x1 maps: input left as it is
    torch.testing.assert_close(linear(v), v, rtol=0, atol=0)


def test_dataset_norm_training_statistics_by_hand():
    """norm="dataset" in training: Σ from the batch, per channel over images and positions (biased)."""
    net = _identity_net(1)                                             # gate linear, p = 0.5
    x = torch.tensor([[[[1.0, 3.0]]], [[[5.0, 7.0]]]], dtype=torch.float64)  # mean 4, var (9+1+1+9)/4 = 5
    expected = x + 0.5 * x / math.sqrt(5 + 1e-5)
    torch.testing.assert_close(net.train()(x), expected, rtol=1e-14, atol=0)
    assert float(net.running_var[0, 0]) == pytest.approx(0.9 * 1 + 0.1 * 5)   # batch norm's running update
    torch.testing.assert_close(channel_var(x), torch.tensor([5.0], dtype=torch.float64))
    h = torch.randn(6, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(channel_var(h), h.var(dim=(0, 2, 3), unbiased=False))
    assert torch.autograd.gradcheck(channel_var, (h,))


@pytest.mark.parametrize("norm,spatial,train", [("dataset", 5, True), ("dataset", 5, False), ("instance", 5, True),
                                                 ("instance", 1, True), ("dataset", 1, True)])
def test_fused_training_step_matches_plain_ops(norm, spatial, train, monkeypatch):
    """The training path (one autograd node per order) gives the plain ops' values and gradients."""
    torch.manual_seed(0)
    x = torch.randn(7, 3, spatial, spatial, dtype=torch.float64)
    y = torch.randn(7, 2, spatial, spatial, dtype=torch.float64)
    results = []
    for fused in (True, False):
        monkeypatch.setattr(consistency, "_FUSED_TRAINING", fused)
        torch.manual_seed(1)
        net = ConsistencyNet(3, 2, K=2, norm=norm).double().train(train)
        with torch.no_grad():
            net.q.copy_(torch.tensor([0.7, -0.4]))
            net.running_var.uniform_(0.5, 2.0)
        loss = F.mse_loss(net(x), y) + 0.3 * net.gates.pow(2).sum()
        loss.backward()
        results.append((loss.detach(), [p.grad for p in net.parameters()], net.running_var.clone()))
    (l1, g1, r1), (l2, g2, r2) = results
    torch.testing.assert_close(l1, l2, rtol=1e-13, atol=0)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-14)
    torch.testing.assert_close(r1, r2, rtol=1e-13, atol=0)


def test_gated_branch_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    p = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    for inv in (None, torch.rand(1, 3, 1, 1, dtype=torch.float64) + 0.5, torch.rand(4, 3, 1, 1, dtype=torch.float64) + 0.5):
        assert torch.autograd.gradcheck(lambda x, h, p: consistency._GatedBranch.apply(x, h, p, inv, False, None, 0.1, 1e-5),
                                        (x, h, p))
    assert torch.autograd.gradcheck(lambda x, h, p: consistency._GatedBranch.apply(x, h, p, None, True, None, 0.1, 1e-5),
                                    (x, h, p))


def test_init_option_sets_kaiming_fan_out():
    torch.manual_seed(0)
    net = ConsistencyNet(64, 32, K=2, init="kaiming_fan_out")
    for k, conv in enumerate(net.weights):
        fan_out = (32 if k == 0 else 64) * 9
        assert float(conv.weight.detach().std()) == pytest.approx(math.sqrt(2 / fan_out), rel=0.05), k
    default = ConsistencyNet(64, 32, K=2)                               # PyTorch's default: std 1/sqrt(3 fan_in)
    assert float(default.weights[1].weight.detach().std()) == pytest.approx(1 / math.sqrt(3 * 64 * 9), rel=0.05)


def test_logspace_schedule_values():
    assert lr_schedule(1e-4, 3, "logspace", 1e-6) == pytest.approx([1e-4, 1e-5, 1e-6], rel=1e-12)
    assert lr_schedule(1e-4, 5, "logspace", 1e-6) == pytest.approx([1e-4, 10 ** -4.5, 1e-5, 10 ** -5.5, 1e-6],
                                                                   rel=1e-12)
    assert lr_schedule(1e-4, 1, "logspace", 1e-6) == [1e-4]
    assert lr_schedule(3e-3, 4) == [3e-3] * 4
    with pytest.raises(ValueError, match="schedule"):
        lr_schedule(1e-3, 3, "cosine")


def test_fit_sets_the_scheduled_rate_each_epoch(monkeypatch):
    seen = []
    real = consistency._set_lr
    monkeypatch.setattr(consistency, "_set_lr", lambda opt, lr: (seen.append(lr), real(opt, lr)))
    x, y = _data(n=32)
    fit(ConsistencyNet(6, 6, K=1), x, y, epochs=3, lr=1e-4, schedule="logspace", lr_end=1e-6, progress=False)
    assert seen == pytest.approx([1e-4, 1e-5, 1e-6], rel=1e-12)


def test_weight_decay_reaches_the_gates():
    """Every ReLU off: the loss does not depend on p, so only weight decay moves it (towards 0)."""
    x = torch.rand(32, 3, 4, 4) + 0.1
    y = torch.randn(32, 3, 4, 4)
    gates = {}
    for wd in (0.0, 0.5):
        net = ConsistencyNet(3, 3, K=1, norm="instance")
        with torch.no_grad():
            net.weights[1].weight.fill_(-1.0)
        fit(net, x, y, lam=0.0, epochs=2, batch_size=8, lr=1e-2, weight_decay=wd, progress=False)
        gates[wd] = float(net.q.detach()[0])
    assert gates[0.0] == 0.5
    assert gates[0.5] < 0.49


def test_authors_recipe_runs():
    x, y = _data(n=40)
    net = ConsistencyNet(6, 6, K=2, norm="instance", gate="sigmoid", input_scale="instance")
    history = fit(net, x, y, lam=0.5, epochs=2, batch_size=64, lr=1e-4, weight_decay=1e-4, schedule="logspace",
                  lr_end=1e-6, progress=False)
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)


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
    with pytest.raises(ValueError, match=r"source \(.*x\.npy\) contains NaN or infinite values \(row 50\)"):
        variances(ConsistencyNet(6, 6, K=1), np.load(tmp_path / "x.npy", mmap_mode="r"), y)


def test_diverging_fit_stops_with_clear_error():
    x, y = _data()
    net = ConsistencyNet(6, 6, K=2)
    with pytest.raises(FitDiverged, match="lower lr"):
        fit(net, x * 1e30, y * 1e30, epochs=3, lr=10.0, batch_size=16, progress=False)


# -- never a silently broken result ------------------------------------------------------------------
def test_one_shot_iterator_is_refused_when_read_twice():
    x, y = _data(n=32)
    batches = lambda: ((x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8))  # noqa: E731
    with pytest.raises(ValueError, match=r"source: a one-shot iterator .* epochs=3.*pass a list, a Dataset or a DataLoader"):
        fit(ConsistencyNet(6, 6, K=1), batches(), epochs=3, progress=False)
    with pytest.raises(ValueError, match=r"one-shot iterator .*epochs=1 plus the calibration pass.*calibrate=False"):
        fit(ConsistencyNet(6, 6, K=1), batches(), epochs=1, progress=False)
    history = fit(ConsistencyNet(6, 6, K=1), batches(), epochs=1, calibrate=False, progress=False)
    assert np.isfinite(history[0]["loss"])
    history = fit(ConsistencyNet(6, 6, K=1, norm="instance"), batches(), epochs=1, progress=False)
    assert np.isfinite(history[0]["loss"])
    history = fit(ConsistencyNet(6, 6, K=1), list(batches()), epochs=3, progress=False)   # a list: fine
    assert len(history) == 3 and all(np.isfinite(h["loss"]) for h in history)


@pytest.mark.parametrize("source", [[], iter([]), torch.zeros(0, 6, 5, 5),
                                    torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(0, 6, 5, 5),
                                                                                               torch.zeros(0, 6, 5, 5)))])
def test_empty_source_is_refused_before_training(source):
    net = ConsistencyNet(6, 6, K=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    target = torch.zeros(0, 6, 5, 5) if torch.is_tensor(source) else None
    with pytest.raises(ValueError, match="source"):
        fit(net, source, target, epochs=2, progress=False)
    with pytest.raises(ValueError, match="source"):
        variances(net, source, target)
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_reiterable_source_that_runs_dry_is_reported():
    x, y = _data(n=16)

    class Once:                                    # iterable, not an iterator, but empty the second time
        def __init__(self):
            self.items = [(x, y)]

        def __iter__(self):
            items, self.items = self.items, []
            return iter(items)

    with pytest.raises(ValueError, match="yielded no batches in epoch 2"):
        fit(ConsistencyNet(6, 6, K=1), Once(), epochs=2, progress=False)


@pytest.mark.parametrize("kwargs,word", [(dict(lr=float("inf")), "lr"), (dict(lr=float("nan")), "lr"), (dict(lr=0.0), "lr"),
                                         (dict(lam=float("nan")), "lam"), (dict(lam=float("inf")), "lam"),
                                         (dict(weight_decay=float("inf")), "weight_decay"),
                                         (dict(weight_decay=-1e-4), "weight_decay"), (dict(lr_end=0.0), "lr_end"),
                                         (dict(schedule="cosine"), "schedule"), (dict(optimizer="lbfgs"), "optimizer"),
                                         (dict(preload="yes"), "preload"), (dict(epochs=0), "epochs")])
def test_bad_numbers_are_refused(kwargs, word):
    x, y = _data(n=16)
    with pytest.raises(ValueError, match=rf"^{word} must be"):
        fit(ConsistencyNet(6, 6, K=1), x, y, progress=False, **kwargs)


def test_parameters_turning_infinite_raise_fit_diverged():
    """The loss of the only step is finite; the step itself sends the weights to infinity."""
    x, y = _data(n=16)
    net = ConsistencyNet(6, 6, K=2, gate="sigmoid")
    with pytest.raises(FitDiverged, match=r"parameter\(s\) .*weights.*NaN or infinite in epoch 1: lower lr \(now 1e\+300\)"):
        fit(net, x, y, epochs=1, batch_size=16, lr=1e300, progress=False)


def test_load_refuses_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load(tmp_path / "nothere.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00not a torch file" * 10)
    torch.save(fractions.Fraction(1, 3), tmp_path / "pickled_object.pt")  # torch.load(weights_only=True) refuses it
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other_dict.pt")
    net = ConsistencyNet(4, 4, K=1)
    torch.save({"config": net.config, "state_dict": {"nonsense": torch.zeros(1)}}, tmp_path / "bad_state.pt")
    good = tmp_path / "good.pt"
    save(net, good)
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[:200])
    for name in ("junk.pt", "pickled_object.pt", "other_dict.pt", "bad_state.pt", "truncated.pt"):
        with pytest.raises(ValueError) as info:
            load(tmp_path / name)
        message = str(info.value)
        assert name in message and "is not a readable ConsistencyNet file" in message
        assert "delete it and rerun its stage" in message
        assert "weights_only" not in message and info.value.__cause__ is None          # torch's advice is not passed on
        assert info.value.__context__ is None or info.value.__suppress_context__


def test_nonfinite_values_in_a_feature_array_name_its_file(tmp_path):
    from kc.features import FeatureArray
    x, y = _data(n=20)
    arr = x.numpy().astype(np.float16)
    arr[13, 2, 1, 1] = np.inf
    np.save(tmp_path / "conv.npy", arr)
    source = FeatureArray(tmp_path / "conv.npy", 0.0, 1.0)
    for preload in (False, True):
        with pytest.raises(ValueError, match=r"source \(.*conv\.npy\) contains NaN or infinite values \(row 13\)"):
            fit(ConsistencyNet(6, 6, K=1), source, y, epochs=1, batch_size=8, preload=preload, progress=False)


# -- holding the stores in memory ---------------------------------------------------------------------
def _stores(tmp_path, n=45, resize=True):
    from kc.features import FeatureArray
    g = torch.Generator().manual_seed(0)
    src = (torch.randn(n, 6, 7, 7, generator=g) * 3 + 1).numpy().astype(np.float16)
    tgt = torch.randn(n, 4, *((5, 5) if resize else (7, 7)), generator=g).numpy().astype(np.float16)
    np.save(tmp_path / "src.npy", src)
    np.save(tmp_path / "tgt.npy", tgt)
    source = FeatureArray(tmp_path / "src.npy", mean=np.linspace(0.5, 1.5, 6), std=np.linspace(2, 4, 6),
                          rows=np.arange(n)[::-1].copy(), size=(5, 5) if resize else None)
    return source, np.load(tmp_path / "tgt.npy", mmap_mode="r")


@pytest.mark.parametrize("norm", NORMS)
def test_preloaded_and_streamed_fits_are_identical(tmp_path, norm):
    """Same batches, same order, same values: a normalised, resized, reordered FeatureArray and a memmap."""
    source, target = _stores(tmp_path)
    runs = []
    for preload in (False, True):
        torch.manual_seed(0)
        net = ConsistencyNet(6, 4, K=2, norm=norm)
        history = fit(net, source, target, epochs=3, batch_size=8, seed=3, preload=preload, progress=False)
        runs.append(([{k: v for k, v in h.items() if k != "seconds"} for h in history], net.state_dict()))
    assert runs[0][0] == runs[1][0]
    for key, value in runs[0][1].items():
        assert torch.equal(value, runs[1][1][key]), key


def test_preload_holds_what_fits_and_gives_the_same_batches(tmp_path, monkeypatch):
    """CPU: the normalised float32 values when they fit, else the float16 stored rows plus the
    per-batch transform; a memmap as stored (float16). Every way gives the streamed batches."""
    source, target = _stores(tmp_path, resize=False)
    cpu = torch.device("cpu")
    values = 45 * 6 * 49 * 4            # normalised float32 source
    raw = 45 * 6 * 49 * 2               # its float16 store
    stored = 45 * 4 * 49 * 2            # the float16 target memmap
    streamed = consistency._Pairs(source, target, device=cpu, preload=False)
    assert not streamed.preloaded
    for budget, kind in ((None, "values"), (values + stored, "values"), (raw + stored, "raw"), (raw, None)):
        monkeypatch.setattr(consistency, "memory_budget", lambda device: budget if budget is not None else 1 << 40)
        held = consistency._Pairs(source, target, device=cpu, preload="auto")
        if kind is None:
            assert not held.preloaded
            continue
        data = held.resident["source"].data
        if kind == "values":
            assert data.dtype == torch.float32 and held.resident["source"].transform is None
        else:
            assert data.dtype == torch.float16 and held.resident["source"].transform is not None
        assert held.resident["target"].data.dtype == torch.float16
        a = list(held.batches(8, shuffle=True, generator=np.random.default_rng(1)))
        b = list(streamed.batches(8, shuffle=True, generator=np.random.default_rng(1)))
        assert len(a) == len(b) == 6
        for (s1, t1), (s2, t2) in zip(a, b):
            assert torch.equal(s1, s2) and torch.equal(t1, t2) and s1.dtype == torch.float32


def test_choose_holds():
    options = {"source": [("values", 100), ("raw", 50)], "target": [("stored", 30)]}
    assert consistency._choose_holds(options, None) == {"source": "values", "target": "stored"}
    assert consistency._choose_holds(options, 130) == {"source": "values", "target": "stored"}
    assert consistency._choose_holds(options, 80) == {"source": "raw", "target": "stored"}
    assert consistency._choose_holds(options, 79) is None


def test_preload_auto_streams_what_does_not_fit(tmp_path, monkeypatch):
    source, target = _stores(tmp_path)
    assert consistency._Pairs(source, target, device=torch.device("cpu"), preload="auto").preloaded
    monkeypatch.setattr(consistency, "memory_budget", lambda device: 1000)   # bytes: far less than the pair
    assert not consistency._Pairs(source, target, device=torch.device("cpu"), preload="auto").preloaded
    x, y = _data(n=10)                                                  # in memory already: nothing to load
    assert not consistency._Pairs(x, y, device=torch.device("cpu"), preload=True).preloaded
    with pytest.raises(ValueError, match="preload=True needs array sources"):
        fit(ConsistencyNet(6, 6, K=1), [(x, y)], preload=True, progress=False)


def test_raw_preload_falls_back_when_the_transform_differs(tmp_path, monkeypatch):
    """If the per-batch transform did not reproduce the array's own values, the values themselves are held."""
    source, _ = _stores(tmp_path)
    cpu = torch.device("cpu")
    assert consistency._load_resident(source, cpu, "source", "raw").transform is not None
    monkeypatch.setattr(consistency, "_feature_transform", lambda array, device: (lambda x: x * 1.0001))
    held = consistency._load_resident(source, cpu, "source", "raw")
    assert held.transform is None and held.data.shape == (45, 6, 5, 5)
    idx = np.array([0, 7, 44])
    torch.testing.assert_close(held.take(torch.from_numpy(idx)), source[idx], rtol=0, atol=0)


def test_raw_preload_that_cannot_be_used_streams_rather_than_overrun_the_budget(tmp_path, monkeypatch):
    source, target = _stores(tmp_path, resize=False)
    raw, stored = 45 * 6 * 49 * 2, 45 * 4 * 49 * 2
    monkeypatch.setattr(consistency, "memory_budget", lambda device: raw + stored)
    monkeypatch.setattr(consistency, "_feature_transform", lambda array, device: (lambda x: x * 1.0001))
    held = consistency._Pairs(source, target, device=torch.device("cpu"), preload="auto")
    assert set(held.resident) == {"target"}                # the source's values (2x) would not fit: streamed
    streamed = consistency._Pairs(source, target, device=torch.device("cpu"), preload=False)
    for (s1, t1), (s2, t2) in zip(held.batches(16), streamed.batches(16)):
        assert torch.equal(s1, s2) and torch.equal(t1, t2)
