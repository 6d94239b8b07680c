"""Every file the pipeline reads or writes, in one place (dvc.yaml spells the same paths; a test
keeps the two in step).

    paths = Paths(".")
    paths.net("vgg_s", "vgg_s_seed0")      # data/nets/vgg_s/vgg_s_seed0.pt
    paths.results("stability", "vgg_s")    # results/stability/vgg_s/
    paths.metrics("stability", "vgg_s")    # metrics/stability/vgg_s.json

Layout (relative to the repository root):

    data/checked.txt                    check         params validated (every stage depends on it)
    data/prepared/<dataset>/            prepare       uint8 images + labels (kc.data.prepare)
    data/tasks/<task>/                  tasks         which prepared images a task trains on, its labels
    data/nets/<set>/<net>.pt            train, ...    checkpoints of a set of nets (a population, or a study's own)
    data/features/<set>/<net>/          features, ... feature stores (kc.features)
    results/nets/<set>/                 train, ...    accuracies (metrics.json), per-image test correctness (correct.npz)
    results/<study>/<entry>/            study stages  metrics.json, fitted g, per-image moments, classifier
                                                      correctness, figure data (what the report reads)
    metrics/nets/<set>.json             train, ...    the same numbers, git-tracked for `dvc metrics diff`
    metrics/<study>/<entry>.json        study stages
    metrics/summary.json                report        claims holding / inconclusive / not holding, headline numbers
    plots/<name>.csv                    report        curves for `dvc plots`
    report/                             report        README.md, claims.json, figures

Temporary files of atomic writes go to ``.kc-tmp/`` (kc.io), outside every dependency folder.
"""
from __future__ import annotations

from pathlib import Path


class Paths:
    def __init__(self, root: str | Path = "."):
        self.root = Path(root)

    # -- inputs and backbones ----------------------------------------------------------------------
    def checked(self) -> Path:
        return self.root / "data" / "checked.txt"

    def prepared(self, dataset: str) -> Path:
        return self.root / "data" / "prepared" / dataset

    def task(self, task: str) -> Path:
        return self.root / "data" / "tasks" / task

    def tasks(self) -> Path:
        return self.root / "data" / "tasks"

    def nets(self, net_set: str) -> Path:
        return self.root / "data" / "nets" / net_set

    def net(self, net_set: str, net: str) -> Path:
        return self.nets(net_set) / f"{net}.pt"

    def features(self, net_set: str, net: str | None = None) -> Path:
        base = self.root / "data" / "features" / net_set
        return base / net if net is not None else base

    def net_results(self, net_set: str) -> Path:
        return self.root / "results" / "nets" / net_set

    # -- studies -------------------------------------------------------------------------------------
    def results(self, study: str, entry: str | None = None) -> Path:
        base = self.root / "results" / study
        return base / entry if entry is not None else base

    def metrics(self, study: str, entry: str | None = None) -> Path:
        base = self.root / "metrics" / study
        return base.with_suffix(".json") if entry is None else base / f"{entry}.json"

    # -- report ----------------------------------------------------------------------------------------
    def summary(self) -> Path:
        return self.root / "metrics" / "summary.json"

    def plots(self, name: str) -> Path:
        return self.root / "plots" / f"{name}.csv"

    def report(self, name: str | None = None) -> Path:
        base = self.root / "report"
        return base / name if name is not None else base
