"""Command-line glue: ``python -m kc check params.yaml`` and the runner behind ``stages/*.py``."""
from __future__ import annotations

import os
import sys
from typing import Callable

from kc.config import Config, ConfigError, load
from kc.data import DataError


def params_path() -> str:
    return os.environ.get("KC_PARAMS", "params.yaml")


def stage(func: Callable, names: Callable[[Config], dict] | None = None, argv: list[str] | None = None) -> None:
    """Run ``func(cfg, name)`` (or ``func(cfg)``) for a DVC stage; known errors print one clear line."""
    args = sys.argv[1:] if argv is None else argv
    try:
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
