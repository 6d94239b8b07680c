"""The runner behind every ``stages/*.py``: the entry from argv or DVC_STAGE, one error line.

    run_stage(train_population, lambda cfg: cfg.nets, distributed=True, kind="nets")

The entry a stage works on comes from its argument or, under DVC, from DVC_STAGE (``train@vgg_s`` ->
``vgg_s``), so that no value from params ever reaches a shell: dvc.yaml's commands are constants.
Known failures (bad params or data, a missing or damaged input, a diverging fit, a bad KC_DEVICE)
print one line ``kc: error: ...`` naming the file, key or argument, and exit 1.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, Iterable

from kc.config import ConfigError, load

PARAMS = "params.yaml"


def params_path() -> str:
    return os.environ.get("KC_PARAMS", PARAMS)


def known_errors() -> tuple[type[BaseException], ...]:
    """Failures with a message meant for the user (a traceback means a bug in kc)."""
    from kc.data.catalog import DataError
    from kc.pipeline.env import DeviceError

    errors: list[type[BaseException]] = [ConfigError, DataError, DeviceError, FileNotFoundError]
    if "kc.consistency" in sys.modules:
        errors.append(sys.modules["kc.consistency"].FitDiverged)
    return tuple(errors)


def fail(message: str, code: int = 1) -> None:
    print(f"kc: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    sys.exit(code)


def _relaunch_distributed(args: list[str]) -> None:
    """With KC_NPROC=N > 1, re-run this stage under torchrun on N processes (DistributedDataParallel)."""
    nproc = os.environ.get("KC_NPROC", "1")
    if not nproc.isdigit() or int(nproc) < 1:
        raise ConfigError(f"KC_NPROC: must be a positive integer, got {nproc!r}")
    if int(nproc) > 1 and "LOCAL_RANK" not in os.environ:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               sys.argv[0], *args]
        os.execv(sys.executable, cmd)


def entry_name(args: list[str], stage_kind: str) -> str:
    """The entry a stage works on: its argument, or the part after '@' of DVC_STAGE."""
    if args:
        if len(args) != 1:
            raise ConfigError(f"usage: python {sys.argv[0]} NAME (the {stage_kind} entry to run)")
        return args[0]
    stage = os.environ.get("DVC_STAGE", "")
    if "@" not in stage:
        raise ConfigError(f"usage: python {sys.argv[0]} NAME (the {stage_kind} entry to run; under DVC it comes "
                          "from DVC_STAGE)")
    return stage.split("@", 1)[1]


def run_stage(func: Callable, entries: Callable | None = None, studies: Iterable[str] = (),
              argv: list[str] | None = None, distributed: bool = False, kind: str = "stage",
              device: bool = True) -> None:
    """Run ``func(cfg, name)`` (or ``func(cfg)`` without ``entries``) with known errors as one line.

    ``entries(cfg)``: the valid names; ``studies``: the study sections to parse besides the core
    (kc.config.load). ``distributed``: the stage trains nets and may run on several GPUs (KC_NPROC).
    ``device``: the stage computes with torch (KC_DEVICE is checked before any work).
    """
    args = sys.argv[1:] if argv is None else argv
    start = time.perf_counter()
    try:
        if distributed:
            _relaunch_distributed(args)
        if device:
            from kc.pipeline.env import device as resolve
            resolve()                              # a bad KC_DEVICE fails before any work
        cfg = load(params_path(), studies=tuple(studies))
        if entries is None:
            if args:
                raise ConfigError(f"usage: python {sys.argv[0]} (takes no arguments)")
            func(cfg)
            _done(kind, None, start)
            return
        name = entry_name(args, kind)
        valid = list(entries(cfg))
        if name not in valid:
            raise ConfigError(f"{name!r} is not a {kind} entry of {params_path()}; valid: {', '.join(valid) or 'none'}")
        func(cfg, name)
        _done(kind, name, start)
    except known_errors() as exc:
        fail(exc)
    except ValueError as exc:
        if not raised_by_kc(exc):      # a bug, not bad input: keep the traceback
            raise
        fail(exc)


def _done(kind: str, name: str | None, start: float) -> None:
    """One line per finished stage with its wall time, so a slow stage is easy to find in a long run."""
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        label = os.environ.get("DVC_STAGE") or (f"{kind}@{name}" if name else kind)
        print(f"[kc] {label} done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def raised_by_kc(exc: BaseException) -> bool:
    """Whether kc itself raised ``exc`` (its checks raise ValueError naming the argument or file), as
    opposed to an error from inside a library, which is a bug to report with its traceback."""
    marked = getattr(exc, "_kc_raised_by_kc", None)           # raised in a worker (kc.pipeline.workers)
    if marked is not None:
        return marked
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    package = os.path.dirname(os.path.abspath(__file__))
    return last is not None and os.path.abspath(last).startswith(package + os.sep)


# ------------------------------------------------------------------------------------------------
def check(path: str, stage_output: str | None = None) -> int:
    """Validate a params file and print what it declares; with ``stage_output``, also write that file."""
    try:
        cfg = load(path)
        _check_cross(cfg)
    except ConfigError as exc:
        print(f"kc: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    nets = sum(len(p.nets) for p in cfg.nets.values())
    studies = [k for k, v in cfg.studies.items() if v]
    print(f"{path}: ok — {len(cfg.datasets)} dataset(s), {len(cfg.tasks)} task(s), {len(cfg.nets)} population(s) of "
          f"{nets} nets, reading {cfg.reading}; studies: {', '.join(studies) or 'none'}")
    if stage_output:
        from kc.io import write_text
        write_text(stage_output, f"{path} passed `python -m kc check`\n")
    return 0


def _check_cross(cfg) -> None:
    """Checks that need more than one section: the report needs something to report on."""
    def has_entries(spec) -> bool:
        if isinstance(spec, dict) and set(spec) >= {"components", "subset"}:      # refinement
            return bool(spec["components"] or spec["subset"])
        return bool(spec)
    if not any(has_entries(v) for v in cfg.studies.values()):
        raise ConfigError("params: no study has an entry (stability, refinement, ...); the report would be empty")


