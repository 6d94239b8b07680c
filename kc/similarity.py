"""0-order baselines beside knowledge consistency: minibatch linear CKA and linear predictivity.

The paper's related work (Section 2) notes that earlier similarity measures compare representations
through linear transformations, i.e. 0-order consistency. Reports show these numbers beside each
pair's Var(x^(k)) so a reader sees what the higher orders add::

    linear_cka(x_a, x_b)                       # 1.0 for identical features; in [0, 1] up to estimator noise
    linear_predictivity(x_a, x_b)              # held-out R^2 of a ridge map x_a -> x_b

Both accept tensors or numpy arrays (memory-mapped arrays stream), shaped (N, ...), and keep memory
bounded by the batch.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kc.consistency import check_pair_shapes
from kc.util import is_array as _is_array
from kc.util import take_rows as _take


def _hsic_unbiased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """The unbiased HSIC estimator of Song et al. (2012) for two n x n Gram matrices (n > 3)."""
    n = K.shape[0]
    K = K.clone()
    L = L.clone()
    K.fill_diagonal_(0)
    L.fill_diagonal_(0)
    KL = K @ L
    ones_K = K.sum()
    ones_L = L.sum()
    return (KL.trace() + ones_K * ones_L / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * KL.sum()) / (n * (n - 3))


def _check_pair(source: Any, target: Any) -> int:
    if not (_is_array(source) and _is_array(target)):
        raise TypeError("source and target must be tensors or arrays shaped (N, ...)")
    if len(source) != len(target):
        raise ValueError(f"source and target have different numbers of samples ({len(source)} vs {len(target)})")
    return len(source)


def linear_cka(source: Any, target: Any, batch_size: int = 256, seed: int | None = 0) -> float:
    """Minibatch linear CKA (Kornblith et al. 2019; Nguyen et al. 2021) with unbiased HSIC, float64.

    CKA = Σ_b HSIC(K_b, L_b) / sqrt(Σ_b HSIC(K_b, K_b) · Σ_b HSIC(L_b, L_b)) over minibatches b of a
    seeded permutation (``seed=None``: in order), K_b = X_b X_b^T on flattened features. The samples
    are split into near-equal batches so every batch has more than 3 samples (needs N >= 4).
    Invariant to orthogonal transforms and isotropic scaling of either side; CKA(x, x) = 1.
    """
    n = _check_pair(source, target)
    if n < 4:
        raise ValueError(f"linear_cka needs at least 4 samples, got {n}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 4:
        raise ValueError(f"batch_size must be an integer >= 4, got {batch_size!r}")
    order = np.random.default_rng(seed).permutation(n) if seed is not None else np.arange(n)
    sums = torch.zeros(3, dtype=torch.float64)
    for idx in np.array_split(order, -(-n // batch_size)):
        idx = np.sort(idx)
        x = _take(source, idx, torch.float64).flatten(1)
        y = _take(target, idx, torch.float64).flatten(1)
        K, L = x @ x.T, y @ y.T
        sums += torch.stack([_hsic_unbiased(K, L), _hsic_unbiased(K, K), _hsic_unbiased(L, L)])
    denom = torch.sqrt(sums[1] * sums[2])
    return float(sums[0] / denom) if denom > 0 else float("nan")


def _design(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Rows = regression samples: (N, C) vectors as they are; maps per position with a k x k patch."""
    if x.dim() == 2:
        return x
    if kernel_size > 1:
        x = F.pad(x, [kernel_size // 2, (kernel_size - 1) // 2] * 2)
        patches = F.unfold(x, kernel_size)                       # (N, C*k*k, H*W)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _targets(y: torch.Tensor) -> torch.Tensor:
    return y if y.dim() == 2 else y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])


def linear_predictivity(source: Any, target: Any, test_source: Any = None, test_target: Any = None, *,
                        alpha: float = 1e-3, kernel_size: int = 1, holdout: float = 0.5,
                        batch_size: int = 256, seed: int = 0, max_rows: int | None = None) -> float:
    """Held-out R^2 of a ridge regression from source features to target features (0-order fit).

    Maps (N, C, H, W) regress position by position from the k x k neighbourhood of the source
    (``kernel_size``, zero "same" padding) to the target's channels: the closed-form best linear map
    with the receptive field of g_θ's W^(0), so 1 - R^2 is what a purely linear g leaves unexplained.
    Vectors (N, C) regress directly. Fitted on (source, target) and scored on (test_source,
    test_target); without a test pair, a seeded ``holdout`` fraction of the samples is scored.
    Ridge strength: alpha times the mean diagonal of the centred Gram matrix. Normal equations are
    accumulated in float64 batch by batch; R^2 = 1 - SSE / SST over all output elements.
    ``max_rows``: fit on a seeded subset of the training images holding at most this many regression
    rows (positions), e.g. 20,000 for 288 unknowns per output (the score still uses every test image).
    """
    n = _check_pair(source, target)
    check_pair_shapes(tuple(source.shape), tuple(target.shape))
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha!r}")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive integer, got {kernel_size!r}")
    if (test_source is None) != (test_target is None):
        raise ValueError("give both test_source and test_target, or neither")
    if test_source is None:
        if not 0 < holdout < 1:
            raise ValueError(f"holdout must be in (0, 1), got {holdout!r}")
        order = np.random.default_rng(seed).permutation(n)
        cut = n - max(1, int(round(holdout * n)))
        if cut < 1:
            raise ValueError(f"linear_predictivity needs at least 2 samples, got {n}")
        train_idx, test_idx = np.sort(order[:cut]), np.sort(order[cut:])
        train, test = (source, target, train_idx), (source, target, test_idx)
    else:
        _check_pair(test_source, test_target)
        check_pair_shapes(tuple(test_source.shape), tuple(test_target.shape))
        train = (source, target, np.arange(n))
        test = (test_source, test_target, np.arange(len(test_source)))

    if max_rows is not None:
        positions = int(np.prod(source.shape[2:])) if len(source.shape) == 4 else 1
        keep = max(1, int(max_rows) // positions)
        if keep < len(train[2]):
            train = (train[0], train[1], np.sort(np.random.default_rng(seed).choice(train[2], keep, replace=False)))

    def batches(src, tgt, idx):
        for start in range(0, len(idx), batch_size):
            sel = idx[start:start + batch_size]
            yield _design(_take(src, sel, torch.float64), kernel_size), _targets(_take(tgt, sel, torch.float64))

    xtx = xty = sx = sy = None
    count = 0
    for x, y in batches(*train):
        if xtx is None:
            xtx = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
            xty = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64)
            sx, sy = torch.zeros(x.shape[1], dtype=torch.float64), torch.zeros(y.shape[1], dtype=torch.float64)
        xtx += x.T @ x
        xty += x.T @ y
        sx += x.sum(0)
        sy += y.sum(0)
        count += x.shape[0]
    mx, my = sx / count, sy / count
    cxx = xtx - count * torch.outer(mx, mx)
    cxy = xty - count * torch.outer(mx, my)
    ridge = alpha * float(cxx.diagonal().mean()) + 1e-12
    beta = torch.linalg.solve(cxx + ridge * torch.eye(cxx.shape[0], dtype=torch.float64), cxy)
    sse = 0.0
    ty = tyy = None
    m = 0
    for x, y in batches(*test):
        pred = (x - mx) @ beta + my
        sse += float(((y - pred) ** 2).sum())
        ty = y.sum(0) if ty is None else ty + y.sum(0)
        tyy = (y ** 2).sum(0) if tyy is None else tyy + (y ** 2).sum(0)
        m += y.shape[0]
    sst = float((tyy - ty ** 2 / m).sum())
    return 1.0 - sse / sst if sst > 0 else float("nan")
