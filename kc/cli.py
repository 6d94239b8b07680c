"""Command-line glue: ``python -m kc check params.yaml`` and the runner behind ``stages/*.py``."""
from __future__ import annotations

import os
import sys
from typing import Callable

from kc.config import Config, ConfigError, load
from kc.data import DataError


def params_path() -> str:
    return os.environ.get("KC_PARAMS", "params.yaml")


def _relaunch_distributed(args: list[str]) -> None:
    """With KC_NPROC=N > 1, re-run this stage under torchrun on N processes (DistributedDataParallel)."""
    nproc = os.environ.get("KC_NPROC", "1")
    if not nproc.isdigit() or int(nproc) < 1:
        raise ConfigError(f"KC_NPROC must be a positive integer, got {nproc!r}")
    if int(nproc) > 1 and "LOCAL_RANK" not in os.environ:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               sys.argv[0], *args]
        os.execv(sys.executable, cmd)


def stage(func: Callable, names: Callable[[Config], dict] | None = None, argv: list[str] | None = None,
          distributed: bool = False) -> None:
    """Run ``func(cfg, name)`` (or ``func(cfg)``) for a DVC stage; known errors print one clear line.

    ``distributed``: the stage trains a net and may run on several GPUs (``KC_NPROC=4 dvc repro``).
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        if distributed:
            _relaunch_distributed(args)
        cfg = load(params_path())
        if names is not None:
            if len(args) != 1:
                raise ConfigError(f"usage: {os.path.basename(sys.argv[0])} NAME")
            valid = names(cfg)
            if args[0] not in valid:
                raise ConfigError(f"{args[0]!r} is not defined; valid names: {', '.join(valid) or 'none'}")
            func(cfg, args[0])
        else:
            func(cfg)
    except (ConfigError, DataError, FileNotFoundError) as exc:
        print(f"kc: error: {exc}", file=sys.stderr)
        sys.exit(1)


def check(path: str) -> int:
    """Validate a params file and print what it declares."""
    try:
        cfg = load(path)
    except ConfigError as exc:
        print(f"kc: error: {exc}", file=sys.stderr)
        return 1
    kinds: dict[str, int] = {}
    for net in cfg.nets.values():
        kinds[net.kind] = kinds.get(net.kind, 0) + 1
    print(f"{path}: ok — {len(cfg.datasets)} dataset(s), {len(cfg.tasks)} task(s), "
          f"{len(cfg.nets)} nets ({', '.join(f'{v} {k}' for k, v in kinds.items())}), {len(cfg.pairs)} pairs, "
          f"{sum(len(v) for k, v in cfg.refine.items() if k != 'recipe')} classifier experiments")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "check":
        return check(args[1])
    print("usage: python -m kc check PARAMS.yaml", file=sys.stderr)
    return 2
