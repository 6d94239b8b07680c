"""0-order baselines: minibatch linear CKA (unbiased HSIC) and held-out linear predictivity."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kc.similarity import linear_cka, linear_predictivity


def _features(n=300, d=20, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_cka_of_itself_is_one():
    x = _features()
    assert linear_cka(x, x, batch_size=64) == pytest.approx(1.0, abs=1e-12)


def test_cka_invariant_to_orthogonal_transform_and_isotropic_scaling():
    x, y = _features(seed=0), _features(seed=1)
    y = y + 0.7 * x                                           # partly related
    q, _ = torch.linalg.qr(torch.randn(20, 20, dtype=torch.float64))
    base = linear_cka(x, y, batch_size=50)
    assert 0.2 < base < 0.95
    assert linear_cka(x @ q, y, batch_size=50) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x, 3.5 * y, batch_size=50) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x, x + 1e-3 * y, batch_size=50) > 0.99   # not a constant


def test_cka_unrelated_is_near_zero_and_maps_flatten():
    x = torch.randn(400, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    y = torch.randn(400, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    assert abs(linear_cka(x, y, batch_size=100)) < 0.05
    assert linear_cka(x.numpy(), x.numpy() * 2.0, batch_size=100) == pytest.approx(1.0, abs=1e-9)


def test_cka_bad_input():
    x = _features()
    with pytest.raises(ValueError, match="numbers of samples"):
        linear_cka(x, x[:-1])
    with pytest.raises(ValueError, match="batch_size"):
        linear_cka(x, x, batch_size=2)


def test_predictivity_planted():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, 5, 5, generator=g)
    y = F.conv2d(x, torch.randn(4, 6, 3, 3, generator=g), padding=1)
    assert linear_predictivity(x, y, kernel_size=3, alpha=1e-6) > 0.999
    assert linear_predictivity(x, y, kernel_size=1) < 0.5                   # a 1x1 map cannot do it
    noise = torch.randn(400, 4, 5, 5, generator=g)
    assert abs(linear_predictivity(x, noise, kernel_size=3)) < 0.05
    xv, yv = x.flatten(1), y.flatten(1)
    assert linear_predictivity(xv[:300], yv[:300], xv[300:], yv[300:], alpha=1e-6) > 0.999


def test_predictivity_bad_input():
    x = torch.randn(20, 3, 4, 4)
    with pytest.raises(ValueError, match="spatial sizes"):
        linear_predictivity(x, torch.randn(20, 3, 5, 5))
    with pytest.raises(ValueError, match="holdout"):
        linear_predictivity(x, x, holdout=1.5)
