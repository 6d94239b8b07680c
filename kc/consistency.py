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
* p^(k) (``gate="linear"``, the paper): a free scalar, initialised at 0.5.
* Eq. 2 with the squared error averaged over elements: Loss = MSE(g_θ(x), x*) + λ Σ_k (p^(k))^2.
* Variance (Section 4.2): Var(x) = mean over images and elements of (x - mean(x))^2, one scalar mean.

The authors' released code (github.com/nexuslrf/knowledge_consistency, ``LinearTester`` as built by
``Training_TransNet.py``) is matched exactly by ``ConsistencyNet(C, C, K, norm="instance",
gate="sigmoid", input_scale="instance")`` fitted with ``fit(..., lam=0.5, lr=1e-4, batch_size=64,
weight_decay=1e-4, schedule="logspace", lr_end=1e-6)`` (their defaults; Adam):

* ``norm="instance"``: h^(k) is divided by s, per image and channel: the unbiased standard deviation
  of its spatial positions plus eps, eps added to the standard deviation (not under the square
  root), the mean not subtracted, s detached from the gradient. For 1x1 maps and (N, C) vectors s = 1.
* ``gate="sigmoid"``: p = sigmoid(q), q initialised at 0, so p starts at 0.5 too.
* ``input_scale="instance"``: g first divides its input x by x's own s (same formula); the
  decomposition's x is that scaled input.
* ``init="kaiming_fan_out"`` is what their ``_initialize_weights`` intends (Kaiming-normal, fan_out,
  ReLU gain). As released it runs before the convolutions are created, so their convolutions keep
  PyTorch's default initialisation, which is ``init="default"`` here.
* ``schedule="logspace"``: the learning rate of epoch e (0-based) of E is lr * (lr_end/lr)^(e/(E-1)),
  set once per epoch (their ``torch.logspace(log10(lr), log10(lr) - 2, epochs)``).
"""
from __future__ import annotations

import itertools
import math
import numbers
import time
from collections.abc import Iterator as _IteratorABC
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kc.util import Adam, array_name, autocast, is_array, memory_budget, progress_bar, show_progress, take_rows, \
    to_tensor

NORMS = ("dataset", "instance")
GATES = ("linear", "sigmoid")
INPUT_SCALES = ("none", "instance")
INITS = ("default", "kaiming_fan_out")
SCHEDULES = ("constant", "logspace")
OPTIMIZERS = ("adam", "adamw", "sgd")


class FitDiverged(RuntimeError):
    """The fit's loss or one of g's parameters became NaN or infinite."""


def _stat_dtype(t: torch.Tensor) -> torch.dtype:
    """Statistics in float32 at least (float64 stays float64)."""
    return torch.promote_types(t.dtype, torch.float32)


def instance_divisor(h: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """The authors' divisor s of a map h (N, C, H, W), per image and channel, shape (N, C, 1, 1):
    the unbiased standard deviation over the H*W positions plus ``eps`` (added to the standard
    deviation), detached; all ones for 1x1 maps. The mean is not subtracted from h by the scaling."""
    if h.dim() != 4:
        raise ValueError(f"instance_divisor needs an (N, C, H, W) map, got shape {tuple(h.shape)}")
    h = h.detach().to(_stat_dtype(h))
    n = h.shape[2] * h.shape[3]
    if n == 1:
        return torch.ones(h.shape[0], h.shape[1], 1, 1, dtype=h.dtype, device=h.device)
    d = (h - h.sum((2, 3), keepdim=True) / n).flatten(2)
    return (torch.sqrt(torch.linalg.vecdot(d, d) / (n - 1)) + eps)[..., None, None]


def _channel_moments(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(d = h - its per-channel mean over images and positions, the per-channel biased variance,
    n = images * positions): two passes, contiguous reductions, no temporary beyond d."""
    n = h.numel() // h.shape[1]
    d = h - (h.sum((2, 3)).sum(0) / n).view(1, -1, 1, 1)
    flat = d.flatten(2)
    return d, torch.linalg.vecdot(flat, flat).sum(0) / n, n


class _ChannelVar(torch.autograd.Function):
    """Per-channel (biased) variance of h over images and positions, differentiable.

    The same numbers as ``h.var(dim=(0, 2, 3), unbiased=False)`` (two passes: mean, then mean squared
    deviation) but with contiguous reductions and a one-op backward, d var / d h = 2 (h - mean) / n:
    torch's generic var over dims (0, 2, 3) is many times slower on the CPU.
    """

    @staticmethod
    def forward(ctx, h):
        d, var, n = _channel_moments(h)
        ctx.save_for_backward(d)
        ctx.n = n
        return var

    @staticmethod
    def backward(ctx, grad):
        d, = ctx.saved_tensors
        return d * (grad * (2.0 / ctx.n)).view(1, -1, 1, 1)


def channel_var(h: torch.Tensor) -> torch.Tensor:
    """Σ's diagonal from a batch: the variance of each channel of h (N, C, H, W) over images and
    positions (biased), shape (C,); differentiable."""
    return _ChannelVar.apply(h)


_FUSED_TRAINING = True   # training steps through _GatedBranch (False: plain ops, for tests and benchmarks)


class _GatedBranch(torch.autograd.Function):
    """u = x + p ReLU(h / s) (the argument of W^(k) in Eq. 1) as one autograd node, for training.

    ``inv`` = 1/s given (broadcastable, no gradient: eval-mode Σ or the instance divisor, None for
    s = 1), or None with ``batch_stats``: s = sqrt(var_batch(h) + eps) per channel, differentiable
    as in batch norm, and ``running`` (Σ's running row) updated with ``momentum``. The same values as
    the plain ops in ``ConsistencyNet._run`` but far fewer kernel launches and temporaries per step:
    ReLU(h / s) p = ReLU(h) (p / s) since s > 0, and the backward is written out:
    dL/dh = A dL/du (p/s) [- (p/s^3 / n) Σ_pos(dL/du ReLU(h)) (h - mean) for batch statistics].
    """

    @staticmethod
    def forward(ctx, x, h, p, inv, batch_stats, running, momentum, eps):
        hf = h if h.dtype in (torch.float32, torch.float64) else h.float()
        d = None
        if batch_stats:
            d, var, n = _channel_moments(hf)
            if running is not None:
                running.lerp_(var.to(running.dtype), momentum)
            inv = torch.rsqrt(var + eps).view(1, -1, 1, 1)
            ctx.n = n
        a = F.relu(hf)
        c = p if inv is None else p * inv
        ctx.save_for_backward(a, c, p, inv, d)
        return torch.addcmul(x, a, c)

    @staticmethod
    def backward(ctx, g):
        a, c, p, inv, d = ctx.saved_tensors
        gm = torch.ops.aten.threshold_backward(g, a, 0)      # A dL/du
        gh = gp = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            gc = torch.linalg.vecdot(gm.flatten(2), a.flatten(2))[..., None, None]   # (N, C, 1, 1)
            if inv is None:
                gc = gc.sum()
            elif inv.shape[0] == 1:                           # per channel
                gc = gc.sum(0, keepdim=True)
            gp = (gc if inv is None else gc * inv).sum().view_as(p).to(p.dtype)
            if ctx.needs_input_grad[1]:
                gh = gm * c
                if d is not None:                             # through s: d var/dh = 2 (h - mean)/n
                    gh.addcmul_(d, gc * p * inv.pow(3), value=-1.0 / ctx.n)
        return (g if ctx.needs_input_grad[0] else None), gh, gp, None, None, None, None, None


class ConsistencyNet(nn.Module):
    """g_θ of Eq. (1): K+1 nested linear branches joined through K gated ReLUs.

    ``ConsistencyNet(64, 32, K=2)(torch.randn(8, 64, 7, 7)).shape == (8, 32, 7, 7)``.
    Options (see the module docstring): ``norm`` "dataset" | "instance", ``gate`` "linear" | "sigmoid",
    ``input_scale`` "none" | "instance", ``init`` "default" | "kaiming_fan_out".
    """

    def __init__(self, in_channels: int, out_channels: int, K: int = 2, kernel_size: int = 3,
                 norm: str = "dataset", gate: str = "linear", eps: float = 1e-5, momentum: float = 0.1,
                 input_scale: str = "none", init: str = "default"):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("kernel_size", kernel_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(K, bool) or not isinstance(K, int) or K < 0:
            raise ValueError(f"K must be an integer >= 0 (the number of non-linear orders), got {K!r}")
        for name, value, allowed in (("norm", norm, NORMS), ("gate", gate, GATES),
                                     ("input_scale", input_scale, INPUT_SCALES), ("init", init, INITS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        for name, value in (("eps", eps), ("momentum", momentum)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        self.in_channels, self.out_channels, self.K = in_channels, out_channels, K
        self.kernel_size, self.norm, self.gate, self.eps, self.momentum = kernel_size, norm, gate, eps, momentum
        self.input_scale, self.init = input_scale, init
        # W^(0) maps in -> out; W^(1..K) map in -> in.
        self.weights = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels if k == 0 else in_channels, kernel_size,
                      padding="same", bias=False)
            for k in range(K + 1))
        if init == "kaiming_fan_out":
            for conv in self.weights:
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        # q[k-1] parameterises p^(k): p = q (linear) or sigmoid(q).
        start = 0.5 if gate == "linear" else 0.0
        self.q = nn.Parameter(torch.full((K,), start))
        # Running Σ of h^(1..K), one row per order, as in batch norm.
        self.register_buffer("running_var", torch.ones(K, in_channels))
        self._calibration: list | None = None

    @property
    def config(self) -> dict:
        """Constructor arguments, enough to rebuild the net: ``ConsistencyNet(**net.config)``."""
        return dict(in_channels=self.in_channels, out_channels=self.out_channels, K=self.K,
                    kernel_size=self.kernel_size, norm=self.norm, gate=self.gate, eps=self.eps,
                    momentum=self.momentum, input_scale=self.input_scale, init=self.init)

    @property
    def gates(self) -> torch.Tensor:
        """The effective p^(1) ... p^(K), shape (K,)."""
        return torch.sigmoid(self.q) if self.gate == "sigmoid" else self.q

    def extra_repr(self) -> str:
        return (f"K={self.K}, norm={self.norm!r}, gate={self.gate!r}, input_scale={self.input_scale!r}, "
                f"init={self.init!r}")

    # -- Eq. (1) ---------------------------------------------------------------------------------
    def _inverse_scale(self, h: torch.Tensor, order: int) -> torch.Tensor | None:
        """Σ_(order)^(-1/2) for h^(order) (1/s for norm="instance"), broadcastable against h, in
        float32 or wider; None where the scaling is the identity (instance norm of 1x1 maps)."""
        if self.norm == "instance":
            if h.shape[2] * h.shape[3] == 1:
                return None
            return 1.0 / instance_divisor(h, self.eps)
        if self.training or self._calibration is not None:
            var = channel_var(h.to(_stat_dtype(h)))
            with torch.no_grad():
                if self._calibration is not None:   # average over the calibration pass
                    self._calibration[order - 1].append(var.detach())
                else:                                # as batch norm's running estimate
                    self.running_var[order - 1].lerp_(var.detach().to(self.running_var.dtype), self.momentum)
        else:
            var = self.running_var[order - 1]
        return torch.rsqrt(var + self.eps).view(1, -1, 1, 1)

    def scale_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input as g uses it: x itself, or with ``input_scale="instance"`` x / s(x)."""
        if self.input_scale == "instance" and x.shape[2] * x.shape[3] > 1:
            return (x / instance_divisor(x, self.eps)).to(x.dtype)
        return x

    def _run(self, x: torch.Tensor, record: bool = False):
        """Eq. (1) on maps. Returns (h^(0), h^(K), per order k the gating p^(k) A^(k) Σ_(k)^(-1/2) when
        ``record``, the scaled input)."""
        x = self.scale_input(x)
        gates = self.gates
        h = first = self.weights[self.K](x)
        fused = _FUSED_TRAINING and not record and torch.is_grad_enabled() and self._calibration is None
        gated = []
        for k in range(self.K - 1, -1, -1):       # h^(k) from h^(k+1)
            if fused:                             # training: one autograd node per order
                batch = self.norm == "dataset" and self.training
                inv = None if batch else self._inverse_scale(h, k + 1)
                u = _GatedBranch.apply(x, h, gates[k], inv, batch, self.running_var[k] if batch else None,
                                       self.momentum, self.eps)
            else:
                # p ReLU(h / s) = ReLU(h) * (p / s) since s > 0; A = diag(h > 0).
                inv = self._inverse_scale(h, k + 1)
                c = gates[k] if inv is None else gates[k] * inv
                if record:  # ReLU(v) = A v with A recorded: linear from here on
                    gated.append((h > 0).to(c.dtype) * c)
                u = torch.addcmul(x, F.relu(h), c)
            h = self.weights[k](u)
        return h, first, gated[::-1], x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps, vector = _as_maps(x, self.in_channels, "x")
        out = self._run(maps)[0]
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
        _, stack, gated, maps = self._run(maps, record=True)  # stack: order K after W^(K)
        n = maps.shape[0]
        for k in range(self.K - 1, -1, -1):
            stack = stack.view(-1, n, *stack.shape[1:]) * gated[k]
            stack = torch.cat([maps.unsqueeze(0).to(stack.dtype), stack], 0)  # x enters as the order-k term
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
def _describe(name: str, array: Any) -> str:
    path = array_name(array)
    return f"{name} ({path})" if path else name


def _check_finite(t: torch.Tensor, name: str, array: Any = None, rows: np.ndarray | None = None) -> None:
    """ValueError naming the array (and the first bad row) when t holds NaN or infinities."""
    if t.numel() == 0 or not t.is_floating_point():
        return
    low, high = torch.aminmax(t)          # NaN propagates; 3-4x faster than isfinite().all() on the CPU
    if math.isfinite(float(low)) and math.isfinite(float(high)):
        return
    finite = torch.isfinite(t)
    where = ""
    if t.dim() > 0 and t.shape[0] > 0:
        bad = int((~finite.flatten(1).all(1)).nonzero()[0, 0]) if t.dim() > 1 else int((~finite).nonzero()[0, 0])
        where = f" (row {int(rows[bad]) if rows is not None else bad})"
    raise ValueError(f"{_describe(name, array)} contains NaN or infinite values{where}")


class _Resident:
    """An array held in memory on the fit's device; ``take(idx)`` gives exactly ``take_rows(array, idx)``
    (the same float32 values, on the device).

    ``data`` holds the array's rows (see ``_hold_options``): as stored (float16 stays float16), or
    the array's own float32 values; ``transform`` (for the stored rows of kc.features.FeatureArray-like
    arrays: normalisation and resizing) runs per batch on the device.
    """

    def __init__(self, data: torch.Tensor, transform=None):
        self.data, self.transform = data, transform

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.data[idx].float()
        return x if self.transform is None else self.transform(x)


def _feature_transform(array: Any, device: torch.device):
    """For an array with ``raw``, ``mean``, ``std`` (and ``size``), as kc.features.FeatureArray: the
    per-batch function raw -> array[idx], on ``device``. Checked against the array before use."""
    mean, std = (torch.as_tensor(getattr(array, name), dtype=torch.float32).to(device) for name in ("mean", "std"))
    size = getattr(array, "size", None)

    def transform(x: torch.Tensor) -> torch.Tensor:
        view = (1, -1) + (1,) * (x.dim() - 2)
        x = (x - mean.view(view)) / std.view(view)
        if size is not None and tuple(x.shape[2:]) != tuple(size):
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
        return x
    return transform


def _chunks(n: int, rows_per_chunk: int) -> Iterator[np.ndarray]:
    for start in range(0, n, rows_per_chunk):
        yield np.arange(start, min(n, start + rows_per_chunk))


def _is_feature_array(array: Any) -> bool:
    """kc.features.FeatureArray or alike: stored rows through ``raw(idx)``, then ``mean``/``std``/``size``."""
    return all(hasattr(array, a) for a in ("raw", "mean", "std"))


def _hold_options(array: Any, device: torch.device) -> list[tuple[str, int]]:
    """Ways to hold ``array`` on ``device``, best first, each with the memory it takes:

    * "stored": tensors, numpy arrays and memmaps as they are (float16 stays float16); 0 bytes for
      an in-memory array already on the device (nothing to load);
    * "values": the float32 rows ``array[idx]`` gives (normalised, resized), kept as float16 where
      that is exact: no work per batch but twice the memory of a float16 store;
    * "raw": a FeatureArray-like array's stored rows, with its normalisation and resizing run per
      batch on the device (checked bit for bit against the array before use).

    On the CPU "values" comes first (normalising a batch there costs as much as streaming it from
    the page cache); elsewhere "raw" (memory is the scarce thing, a batch's arithmetic is free)."""
    n = len(array)
    if torch.is_tensor(array):
        return [("stored", 0 if array.device == device else array.numel() * array.element_size())]
    if isinstance(array, np.ndarray):
        return [("stored", 0 if not isinstance(array, np.memmap) and device.type == "cpu" else int(array.nbytes))]
    values = ("values", n * int(np.prod(tuple(array.shape)[1:])) * 4)
    if not _is_feature_array(array):
        return [values]
    row = to_tensor(array.raw(np.arange(1)))  # stored rows: float16 where the first row is exactly float16
    raw = ("raw", n * row.numel() * (2 if bool((row.half().float() == row).all()) else 4))
    return [values, raw] if device.type == "cpu" else [raw, values]


def _choose_holds(options: dict[str, list[tuple[str, int]]], budget: int | None) -> dict[str, str] | None:
    """One way per array within ``budget`` bytes (None: no limit), preferring each array's first
    option and giving up the most memory-hungry choices first; None when nothing fits."""
    choice = {name: 0 for name in options}

    def total():
        return sum(options[name][i][1] for name, i in choice.items())

    while budget is not None and total() > budget:
        cheaper = [(options[name][i][1] - min(b for _, b in options[name][i:]), name) for name, i in choice.items()
                   if i + 1 < len(options[name])]
        if not cheaper or max(cheaper)[0] <= 0:
            return None
        choice[max(cheaper)[1]] += 1
    return {name: options[name][i][0] for name, i in choice.items()}


class _Filler:
    """Rows written chunk by chunk into one preallocated tensor on the device, checked finite on the
    way. ``dtype`` None: float16 while every row so far is exactly float16, else float32 (the rows
    so far are widened losslessly)."""

    def __init__(self, n: int, device: torch.device, name: str, array: Any, dtype: torch.dtype | None = None):
        self.n, self.device, self.name, self.array, self.dtype, self.data = n, device, name, array, dtype, None

    def put(self, start: int, part: torch.Tensor) -> None:
        def exact16(t):
            return bool((t.half().float() == t).all())
        if self.data is None:
            dtype = self.dtype or (torch.float16 if exact16(part) else torch.float32)
            self.data = torch.empty((self.n, *part.shape[1:]), dtype=dtype, device=self.device)
        elif self.dtype is None and self.data.dtype == torch.float16 and not exact16(part):
            self.data = self.data.float()
        rows = self.data[start:start + len(part)]
        rows.copy_(part)
        _check_finite(rows, self.name, self.array, np.arange(start, start + len(part)))


def _load_resident(array: Any, device: torch.device, name: str, how: str, rows_per_chunk: int = 256,
                   allowance: int | None = None) -> _Resident | None:
    """Read ``array`` once into memory on ``device`` in the way ``how`` (see ``_hold_options``); None
    when it already is in memory there, or when "raw" cannot be used and holding the values would
    take more than ``allowance`` bytes (None: no limit): then it is streamed."""
    if torch.is_tensor(array) or (isinstance(array, np.ndarray) and not isinstance(array, np.memmap)):
        data = torch.as_tensor(array)
        if data.device == device:
            return None
        data = data.to(device)
        _check_finite_chunked(data, name, array)
        return _Resident(data)
    n = len(array)
    if isinstance(array, np.memmap):  # as stored: float16 stays float16
        data = torch.empty(tuple(array.shape), dtype=torch.from_numpy(np.empty(0, array.dtype)).dtype, device=device)
        for idx in _chunks(n, rows_per_chunk):
            a, b = int(idx[0]), int(idx[-1]) + 1
            if device.type == "cpu":
                data.numpy()[a:b] = array[a:b]
            else:
                data[a:b] = torch.from_numpy(np.array(array[a:b])).to(device)
        _check_finite_chunked(data, name, array)
        return _Resident(data)
    if how == "raw":
        resident = _load_raw(array, device, name, rows_per_chunk)
        if resident is not None:
            return resident
        if allowance is not None and dict(_hold_options(array, device))["values"] > allowance:
            return None
    # "values" (or a feature array whose transform differs on this device): the array's own float32
    # rows, kept as float16 where that is exact.
    filler = _Filler(n, device, name, array)
    for idx in _chunks(n, rows_per_chunk):
        filler.put(int(idx[0]), take_rows(array, idx))
    return _Resident(filler.data)


def _load_raw(array: Any, device: torch.device, name: str, rows_per_chunk: int) -> _Resident | None:
    """A FeatureArray-like array as its stored (raw) values plus its transform, run per batch on the
    device; None when that does not reproduce ``array[idx]`` bit for bit here."""
    n = len(array)
    stored = getattr(array, "_data", None)   # FeatureArray's memmap: a float16 store has float16 raw rows
    known = torch.float16 if isinstance(stored, np.ndarray) and stored.dtype == np.float16 else None
    filler = _Filler(n, device, name, array, known)
    for idx in _chunks(n, rows_per_chunk):
        filler.put(int(idx[0]), to_tensor(array.raw(idx)))
    resident = _Resident(filler.data, _feature_transform(array, device))
    probe = np.unique(np.linspace(0, n - 1, min(n, 64)).astype(np.int64))
    expected = take_rows(array, probe).to(device)
    got = resident.take(torch.from_numpy(probe).to(device))
    if got.shape != expected.shape or not torch.equal(got, expected):
        return None
    return resident


def _check_finite_chunked(data: torch.Tensor, name: str, array: Any, rows_per_chunk: int = 1024) -> None:
    for start in range(0, data.shape[0], rows_per_chunk):
        _check_finite(data[start:start + rows_per_chunk], name, array,
                      np.arange(start, min(data.shape[0], start + rows_per_chunk)))


class _Pairs:
    """A uniform view of (source, target) as minibatches; memory bounded by the batch unless the
    arrays are held in memory (``preload``).

    * arrays (tensors, numpy arrays, np.memmap, objects with ``.shape`` and batch indexing such as
      ``kc.features.FeatureArray``): ``target`` an array of the same length, or None;
    * a ``torch.utils.data.Dataset`` (items ``(x, x*)``, or ``x`` alone when there is no target),
      loaded through a DataLoader with ``batch_size``;
    * any other iterable (a DataLoader, a list of batches) yielding ``(x, x*)`` batches or ``x``
      batches; it batches and shuffles itself. A one-shot iterator (a generator) is accepted only
      where the data is read once (``passes=1``).
    """

    def __init__(self, source: Any, target: Any = None, *, net: ConsistencyNet | None = None, passes: int = 1,
                 passes_why: str = "", device: torch.device | None = None, preload: bool | str = False):
        self.source, self.target = source, target
        self.device = device
        self.arrays = is_array(source)
        self.resident: dict[str, _Resident] = {}
        if self.arrays:
            if target is not None and not is_array(target):
                raise ValueError("target must be an array or tensor like source, or None "
                                 f"(got {type(target).__name__}); pass a paired dataset or loader as source instead")
            self.n = len(source)
            if self.n == 0:
                raise ValueError(f"{_describe('source', source)} is empty (0 samples); fit and decompose need at "
                                 "least one sample")
            if target is not None:
                check_pair_shapes(tuple(source.shape), tuple(target.shape))
            if net is not None:
                _check_channels(tuple(source.shape), net.in_channels, "source")
                if target is not None:
                    _check_channels(tuple(target.shape), net.out_channels, "target")
            self._preload(preload)
            # In-memory inputs are checked up front; streamed ones batch by batch.
            for name, arr in (("source", source), ("target", target)):
                if arr is not None and name not in self.resident and (
                        torch.is_tensor(arr) or (isinstance(arr, np.ndarray) and not isinstance(arr, np.memmap))):
                    _check_finite(to_tensor(arr), name, arr)
            return
        if target is not None:
            raise ValueError("target must be None when source is a paired dataset or loader")
        if preload is True:
            raise ValueError(f"preload=True needs array sources (tensors, numpy arrays, memory-mapped or "
                             f"feature arrays), got {type(source).__name__}; use preload='auto' or False")
        if isinstance(source, _IteratorABC):
            if passes > 1:
                raise ValueError(f"source: a one-shot iterator ({type(source).__name__}) can be read only once "
                                 f"but {passes_why or f'the data is read {passes} times'}; pass a list, a "
                                 "Dataset or a DataLoader")
            first = next(source, _EMPTY)
            if first is _EMPTY:
                raise ValueError("source: the iterator yields no batches (it is empty or was already consumed)")
            self.source = itertools.chain([first], source)
        try:
            self.n = len(source) if hasattr(source, "__len__") else None
        except TypeError:  # e.g. a DataLoader over an IterableDataset
            self.n = None
        if self.n == 0:
            raise ValueError(f"source is empty (a {type(source).__name__} of length 0); fit and decompose need "
                             "at least one batch")

    def _preload(self, preload: bool | str) -> None:
        if preload is False or self.device is None:
            return
        arrays = {k: v for k, v in (("source", self.source), ("target", self.target)) if v is not None}
        options = {name: _hold_options(arr, self.device) for name, arr in arrays.items()}
        budget = memory_budget(self.device) if preload == "auto" else None
        holds = _choose_holds(options, budget)
        if holds is None:  # does not fit: stream
            return
        sizes = {name: dict(options[name])[holds[name]] for name in arrays}
        for name, arr in arrays.items():
            if sizes[name] == 0:
                continue
            allowance = None if budget is None else budget - sum(sizes.values()) + sizes[name]
            resident = _load_resident(arr, self.device, name, holds[name], allowance=allowance)
            if resident is not None:
                self.resident[name] = resident
            elif allowance is not None:       # streamed after all: its share is free again
                budget += sizes[name]

    @property
    def preloaded(self) -> bool:
        return bool(self.resident)

    def _rows(self, name: str, array: Any, idx: np.ndarray, idx_device: torch.Tensor | None) -> torch.Tensor:
        resident = self.resident.get(name)
        if resident is not None:
            return resident.take(idx_device)
        batch = take_rows(array, idx)
        if not (torch.is_tensor(array) or (isinstance(array, np.ndarray) and not isinstance(array, np.memmap))):
            _check_finite(batch, name, array, idx)          # streamed: checked batch by batch
        return batch if self.device is None else batch.to(self.device, non_blocking=True)

    def batches(self, batch_size: int, shuffle: bool = False, generator: np.random.Generator | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """(source, target or None) batches, on the device given at construction (if any)."""
        if self.arrays:
            order = generator.permutation(self.n) if shuffle else np.arange(self.n)
            for start in range(0, self.n, batch_size):
                idx = order[start:start + batch_size]
                if shuffle:
                    idx = np.sort(idx)  # memmap locality; the pair stays aligned
                idx_device = torch.from_numpy(idx).to(self.device) if self.resident else None
                src = self._rows("source", self.source, idx, idx_device)
                tgt = None if self.target is None else self._rows("target", self.target, idx, idx_device)
                yield src, tgt
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
                src, tgt = to_tensor(item[0]), to_tensor(item[1])
                check_pair_shapes(tuple(src.shape), tuple(tgt.shape))
            else:
                src, tgt = to_tensor(item), None
            _check_finite(src, "source")
            if tgt is not None:
                _check_finite(tgt, "target")
            if self.device is not None:
                src = src.to(self.device, non_blocking=True)
                tgt = None if tgt is None else tgt.to(self.device, non_blocking=True)
            yield src, tgt


_EMPTY = object()


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


# ------------------------------------------------------------------------------------------------
# Eq. (2): fitting
# ------------------------------------------------------------------------------------------------
def _finite_number(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or \
            (value <= 0 if positive else value < 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def lr_schedule(lr: float, epochs: int, schedule: str = "constant", lr_end: float = 1e-6) -> list[float]:
    """The learning rate of each epoch: constant, or ``"logspace"``: lr * (lr_end / lr)^(e / (epochs - 1))
    for e = 0 .. epochs-1 (lr itself for a single epoch), as the authors' ``torch.logspace``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == "constant" or epochs == 1:
        return [float(lr)] * epochs
    return [lr * (lr_end / lr) ** (e / (epochs - 1)) for e in range(epochs)]


def _make_optimizer(name: str, params, lr: float, weight_decay: float):
    """``adam``: kc.util.Adam (torch.optim.Adam's update, without torch.optim's import cost);
    ``adamw``/``sgd`` (momentum 0.9): torch.optim. Every parameter, gates included, is decayed."""
    if name == "adam":
        return Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=0.9)


def _set_lr(opt, lr: float) -> None:
    if isinstance(opt, Adam):
        opt.lr = lr
    else:
        for group in opt.param_groups:
            group["lr"] = lr


def _train_step(net: ConsistencyNet, opt, src: torch.Tensor, tgt: torch.Tensor, lam: float,
                amp_context) -> torch.Tensor:
    """One step of Eq. 2 on a batch; returns the detached [loss, mse, penalty] (no host sync)."""
    maps, vector = _as_maps(src, net.in_channels, "source")
    with amp_context:
        out = net._run(maps)[0]
    out = out.flatten(1) if vector else out
    mse = F.mse_loss(out if out.dtype == tgt.dtype else out.to(tgt.dtype), tgt)
    penalty = net.gates.pow(2).sum()
    loss = mse + lam * penalty
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return torch.stack([loss.detach(), mse.detach(), penalty.detach().to(mse.dtype)])


def fit(net: ConsistencyNet, source: Any, target: Any = None, lam: float = 0.1, epochs: int = 20,
        batch_size: int = 64, lr: float = 1e-3, device: str | torch.device = "cpu", seed: int = 0, *,
        optimizer: str = "adam", weight_decay: float = 0.0, schedule: str = "constant", lr_end: float = 1e-6,
        progress: bool | None = None, amp: bool | None = None, calibrate: bool = True,
        preload: bool | str = "auto") -> list[dict]:
    """Train g_θ on Loss = MSE(g_θ(x), x*) + lam * Σ_k (p^(k))^2 (Eq. 2); returns one dict per epoch.

    ``source``/``target``: arrays or tensors (memory-mapped arrays stream batch by batch, or are held
    in memory, see ``preload``), or a paired dataset/loader/list of batches as ``source`` with
    ``target=None``; a one-shot iterator only when the data is read once (``epochs=1`` and no
    calibration pass). Batches are drawn in a seeded order; on CUDA the convolutions run in mixed
    precision (bf16 where supported) unless ``amp=False``.

    ``optimizer``: "adam" (default), "adamw" or "sgd" (momentum 0.9); ``weight_decay`` applies to every
    parameter, gates included. ``schedule``: "constant" or "logspace" (lr decayed log-spaced to
    ``lr_end`` over the epochs, set per epoch; see ``lr_schedule``). The authors' recipe:
    ``lam=0.5, lr=1e-4, weight_decay=1e-4, schedule="logspace", lr_end=1e-6, batch_size=64``.

    ``preload``: "auto" (default) holds array sources in memory on ``device`` when the pair fits the
    memory budget (``kc.util.memory_budget``: half the free GPU memory on CUDA; half of MemAvailable,
    at most 32 GiB, on the CPU), reading each file once; True always, False never. On CUDA float16
    stores stay float16 there and kc.features.FeatureArray's normalisation and resizing run per batch
    on the GPU; on the CPU the normalised float32 values are held when twice the float16 size fits
    (else as on CUDA). The batches (same rows, same order, same values) are the same either way.

    Raises ValueError for bad arguments (naming the argument) and ``FitDiverged`` when the loss or a
    parameter becomes NaN or infinite (checked once per epoch). History rows:
    ``{"epoch", "loss", "mse", "penalty", "p1".."pK", "seconds"}``.
    """
    lam = _finite_number("lam", lam)
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    lr = _finite_number("lr", lr, positive=True)
    lr_end = _finite_number("lr_end", lr_end, positive=True)
    weight_decay = _finite_number("weight_decay", weight_decay)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    rates = lr_schedule(lr, epochs, schedule, lr_end)
    if preload not in (True, False, "auto"):
        raise ValueError(f"preload must be 'auto', True or False, got {preload!r}")
    calibrating = calibrate and net.norm == "dataset" and net.K > 0
    device = torch.device(device)
    passes = epochs + calibrating
    why = f"epochs={epochs}" + (" plus the calibration pass of norm='dataset' (or pass calibrate=False)"
                                if calibrating else "")
    data = _Pairs(source, target, net=net, passes=passes, passes_why=why, device=device, preload=preload)
    net.to(device).train()
    opt = _make_optimizer(optimizer, net.parameters(), lr, weight_decay)
    rng = np.random.default_rng(seed)
    show = show_progress(progress)
    history = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        _set_lr(opt, rates[epoch - 1])
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        count = 0
        bar = progress_bar(data.batches(batch_size, shuffle=True, generator=rng), show,
                           desc=f"fit g epoch {epoch}/{epochs}", total=_num_batches(data.n, batch_size), leave=False)
        amp_context = autocast(device, amp)
        for src, tgt in bar:
            if tgt is None:
                raise ValueError("fit needs a target: pass target=..., or a source that yields (source, target) pairs")
            n = src.shape[0]
            sums.add_(_train_step(net, opt, src, tgt, lam, amp_context), alpha=n)
            count += n
        if count == 0:
            raise ValueError(f"source yielded no batches in epoch {epoch} of {epochs}; a source that can be read "
                             "only once (an iterator) needs epochs=1 and calibrate=False: pass a list, a Dataset "
                             "or a DataLoader")
        loss, mse, penalty = (v / count for v in sums.tolist())
        _check_diverged(net, loss, epoch, rates[epoch - 1])
        row = {"epoch": epoch, "loss": loss, "mse": mse, "penalty": penalty}
        row.update({f"p{k + 1}": float(p) for k, p in enumerate(net.gates.detach().cpu())})
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
    if calibrating:
        calibrate_norm(net, data, batch_size, device, amp)
    net.eval()
    return history


def _check_diverged(net: ConsistencyNet, loss: float, epoch: int, lr: float) -> None:
    bad = None if math.isfinite(loss) else f"the fit's loss became {loss}"
    if bad is None:
        params = list(net.named_parameters())
        finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in params]).tolist()
        names = [name for (name, _), ok in zip(params, finite) if not ok]
        if names:
            bad = f"parameter(s) {', '.join(names)} became NaN or infinite"
    if bad is not None:
        raise FitDiverged(f"{bad} in epoch {epoch}: lower lr (now {lr:g}) or check the scale of source and "
                          "target (the net's weights are left as they are)")


def _num_batches(n: int | None, batch_size: int) -> int | None:
    return None if n is None else -(-n // batch_size)


@torch.no_grad()
def calibrate_norm(net: ConsistencyNet, data: Any, batch_size: int = 256,
                   device: str | torch.device = "cpu", amp: bool | None = None) -> None:
    """Re-estimate the running Σ as the average over one pass of the batch variances, weights fixed.

    Training's running estimate mixes statistics of earlier weights; this makes eval-mode Σ match
    the final net, so that decompositions use the variances the fitted branches were trained with.
    Raises ValueError (and leaves Σ as it was) when the data yields no batches.
    """
    device = torch.device(device)
    data = data if isinstance(data, _Pairs) else _Pairs(data, device=device)
    net.to(device).eval()
    net._calibration = [[] for _ in range(net.K)]
    try:
        for src, _ in data.batches(batch_size):
            maps, _ = _as_maps(src.to(device), net.in_channels, "source")
            with autocast(device, amp):
                net._run(maps)
        if net.K and not net._calibration[0]:
            raise ValueError("source yielded no batches for the calibration pass of norm='dataset'; a source "
                             "that can be read only once (an iterator) needs calibrate=False")
        for k, rows in enumerate(net._calibration):
            net.running_var[k].copy_(torch.stack(rows).mean(0))
    finally:
        net._calibration = None


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
    device = torch.device(device) if device is not None else next(net.parameters()).device
    data = _Pairs(source, target, net=net, device=device)
    net.to(device).eval()
    bar = progress_bar(data.batches(batch_size), show_progress(progress), desc=desc,
                       total=_num_batches(data.n, batch_size), leave=False)
    count = 0
    for src, tgt in bar:
        count += 1
        yield src, tgt, device
    if count == 0:
        raise ValueError("source yielded no batches (an empty or already consumed iterator?)")


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
    """(net in eval mode, the rest of the saved dict). Loads with ``weights_only=True``.

    Raises FileNotFoundError for a missing file and ValueError for a file that is not a readable
    ConsistencyNet file (corrupt, truncated, or something else).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ConsistencyNet file (run the stage that fits it)")

    def unreadable(why: str) -> ValueError:
        return ValueError(f"{path} is not a readable ConsistencyNet file ({why}); delete it and rerun its stage")

    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types; its advice (weights_only=False) is unsafe
        raise unreadable(f"torch.load failed: {type(e).__name__}") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("config"), dict) or "state_dict" not in blob:
        raise unreadable("expected a dict with keys config and state_dict")
    try:
        net = ConsistencyNet(**blob["config"])
        net.load_state_dict(blob["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        raise unreadable(f"its config or weights do not fit a ConsistencyNet: {type(e).__name__}") from None
    net.eval()
    return net, {k: v for k, v in blob.items() if k not in ("config", "state_dict")}
