"""The knowledge-consistency network g_θ, its loss, and the exact decomposition (Section 3).

Given a feature ``x`` of net A and ``x*`` of net B at some layer, ``g_θ`` reconstructs ``x*`` from
``x`` through K+1 nested branches (Eq. 1), is trained with the loss of Eq. 2, and its output splits
exactly into components ``x^(0) ... x^(K)``, the part that passes through k ReLUs (Eq. 3-4), plus the
residual ``x^Δ = x* - g_θ(x)``::

    net = ConsistencyNet(256, 256, K=2)              # conv maps (N, C, H, W); (N, C) vectors work too
    history = fit(net, x_a, x_b, lam=0.1, epochs=20, batch_size=64, lr=1e-3)
    dec = decompose(net, x_a, x_b)
    dec.components.sum(0) - dec.output               # ~0 (float tolerance)
    dec.variances()                                  # {"x0": ..., "x1": ..., "x2": ..., "delta": ..., "target": ...}

Readings of the paper written down here (see also README):

* Eq. 1: h^(K) = W^(K) x;  h^(k) = W^(k) (x + p^(k+1) ReLU(Σ_(k+1)^(-1/2) h^(k+1))),  output h^(0).
  Each W^(k) is a bias-free convolution with "same" padding; W^(k), k >= 1, maps in -> in channels,
  W^(0) maps in -> out. A vector input (N, C) is treated as a 1x1 map, so the convolution reduces to
  its centre tap, i.e. a bias-free linear layer. K = 0 is a purely linear map.
* Σ (``norm="dataset"``, the paper): the per-channel variance of h^(k) over images and positions,
  from batch statistics while training and a running estimate in eval mode (like batch norm, but the
  scaling only divides by the standard deviation; the mean is not subtracted). After training, ``fit``
  re-estimates the running Σ with one pass over the data under the final weights.
  ``norm="instance"`` (the authors' released code): divide by each sample's per-channel spatial
  standard deviation, detached from the gradient; for vector inputs (no positions) by the standard
  deviation over the sample's features.
* p^(k) (``gate="linear"``, the paper): a free scalar, initialised at 0.5. ``gate="sigmoid"`` (the
  authors' code): p = sigmoid(q), q initialised at 0, so p starts at 0.5 too.
* Eq. 2 with the squared error averaged over elements: Loss = MSE(g_θ(x), x*) + λ Σ_k (p^(k))^2.
* Variance (Section 4.2): Var(x) = mean over images and elements of (x - mean(x))^2, one scalar mean.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("dataset", "instance")
GATES = ("linear", "sigmoid")


class FitDiverged(RuntimeError):
    """The fit's loss became NaN or infinite."""


class ConsistencyNet(nn.Module):
    """g_θ of Eq. (1): K+1 nested linear branches joined through K gated ReLUs.

    ``ConsistencyNet(64, 32, K=2)(torch.randn(8, 64, 7, 7)).shape == (8, 32, 7, 7)``.
    """

    def __init__(self, in_channels: int, out_channels: int, K: int = 2, kernel_size: int = 3,
                 norm: str = "dataset", gate: str = "linear", eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("kernel_size", kernel_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(K, bool) or not isinstance(K, int) or K < 0:
            raise ValueError(f"K must be an integer >= 0 (the number of non-linear orders), got {K!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        if gate not in GATES:
            raise ValueError(f"gate must be one of {', '.join(GATES)}, got {gate!r}")
        self.in_channels, self.out_channels, self.K = in_channels, out_channels, K
        self.kernel_size, self.norm, self.gate, self.eps, self.momentum = kernel_size, norm, gate, eps, momentum
        # W^(0) maps in -> out; W^(1..K) map in -> in.
        self.weights = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels if k == 0 else in_channels, kernel_size,
                      padding="same", bias=False)
            for k in range(K + 1))
        # q[k-1] parameterises p^(k): p = q (linear) or sigmoid(q).
        start = 0.5 if gate == "linear" else 0.0
        self.q = nn.Parameter(torch.full((K,), start))
        # Running Σ of h^(1..K), one row per order, as in batch norm.
        self.register_buffer("running_var", torch.ones(K, in_channels))

    @property
    def config(self) -> dict:
        """Constructor arguments, enough to rebuild the net: ``ConsistencyNet(**net.config)``."""
        return dict(in_channels=self.in_channels, out_channels=self.out_channels, K=self.K,
                    kernel_size=self.kernel_size, norm=self.norm, gate=self.gate, eps=self.eps,
                    momentum=self.momentum)

    @property
    def gates(self) -> torch.Tensor:
        """The effective p^(1) ... p^(K), shape (K,)."""
        return torch.sigmoid(self.q) if self.gate == "sigmoid" else self.q

    def extra_repr(self) -> str:
        return f"K={self.K}, norm={self.norm!r}, gate={self.gate!r}"

    # -- Eq. (1) ---------------------------------------------------------------------------------
    def _scale(self, h: torch.Tensor, order: int, calibrating: bool = False) -> torch.Tensor:
        """Σ_(order)^(-1/2) for h^(order), broadcastable against h (computed in float32)."""
        h = h.float()
        if self.norm == "instance":
            dims = (1, 2, 3) if h.shape[-1] * h.shape[-2] == 1 else (2, 3)
            var = h.detach().var(dim=dims, unbiased=False, keepdim=True)
        elif self.training or calibrating:
            var = h.var(dim=(0, 2, 3), unbiased=False)
            with torch.no_grad():
                row = self.running_var[order - 1]
                if calibrating:  # cumulative average over the calibration pass
                    row.add_((var.detach() - row) / self._calibration_steps)
                else:
                    row.mul_(1 - self.momentum).add_(self.momentum * var.detach())
            var = var.view(1, -1, 1, 1)
        else:
            var = self.running_var[order - 1].view(1, -1, 1, 1)
        return torch.rsqrt(var + self.eps)

    def _run(self, x: torch.Tensor, record: bool = False, calibrating: bool = False):
        """Eq. (1). With ``record``, also h^(K) and, per order k, the gating p^(k) A^(k) Σ_(k)^(-1/2)."""
        gates = self.gates
        h = first = self.weights[self.K](x)
        gated = []
        for k in range(self.K - 1, -1, -1):       # h^(k) from h^(k+1)
            scale = self._scale(h, k + 1, calibrating).to(h.dtype)
            v = h * scale
            if record:  # ReLU(v) = A v with A = diag(v > 0): linear once A is recorded
                gated.append((v > 0).to(h.dtype) * scale * gates[k])
            h = self.weights[k](x + gates[k] * F.relu(v))
        return h, first, gated[::-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps, vector = _as_maps(x, self.in_channels, "x")
        out, _, _ = self._run(maps)
        return out.flatten(1) if vector else out

    # -- Eq. (4) ---------------------------------------------------------------------------------
    @torch.no_grad()
    def components(self, x: torch.Tensor) -> torch.Tensor:
        """x^(0) ... x^(K) of Eq. (4) for a batch, shape (K+1, N, out, ...); they sum to ``self(x)``.

        Runs the net once recording each ReLU's on/off state A^(k) and each scaling Σ^(-1/2), then
        unrolls the recursion with those fixed: at level k the partial components of orders k+1..K
        are gated by p^(k+1) A^(k+1) Σ^(-1/2) (linear, given the record), x joins as the order-k term,
        and all pass through W^(k) as one stacked batch. That is the forward pass plus K convolution
        calls; no per-sample loops. Uses the current mode's Σ (``decompose`` puts the net in eval).
        """
        maps, vector = _as_maps(x, self.in_channels, "x")
        _, stack, gated = self._run(maps, record=True)  # stack: order K after W^(K)
        n = maps.shape[0]
        for k in range(self.K - 1, -1, -1):
            stack = stack.view(-1, n, *stack.shape[1:]) * gated[k]
            stack = torch.cat([maps.unsqueeze(0), stack], 0)  # x enters as the order-k term
            stack = self.weights[k](stack.flatten(0, 1))
        out = stack.view(self.K + 1, n, *stack.shape[1:])
        return out.flatten(2) if vector else out


def _as_maps(x: torch.Tensor, channels: int, name: str) -> tuple[torch.Tensor, bool]:
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 2:
        vector = True
        x = x[:, :, None, None]
    elif x.dim() == 4:
        vector = False
    else:
        raise ValueError(f"{name} must have shape (N, C, H, W) or (N, C), got {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"{name} has {x.shape[1]} channels, the net expects {channels}")
    return x, vector


# ------------------------------------------------------------------------------------------------
# Data: in-memory tensors and arrays, memory-mapped arrays, paired datasets, loaders.
# ------------------------------------------------------------------------------------------------
def _is_array(obj: Any) -> bool:
    """Batch-indexable: a tensor, a numpy array (memmap too) or any object with .shape and [index array]."""
    return torch.is_tensor(obj) or isinstance(obj, np.ndarray) or (
        hasattr(obj, "shape") and hasattr(obj, "__getitem__") and hasattr(obj, "__len__"))


def _to_tensor(batch: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    if not torch.is_tensor(batch):
        batch = torch.from_numpy(np.ascontiguousarray(batch))
    return batch if batch.dtype == dtype else batch.to(dtype)


def _take(array: Any, idx: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """array[idx] as a tensor of ``dtype`` (one fancy-index: memmaps read only those rows)."""
    if torch.is_tensor(array):
        return _to_tensor(array[torch.from_numpy(idx).to(array.device)], dtype)
    return _to_tensor(array[idx], dtype)


class _Pairs:
    """A uniform view of (source, target) as minibatches; memory bounded by the batch.

    * arrays (tensors, numpy arrays, np.memmap, objects with ``.shape`` and batch indexing such as
      ``kc.features.FeatureArray``): ``target`` an array of the same length, or None;
    * a ``torch.utils.data.Dataset`` (items ``(x, x*)``, or ``x`` alone when there is no target),
      loaded through a DataLoader with ``batch_size``;
    * any other iterable (a DataLoader) yielding ``(x, x*)`` batches or ``x`` batches; it batches and
      shuffles itself.
    """

    def __init__(self, source: Any, target: Any = None, *, net: ConsistencyNet | None = None):
        self.source, self.target = source, target
        self.arrays = _is_array(source)
        if self.arrays:
            if target is not None and not _is_array(target):
                raise ValueError("target must be an array or tensor like source, or None "
                                 f"(got {type(target).__name__}); pass a paired dataset or loader as source instead")
            self.n = len(source)
            if self.n == 0:
                raise ValueError("source is empty")
            if target is not None:
                check_pair_shapes(tuple(source.shape), tuple(target.shape))
            if net is not None:
                _check_channels(tuple(source.shape), net.in_channels, "source")
                if target is not None:
                    _check_channels(tuple(target.shape), net.out_channels, "target")
            # In-memory inputs are checked up front; streamed ones batch by batch.
            for name, arr in (("source", source), ("target", target)):
                if arr is not None and (torch.is_tensor(arr) or (isinstance(arr, np.ndarray)
                                                                 and not isinstance(arr, np.memmap))):
                    if not bool(torch.isfinite(_to_tensor(arr)).all()):
                        raise ValueError(f"{name} contains NaN or infinite values")
        else:
            if target is not None:
                raise ValueError("target must be None when source is a paired dataset or loader")
            self.n = len(source) if hasattr(source, "__len__") else None

    def batches(self, batch_size: int, shuffle: bool = False, generator: np.random.Generator | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        if self.arrays:
            order = generator.permutation(self.n) if shuffle else np.arange(self.n)
            for start in range(0, self.n, batch_size):
                idx = order[start:start + batch_size]
                if shuffle:
                    idx = np.sort(idx)  # memmap locality; the pair stays aligned
                src = _take(self.source, idx)
                tgt = None if self.target is None else _take(self.target, idx)
                yield self._checked(src, tgt)
            return
        if isinstance(self.source, torch.utils.data.Dataset):
            g = torch.Generator().manual_seed(int(generator.integers(2**31))) if shuffle else None
            loader: Iterable = torch.utils.data.DataLoader(self.source, batch_size=batch_size,
                                                           shuffle=shuffle, generator=g)
        else:
            loader = self.source
        for item in loader:
            if isinstance(item, (tuple, list)):
                if len(item) != 2:
                    raise ValueError(f"a paired source must yield (source, target) pairs, got {len(item)} items")
                src, tgt = _to_tensor(item[0]), _to_tensor(item[1])
                check_pair_shapes(tuple(src.shape), tuple(tgt.shape))
            else:
                src, tgt = _to_tensor(item), None
            yield self._checked(src, tgt)

    @staticmethod
    def _checked(src, tgt):
        if not bool(torch.isfinite(src).all()):
            raise ValueError("source contains NaN or infinite values")
        if tgt is not None and not bool(torch.isfinite(tgt).all()):
            raise ValueError("target contains NaN or infinite values")
        return src, tgt


def check_pair_shapes(source_shape: tuple, target_shape: tuple) -> None:
    """Raise ValueError unless source and target pair up: same N, same rank, same spatial size."""
    if source_shape[0] != target_shape[0]:
        raise ValueError(f"source and target have different numbers of samples "
                         f"({source_shape[0]} vs {target_shape[0]}); they must hold the same images in the same order")
    if len(source_shape) != len(target_shape) or len(source_shape) not in (2, 4):
        raise ValueError(f"source {source_shape} and target {target_shape} must both be (N, C, H, W) maps "
                         "or both (N, C) vectors")
    if source_shape[2:] != target_shape[2:]:
        raise ValueError(f"source and target have different spatial sizes ({source_shape[2:]} vs "
                         f"{target_shape[2:]}); the caller must resize the source map first, e.g. "
                         "torch.nn.functional.interpolate(source, size=target.shape[-2:], mode='bilinear') "
                         "(the kc pipeline does this for you)")


def _check_channels(shape: tuple, channels: int, name: str) -> None:
    if len(shape) < 2 or shape[1] != channels:
        raise ValueError(f"{name} has shape {shape}: expected {channels} channels in dimension 1")


def _progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else bool(progress)


def _tqdm(iterable, enabled: bool, **kw):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, **kw)


def _autocast(device: torch.device, amp: bool | None):
    if device.type == "cuda" and amp is not False:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


# ------------------------------------------------------------------------------------------------
# Eq. (2): fitting
# ------------------------------------------------------------------------------------------------
def fit(net: ConsistencyNet, source: Any, target: Any = None, lam: float = 0.1, epochs: int = 20,
        batch_size: int = 64, lr: float = 1e-3, device: str | torch.device = "cpu", seed: int = 0, *,
        optimizer: str = "adam", weight_decay: float = 0.0, progress: bool | None = None,
        amp: bool | None = None, calibrate: bool = True) -> list[dict]:
    """Train g_θ on Loss = MSE(g_θ(x), x*) + lam * Σ_k (p^(k))^2 (Eq. 2); returns one dict per epoch.

    ``source``/``target``: arrays or tensors (memory-mapped arrays stream batch by batch), or a paired
    dataset/loader as ``source`` with ``target=None``. Batches are drawn in a seeded order; on CUDA the
    convolutions run in mixed precision (bf16 where supported) unless ``amp=False``. Raises
    ``FitDiverged`` when the loss turns NaN or infinite. History rows:
    ``{"epoch", "loss", "mse", "penalty", "p1".."pK", "seconds"}``.
    """
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    if optimizer not in optimizers:
        raise ValueError(f"optimizer must be one of {', '.join(optimizers)}, got {optimizer!r}")
    data = _Pairs(source, target, net=net)
    device = torch.device(device)
    net.to(device).train()
    opt_kw = {"momentum": 0.9} if optimizer == "sgd" else {}
    opt = optimizers[optimizer](net.parameters(), lr=lr, weight_decay=weight_decay, **opt_kw)
    rng = np.random.default_rng(seed)
    show = _progress(progress)
    history = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        sums = torch.zeros(3, dtype=torch.float64)
        count = 0
        bar = _tqdm(data.batches(batch_size, shuffle=True, generator=rng), show,
                    desc=f"fit g epoch {epoch}/{epochs}", total=_num_batches(data.n, batch_size), leave=False)
        for step, (src, tgt) in enumerate(bar):
            if tgt is None:
                raise ValueError("fit needs a target: pass target=..., or a source that yields (source, target) pairs")
            src, tgt = src.to(device, non_blocking=True), tgt.to(device, non_blocking=True)
            with _autocast(device, amp):
                out = net(src)
            mse = F.mse_loss(out.float(), tgt)
            penalty = (net.gates ** 2).sum()
            loss = mse + lam * penalty
            if not torch.isfinite(loss):
                raise FitDiverged(f"the fit's loss became {loss.item()} at epoch {epoch}, step {step}: "
                                  f"lower lr (now {lr}) or check the scale of source and target")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n = src.shape[0]
            sums += torch.tensor([loss.item(), mse.item(), penalty.item()], dtype=torch.float64) * n
            count += n
        row = {"epoch": epoch, "loss": float(sums[0] / count), "mse": float(sums[1] / count),
               "penalty": float(sums[2] / count)}
        row.update({f"p{k + 1}": float(p) for k, p in enumerate(net.gates.detach().cpu())})
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
    if calibrate and net.norm == "dataset" and net.K > 0:
        calibrate_norm(net, data, batch_size, device, amp)
    net.eval()
    return history


def _num_batches(n: int | None, batch_size: int) -> int | None:
    return None if n is None else -(-n // batch_size)


@torch.no_grad()
def calibrate_norm(net: ConsistencyNet, data: Any, batch_size: int = 256,
                   device: str | torch.device = "cpu", amp: bool | None = None) -> None:
    """Re-estimate the running Σ as the average over one pass of the batch variances, weights fixed.

    Training's running estimate mixes statistics of earlier weights; this makes eval-mode Σ match
    the final net, so that decompositions use the variances the fitted branches were trained with.
    """
    data = data if isinstance(data, _Pairs) else _Pairs(data)
    device = torch.device(device)
    net.to(device).eval()
    net.running_var.zero_()
    net._calibration_steps = 0
    for src, _ in data.batches(batch_size):
        net._calibration_steps += 1
        maps, _ = _as_maps(src.to(device), net.in_channels, "source")
        with _autocast(device, amp):
            net._run(maps, calibrating=True)
    del net._calibration_steps


# ------------------------------------------------------------------------------------------------
# Eq. (3)-(4): decomposition and variances
# ------------------------------------------------------------------------------------------------
def variance(x: torch.Tensor) -> float:
    """Var(x) of Section 4.2: mean over images and elements of (x - mean(x))^2, in float64."""
    x = x.double()
    return float(((x - x.mean()) ** 2).mean())


@dataclass
class Decomposition:
    """x* = x^(0) + ... + x^(K) + x^Δ (Eq. 3) for a set of samples."""
    components: torch.Tensor            # (K+1, N, out, ...)
    output: torch.Tensor                # g_θ(source) = components.sum(0)
    target: torch.Tensor | None = None
    residual: torch.Tensor | None = None  # x^Δ = target - output

    @property
    def K(self) -> int:
        return self.components.shape[0] - 1

    def variances(self) -> dict[str, float]:
        """{"x0".."xK", "output", and with a target "delta", "target", "delta_ratio" = Var(x^Δ)/Var(x*)}."""
        out = {f"x{k}": variance(c) for k, c in enumerate(self.components)}
        out["output"] = variance(self.output)
        if self.target is not None:
            out["delta"] = variance(self.residual)
            out["target"] = variance(self.target)
            out["delta_ratio"] = out["delta"] / out["target"] if out["target"] > 0 else float("nan")
        return out


def _eval_batches(net, source, target, batch_size, device, progress, desc):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    data = _Pairs(source, target, net=net)
    device = torch.device(device) if device is not None else next(net.parameters()).device
    net.to(device).eval()
    bar = _tqdm(data.batches(batch_size), _progress(progress), desc=desc,
                total=_num_batches(data.n, batch_size), leave=False)
    for src, tgt in bar:
        yield src.to(device), (None if tgt is None else tgt.to(device)), device


@torch.no_grad()
def decompose(net: ConsistencyNet, source: Any, target: Any = None, batch_size: int = 256,
              device: str | torch.device | None = None, progress: bool | None = None) -> Decomposition:
    """Split g_θ(source) into x^(0) ... x^(K) (Eq. 4) and, with a target, x^Δ; results on the CPU.

    Holds every component of every sample in memory; for dataset-wide numbers on data larger than
    memory use ``variances(net, source, target)``, which streams.
    """
    comps, outs, tgts = [], [], []
    for src, tgt, device in _eval_batches(net, source, target, batch_size, device, progress, "decompose"):
        c = net.components(src)
        comps.append(c.float().cpu())
        outs.append(c.sum(0).float().cpu())
        if tgt is not None:
            tgts.append(tgt.float().cpu())
    components = torch.cat(comps, 1)
    output = torch.cat(outs, 0)
    tgt = torch.cat(tgts, 0) if tgts else None
    return Decomposition(components, output, tgt, None if tgt is None else tgt - output)


class RunningVariance:
    """Streaming Var(x) (Section 4.2) over batches: Chan et al.'s merge of (count, mean, M2) in float64."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().double()
        n = x.numel()
        if n == 0:
            return
        mean = float(x.mean())
        m2 = float(((x - mean) ** 2).sum())
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total

    @property
    def value(self) -> float:
        return self.m2 / self.n if self.n else float("nan")


@torch.no_grad()
def variances(net: ConsistencyNet, source: Any, target: Any = None, batch_size: int = 256,
              device: str | torch.device | None = None, progress: bool | None = None) -> dict[str, float]:
    """The same numbers as ``decompose(...).variances()``, streamed: memory bounded by the batch."""
    acc: dict[str, RunningVariance] = {}
    for src, tgt, _ in _eval_batches(net, source, target, batch_size, device, progress, "variances"):
        c = net.components(src).float()
        parts = {f"x{k}": c[k] for k in range(c.shape[0])}
        parts["output"] = out = c.sum(0)
        if tgt is not None:
            parts["delta"] = tgt.float() - out
            parts["target"] = tgt
        for key, value in parts.items():
            acc.setdefault(key, RunningVariance()).update(value)
    result = {key: a.value for key, a in acc.items()}
    if "target" in result:
        result["delta_ratio"] = result["delta"] / result["target"] if result["target"] > 0 else float("nan")
    return result


# ------------------------------------------------------------------------------------------------
# Saving
# ------------------------------------------------------------------------------------------------
def save(net: ConsistencyNet, path, **extra) -> None:
    """Write ``{"config", "state_dict", **extra}`` atomically; ``load(path)`` rebuilds the net."""
    from kc.io import atomic_torch_save
    atomic_torch_save({"config": net.config, "state_dict": net.state_dict(), **extra}, path)


def load(path, map_location="cpu") -> tuple[ConsistencyNet, dict]:
    """(net in eval mode, the rest of the saved dict). Loads with ``weights_only=True``."""
    blob = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
        raise ValueError(f"{path} is not a saved ConsistencyNet (expected keys config, state_dict)")
    net = ConsistencyNet(**blob["config"])
    net.load_state_dict(blob["state_dict"])
    net.eval()
    return net, {k: v for k, v in blob.items() if k not in ("config", "state_dict")}
