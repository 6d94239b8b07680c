"""kc.util: progress, autocast, batch-indexable arrays, devices, memory budgets, Adam."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from kc.util import (Adam, array_name, autocast, is_array, memory_budget, progress_bar, resolve_device, show_progress,
                     take_rows, to_tensor)


def test_progress_helpers():
    items = [1, 2, 3]
    assert progress_bar(items, False) is items
    assert list(progress_bar(items, True, disable=True)) == items
    assert show_progress(True) is True and show_progress(False) is False and show_progress(0) is False
    assert show_progress(None) == sys.stderr.isatty()


def test_autocast_and_devices():
    with autocast("cpu", None):
        assert not torch.is_autocast_enabled("cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):     # switches an outer CPU autocast off, as before
        with autocast(torch.device("cpu"), True):
            assert not torch.is_autocast_enabled("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_arrays(tmp_path):
    t = torch.arange(24.0).view(6, 4)
    a = t.numpy().astype(np.float16)
    np.save(tmp_path / "a.npy", a)
    m = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert all(is_array(v) for v in (t, a, m)) and not is_array([1, 2]) and not is_array(iter([]))
    assert to_tensor(t) is t and to_tensor(a).dtype == torch.float32
    idx = np.array([1, 4])
    for source in (t, a, m):
        torch.testing.assert_close(take_rows(source, idx), t[[1, 4]], rtol=0, atol=0)
    assert take_rows(t, idx, torch.float64).dtype == torch.float64
    assert array_name(m) == str(tmp_path / "a.npy") and array_name(t) is None and array_name(a) is None

    class WithPath:
        path = tmp_path / "store" / "x.npy"
    assert array_name(WithPath()) == str(tmp_path / "store" / "x.npy")


def test_memory_budget_on_the_cpu(monkeypatch):
    import kc.util as util
    monkeypatch.setattr(util, "_mem_available", lambda: 10 << 30)
    assert memory_budget("cpu") == 5 << 30
    assert memory_budget("cpu", fraction=0.25) == int(2.5 * (1 << 30))
    assert memory_budget("cpu", cpu_cap=1 << 30) == 1 << 30
    monkeypatch.setattr(util, "_mem_available", lambda: None)
    assert memory_budget("cpu") == 0
    monkeypatch.undo()
    assert 0 < memory_budget("cpu") <= 32 << 30


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_adam_is_torch_adam(fused, weight_decay):
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(5, 3, 3, 3)), torch.nn.Parameter(torch.randn(2)),
            torch.nn.Parameter(torch.zeros(0))]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt = Adam(ours, lr=1e-2, weight_decay=weight_decay)
    opt._fused = fused
    ref = torch.optim.Adam(theirs, lr=1e-2, weight_decay=weight_decay)
    for step in range(25):
        grads = [torch.randn_like(p) for p in ours]
        for p, q, g in zip(ours, theirs, grads):
            p.grad, q.grad = g.clone(), g.clone()
        if step == 7:                                   # a parameter without a gradient this step
            ours[1].grad = theirs[1].grad = None
        opt.lr = ref.param_groups[0]["lr"] = 1e-2 * 0.9 ** step
        opt.step()
        ref.step()
    for p, q in zip(ours, theirs):
        # the plain path is torch's single-tensor Adam op for op; the fused kernel rounds differently
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-6 if fused else 0, atol=1e-6 if fused else 0)
    opt.zero_grad()
    assert all(p.grad is None for p in ours)


def test_fitting_does_not_import_dynamo():
    """torch.optim optimisers import torch._dynamo (seconds per process); fit's default Adam does not."""
    code = ("import sys, torch\n"
            "from kc.consistency import ConsistencyNet, fit, decompose\n"
            "x = torch.randn(16, 3, 4, 4)\n"
            "net = ConsistencyNet(3, 3, K=2)\n"
            "fit(net, x, x, epochs=1, progress=False)\n"
            "decompose(net, x, x)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
