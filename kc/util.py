"""Plumbing shared by kc's modules: progress bars, mixed precision, batch-indexable arrays, devices,
memory budgets and a small Adam.

Imports torch and numpy only (tqdm when a bar is shown), so that importing it costs nothing beyond
torch itself.
"""
from __future__ import annotations

import math
import os
import sys
from typing import Any, Iterable

import numpy as np
import torch

__all__ = ["show_progress", "progress_bar", "autocast", "is_array", "to_tensor", "take_rows", "resolve_device",
           "array_name", "memory_budget", "Adam"]


# -- progress -------------------------------------------------------------------------------------
def show_progress(progress: bool | None) -> bool:
    """``progress`` as given, or, when None, whether stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else bool(progress)


def progress_bar(iterable: Iterable, enabled: bool, **kw) -> Iterable:
    """``tqdm(iterable, **kw)`` when ``enabled``, else ``iterable`` itself (tqdm is imported only then)."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, **kw)


# -- devices and precision --------------------------------------------------------------------------
def autocast(device: torch.device | str, amp: bool | None = None):
    """Mixed precision on CUDA (bf16 where supported, else fp16) unless ``amp`` is False; elsewhere a
    context that switches autocast off."""
    device = torch.device(device)
    if device.type == "cuda" and amp is not False:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """"auto"/None -> cuda when available, else cpu; anything else as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# -- arrays ---------------------------------------------------------------------------------------
def is_array(obj: Any) -> bool:
    """Batch-indexable: a tensor, a numpy array (memmap too) or any object with .shape and [index array]."""
    return torch.is_tensor(obj) or isinstance(obj, np.ndarray) or (
        hasattr(obj, "shape") and hasattr(obj, "__getitem__") and hasattr(obj, "__len__"))


def to_tensor(batch: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``batch`` (tensor or array-like) as a tensor of ``dtype``; no copy when it already is one."""
    if not torch.is_tensor(batch):
        batch = torch.from_numpy(np.ascontiguousarray(batch))
    return batch if batch.dtype == dtype else batch.to(dtype)


def take_rows(array: Any, idx: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``array[idx]`` as a tensor of ``dtype`` (one fancy index: memmaps read only those rows)."""
    if torch.is_tensor(array):
        return to_tensor(array[torch.from_numpy(np.asarray(idx)).to(array.device)], dtype)
    return to_tensor(array[idx], dtype)


def array_name(array: Any) -> str | None:
    """The file behind an array, when there is one: ``.path`` (kc.features.FeatureArray) or a memmap's
    ``.filename``; else None."""
    for attr in ("path", "filename"):
        value = getattr(array, attr, None)
        if value is not None:
            return str(value)
    return None


def _mem_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is no /proc)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget(device: torch.device | str, fraction: float = 0.5, cpu_cap: int = 32 << 30) -> int:
    """Bytes that may be spent on data held in memory on ``device``: ``fraction`` of the free GPU
    memory on CUDA; on the CPU ``fraction`` of MemAvailable, at most ``cpu_cap``; 0 when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * fraction)
    if device.type == "cpu":
        available = _mem_available()
        return 0 if available is None else int(min(available * fraction, cpu_cap))
    return 0


# -- optimiser ------------------------------------------------------------------------------------
class Adam:
    """Adam as ``torch.optim.Adam`` computes it (L2 weight decay added to the gradient, bias-corrected
    moments, eps outside the square root), for one group of parameters.

    Why not torch.optim.Adam: constructing any torch.optim optimiser imports torch._dynamo (its
    ``add_param_group`` is wrapped in ``torch._disable_dynamo``), 1.3-3 s at the start of every
    process, whatever ``foreach``/``fused`` say; and its per-step Python overhead is a noticeable part
    of a step of a small net. Steps run through torch's fused Adam kernel where it exists for the
    device (CPU and CUDA), else one tensor at a time. ``lr`` may be changed between steps.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3, betas=(0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.weight_decay = float(lr), tuple(betas), float(eps), float(weight_decay)
        self.state: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._fused = hasattr(torch, "_fused_adam_")

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def _slots(self, i: int, p: torch.Tensor):
        if i not in self.state:
            self.state[i] = (torch.zeros_like(p, memory_format=torch.preserve_format),
                             torch.zeros_like(p, memory_format=torch.preserve_format),
                             torch.zeros((), dtype=torch.float32, device=p.device))
        return self.state[i]

    @torch.no_grad()
    def step(self) -> None:
        live = [(i, p) for i, p in enumerate(self.params) if p.grad is not None and p.numel() > 0]
        if not live:
            return
        beta1, beta2 = self.betas
        if self._fused:
            groups: dict[tuple, list] = {}
            for i, p in live:
                groups.setdefault((p.device, p.dtype), []).append((i, p))
            for (device, _), items in groups.items():
                if device.type not in ("cpu", "cuda"):
                    self._step_plain(items)
                    continue
                slots = [self._slots(i, p) for i, p in items]
                steps = [s[2] for s in slots]
                torch._foreach_add_(steps, 1)  # the kernel reads the step count; it does not count
                try:
                    torch._fused_adam_([p for _, p in items], [p.grad for _, p in items], [s[0] for s in slots],
                                       [s[1] for s in slots], [], steps, lr=self.lr, beta1=beta1,
                                       beta2=beta2, weight_decay=self.weight_decay, eps=self.eps, amsgrad=False,
                                       maximize=False)
                except (RuntimeError, NotImplementedError):  # no fused kernel for this device or dtype
                    torch._foreach_sub_(steps, 1)
                    self._fused = False
                    self._step_plain(items)
            return
        self._step_plain(live)

    def _step_plain(self, items) -> None:
        beta1, beta2 = self.betas
        for i, p in items:
            exp_avg, exp_avg_sq, step = self._slots(i, p)
            grad = p.grad if self.weight_decay == 0 else p.grad.add(p, alpha=self.weight_decay)
            step += 1
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            t = float(step)
            denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2 ** t)).add_(self.eps)
            p.addcdiv_(exp_avg, denom, value=-self.lr / (1 - beta1 ** t))
