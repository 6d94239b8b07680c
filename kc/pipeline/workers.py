"""Independent work items of a stage (nets, pairs, classifier rows) computed side by side on the CPU.

    results = map_items(fit_one, pairs)      # [fit_one(p) for p in pairs], on all cores

The default's nets and g's are small: PyTorch spreads one small convolution over two cores poorly
(about 1.4x for 2x the CPU), so on the CPU each item runs in a process of its own, forked from the
stage, with one thread, as many at once as there are cores. An item always runs with one thread,
whatever the number of cores, so its result does not depend on the machine's size (on one machine,
the same bytes). On CUDA, under DistributedDataParallel, or with KC_WORKERS=1, items run one after
the other in the stage's own process. A failing item stops the stage with its own exception (the
child's traceback attached as a note): one line for kc's known errors, the traceback for a bug.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import traceback
from pathlib import Path
from typing import Callable, Sequence



class WorkerError(RuntimeError):
    """A work item failed with an error that is not one of kc's own (its traceback is in the message)."""


def workers() -> int:
    value = os.environ.get("KC_WORKERS", "")
    if value.isdigit() and int(value) >= 1:
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _forkable(device: str) -> bool:
    import torch.distributed as dist

    return (os.name == "posix" and device == "cpu" and not (dist.is_available() and dist.is_initialized())
            and os.environ.get("KC_WORKERS") != "1")


def map_items(fn: Callable, items: Sequence, device: str = "cpu") -> list:
    """``[fn(item) for item in items]``; on the CPU each item in a forked one-thread process."""
    items = list(items)
    if not items:
        return []
    if not _forkable(device):
        return [fn(item) for item in items]
    from kc.stage import raised_by_kc

    limit = workers()
    results: list = [None] * len(items)
    running: dict[int, tuple[int, Path]] = {}
    folder = Path(tempfile.mkdtemp(prefix="kc-workers."))          # small result files only
    failure = None
    try:
        for index, item in enumerate(items):
            while len(running) >= limit:
                error = _reap(running, results)
                failure = failure or error
            if failure is not None:
                break
            out = folder / f"{index}.pkl"
            pid = os.fork()
            if pid == 0:                                        # the child: one thread, compute, report, exit
                code = 0
                try:
                    import torch
                    torch.set_num_threads(1)
                    payload = ("ok", fn(item))
                except BaseException as exc:                    # noqa: BLE001 (reported to the parent)
                    code = 1
                    text = traceback.format_exc()
                    try:
                        pickle.dumps(exc)
                        payload = ("error", exc, text, raised_by_kc(exc))
                    except Exception:
                        payload = ("error", None, text, False)
                finally:
                    try:
                        with open(out, "wb") as f:
                            pickle.dump(payload, f)
                    finally:
                        os._exit(code)
            running[pid] = (index, out)
        while running:
            error = _reap(running, results)
            failure = failure or error
    finally:
        for pid in list(running):
            os.waitpid(pid, 0)
        import shutil
        shutil.rmtree(folder, ignore_errors=True)
    if failure is not None:
        raise failure
    return results


def _reap(running: dict, results: list) -> BaseException | None:
    """Wait for one child; store its result, or return the error it reported."""
    pid, status = os.wait()
    index, out = running.pop(pid)
    if not out.exists():
        return WorkerError(f"a worker process died (status {status}) before reporting: killed, or out of memory")
    with open(out, "rb") as f:
        payload = pickle.load(f)
    if payload[0] == "ok":
        results[index] = payload[1]
        return None
    _, exc, text, from_kc = payload
    if exc is None:
        return WorkerError(f"a worker failed:\n{text}")
    exc.add_note(f"in a worker process:\n{text}")
    exc._kc_raised_by_kc = from_kc          # kc.stage: one line for kc's own errors, the traceback for a bug
    return exc
