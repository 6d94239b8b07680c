"""Stage prepare@<dataset>: a dataset's official files -> uint8 arrays on disk (kc.data.prepare).

    python stages/prepare.py fmnist       # data/prepared/fmnist/
"""
from __future__ import annotations

import time

from kc.data.writer import prepare as prepare_arrays
from kc.config import Config
from kc.paths import Paths
from kc.pipeline.env import log


def prepare(cfg: Config, name: str, root=".") -> dict:
    spec = cfg.datasets[name]
    t0 = time.perf_counter()
    meta = prepare_arrays(spec.source, spec.root, Paths(root).prepared(name), image_size=spec.image_size,
                        max_train=spec.max_train, max_test=spec.max_test, seed=cfg.seed, download=spec.download,
                        skip_difficult=spec.skip_difficult, num_workers=spec.num_workers, progress=None)
    log(f"prepare {name}: {meta['counts']['train']} train / {meta['counts']['test']} test images, "
        f"{len(meta['classes'])} classes, {time.perf_counter() - t0:.1f} s")
    return meta
