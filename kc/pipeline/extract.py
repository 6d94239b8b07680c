"""Stage features@<population>: feature stores of every net of a set, on three image sets.

    python stages/features.py vgg_s    # data/features/vgg_s/<net>/ for every net of the population

Each store holds the set's layers (the taps of every reading a study needs, kc.archs) on
* ``fit``: ``features.train_images`` training images of the task's datasets, class-balanced and
  seeded, the same for every net over the same datasets: g is fitted on them (labels are not used);
* ``test``: the datasets' test images (``features.test_images`` of them, or all): everything is
  measured on them.
Labels are the datasets' own (a task's classes are mapped when read). The classifiers of Tables 3-4
and Section 4.1 learn on the nets' own training images, whose features their stages extract for the
occasion, with every test image (kc.pipeline.pairs.classifier_data).
"""
from __future__ import annotations

import numpy as np

from kc.data.splits import stratified_subset
from kc.data.tasks import Task
from kc.archs import tap_for
from kc.config import Config, NetSpec
from kc.features import extract
from kc.io import atomic_dir
from kc.paths import Paths
from kc.pipeline.env import device, log
from kc.pipeline.nets import load_net
from kc.pipeline.tasks import task_object
from kc.pipeline.workers import map_items


def taps(cfg: Config, arch: str, layers, readings) -> list[str]:
    """The explicit taps (``conv4_3_post``, ``conv4_3_pre``, ...) of ``layers`` under each reading."""
    out = []
    for layer in layers:
        for r in readings:
            t = tap_for(arch, layer, r)
            if t not in out:
                out.append(t)
    return out


def image_sets(cfg: Config, task_name: str, root=".") -> dict:
    """{"fit", "test"}: (ImageSet in store order, the datasets' labels, index into the prepared split)."""
    base = Task(task_object(cfg, task_name, root).datasets)          # every class of the datasets
    fit_all = base.load("train")
    idx = stratified_subset(fit_all.labels, cfg.features["train_images"], seed=cfg.seed)
    test_all = base.load("test")
    limit = cfg.features["test_images"]
    tidx = stratified_subset(test_all.labels, limit, seed=cfg.seed) if limit else np.arange(len(test_all))
    return {"fit": (fit_all.subset(idx), fit_all.labels[idx], idx),
            "test": (test_all.subset(tidx), test_all.labels[tidx], tidx)}


def all_test_images(cfg: Config, task_name: str, root=".") -> tuple:
    """Every test image of the task's datasets (the classifiers are scored on all of them):
    (ImageSet, the datasets' labels, index into the prepared test split)."""
    everything = Task(task_object(cfg, task_name, root).datasets).load("test")
    return everything, everything.labels, np.arange(len(everything))


def training_images(cfg: Config, task_name: str, root=".") -> tuple:
    """The task's own training images (what its nets learned on), in the datasets' label space:
    (ImageSet, labels, index into the prepared training split)."""
    task = task_object(cfg, task_name, root)
    everything = Task(task.datasets).load("train")
    in_task = np.flatnonzero(task.task_labels(everything.labels) >= 0)
    rows = in_task[np.load(Paths(root).task(task_name) / "train_rows.npy")]
    return everything.subset(rows), everything.labels[rows], rows


def extract_nets(cfg: Config, set_name: str, nets: list[NetSpec], layers: list[str], root=".") -> None:
    """Write data/features/<set>/<net>/ for each net of a set (from its checkpoint in data/nets/<set>/),
    all on the same images (those of the first net's task's datasets)."""
    paths = Paths(root)
    splits = image_sets(cfg, nets[0].task, root)
    with atomic_dir(paths.features(set_name)) as tmp:
        def one(net: NetSpec) -> None:
            model, _ = load_net(root, net)
            store = extract(model, list(layers), splits, tmp / net.name,
                            meta={"net": net.name, "set": set_name, "arch": net.arch, "task": net.task,
                                  "datasets": list(cfg.tasks[net.task].datasets)},
                            batch_size=cfg.features["batch_size"], device=device(), dtype=cfg.features["dtype"])
            shapes = ", ".join(f"{k} {tuple(v['shape'])}" for k, v in store["layers"].items())
            log(f"features of {net.name}: {shapes}; images {store['counts']}")
        map_items(one, nets, device())                   # side by side on the CPU (kc.pipeline.workers)


def extract_population(cfg: Config, name: str, root=".") -> None:
    """Stage features@<population>."""
    pop = cfg.nets[name]
    readings = needed_readings(cfg, name)
    extract_nets(cfg, name, pop.nets, taps(cfg, pop.arch, pop.layers, readings), root)


def needed_readings(cfg: Config, population: str) -> list[str]:
    """The run's reading, and the other one when the readings study compares both on this population."""
    readings = [cfg.reading]
    other = "authors" if cfg.reading == "paper" else "paper"
    if population in (cfg.raw.get("readings") or []):
        readings.append(other)
    return readings
