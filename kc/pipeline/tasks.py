"""Stage `tasks`: which prepared images each task trains on, recorded per task.

    python stages/tasks.py        # data/tasks/<task>/task.json + train_rows.npy for every task

The paper's regime (Section 4): nets are trained from scratch, without augmentation, on a small
training set (CUB-200: about 30 images per class). ``tasks.<name>.images_per_class`` keeps that many
training images of each class of the task's datasets (seeded, class-balanced); the test set is every
prepared test image of the task's classes. ``task.json`` records the task and the content
fingerprints of the prepared datasets it reads, so a stage that depends on ``data/tasks/<task>``
reruns exactly when the data it trains on changes (adding another dataset changes nothing).
"""
from __future__ import annotations

import numpy as np

from kc.data.catalog import DataError
from kc.data.prepared import load_prepared
from kc.data.splits import expand_classes, half_split, stratified_subset
from kc.data.tasks import Task
from kc.config import Config, NetSpec
from kc.io import atomic_dir, read_json, write_json
from kc.paths import Paths


def task_object(cfg: Config, name: str, root=".") -> Task:
    """The kc.data.Task of a task in params (over its prepared datasets)."""
    spec = cfg.tasks[name]
    paths = Paths(root)
    prepared = [load_prepared(paths.prepared(d)) for d in spec.datasets]
    counts = [len(p.classes) for p in prepared]

    def expand(members):
        return expand_classes(members, list(spec.datasets), counts)
    try:
        classes = expand(list(spec.classes)) if spec.classes is not None else None
        groups = {k: expand(v) for k, v in spec.groups.items()} if spec.groups is not None else None
        return Task(prepared, classes=classes, groups=groups)
    except DataError:
        raise
    except ValueError as exc:
        raise ValueError(f"tasks.{name}: {exc}") from None


def training_rows(cfg: Config, name: str, task: Task) -> np.ndarray:
    """Rows of ``task.load("train")`` the task's nets train on: ``images_per_class`` of each class of
    the datasets (seeded, class-balanced over the datasets' classes), or all."""
    labels = task.base_labels("train")
    per_class = cfg.tasks[name].images_per_class
    if per_class is None:
        return np.arange(len(labels), dtype=np.int64)
    n = per_class * len(np.unique(labels))
    return stratified_subset(labels, n, seed=cfg.seed)


def materialise(cfg: Config, root=".") -> dict:
    """Stage `tasks`: data/tasks/<task>/ for every task in params."""
    paths = Paths(root)
    out = {}
    with atomic_dir(paths.tasks()) as tmp:
        for name, spec in cfg.tasks.items():
            task = task_object(cfg, name, root)
            rows = training_rows(cfg, name, task)
            folder = tmp / name
            folder.mkdir()
            np.save(folder / "train_rows.npy", rows)
            manifest = {"task": spec.as_dict(), "seed": cfg.seed, "classes": task.classes,
                        "counts": {"train": int(len(rows)), "test": int(len(task.load("test")))},
                        "datasets": {d: read_json(paths.prepared(d) / "meta.json") for d in spec.datasets}}
            write_json(folder / "task.json", manifest)
            out[name] = manifest["counts"]
    return out


def manifest(cfg: Config, name: str, root=".") -> dict:
    return read_json(Paths(root).task(name) / "task.json")


def net_data(cfg: Config, net: NetSpec, root=".") -> tuple:
    """(task, the net's training images, its test images): its half of the training set for the nets
    of Case 2 (a seeded class-stratified division per split index); the test images are those the
    pairs are measured on (``features.test_images``, class-balanced over the datasets' classes, or
    every one), restricted to the task's classes, so that accuracies and features share their images."""
    task = task_object(cfg, net.task, root)
    rows = np.load(Paths(root).task(net.task) / "train_rows.npy")
    train = task.load("train").subset(rows)
    if net.half is not None:
        division, half = net.half
        train = train.subset(half_split(train.labels, f"half{half}", seed=[cfg.seed, division]))
    test = task.load("test")
    limit = cfg.features["test_images"]
    if limit:
        base = Task(task.datasets).load("test")
        chosen = np.zeros(len(base), dtype=bool)
        chosen[stratified_subset(base.labels, limit, seed=cfg.seed)] = True
        test = test.subset(np.flatnonzero(chosen[np.flatnonzero(task.task_labels(base.labels) >= 0)]))
    return task, train, test
