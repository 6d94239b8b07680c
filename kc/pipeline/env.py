"""The device a stage runs on (from the environment, not params) and its log lines.

``KC_DEVICE``: auto (default: cuda when available, else cpu), cpu, cuda or cuda:N. It comes from
the environment so that moving a run between machines does not invalidate its results.
"""
from __future__ import annotations

import os
import re


class DeviceError(ValueError):
    """KC_DEVICE names a device that is not valid or not present."""


def device() -> str:
    """The validated device string: "cpu", "cuda" or "cuda:N" (auto resolved)."""
    value = os.environ.get("KC_DEVICE", "auto").strip()
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise DeviceError(f"KC_DEVICE={value!r}: must be auto, cpu, cuda or cuda:N")
    import torch

    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if value.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"KC_DEVICE={value}: no CUDA device is available on this machine "
                              "(use KC_DEVICE=cpu or auto)")
        index = int(value.split(":")[1]) if ":" in value else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"KC_DEVICE={value}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return value


def is_main_process() -> bool:
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0


def log(message: str) -> None:
    if is_main_process():
        print(f"[kc] {message}", flush=True)
