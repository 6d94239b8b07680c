"""One function per DVC stage: validated config in, files out. ``stages/*.py`` are thin wrappers.

Paths (relative to the repository root, ``root``):

    data/prepared/<dataset>/     prepare         uint8 images + labels (kc.data.prepare)
    data/nets/<net>.pt           train/prune/distill   checkpoints (kc.train)
    data/features/<net>/         extract         feature stores (kc.features)
    data/fits/<pair>.pt          fit             g_θ (kc.consistency)
    data/decomp/<pair>.npz       decompose       components of a few test images, for figures
    metrics/nets/<net>.json      accuracy (and pruned fraction, generation)
    metrics/fits/<pair>.json     fit loss and gates;  plots/fits/<pair>.csv: loss per epoch
    metrics/pairs/<pair>.json    Var(x^(k)), Var(x^Δ), Var(x^Δ)/Var(x*), CKA, linear predictivity
    metrics/refine/<kind>_<name>.json   classifier accuracies (refine stages)

The device comes from the environment (``KC_DEVICE``: auto, cpu, cuda; default auto), not from
params, so moving a run between machines does not invalidate its results.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from kc import consistency, data, features, studies
from kc.config import Config, PairSpec
from kc.io import atomic_path, write_csv, write_json
from kc.models import build, split
from kc.train import (apply_masks, evaluate, is_main_process, load_checkpoint, prune_masks, pruned_fraction,
                      save_checkpoint, train)


def device() -> str:
    return os.environ.get("KC_DEVICE", "auto")


def _resolved_device() -> str:
    from kc.io import resolve_device
    return str(resolve_device(device()))


def log(message: str) -> None:
    if is_main_process():
        print(f"[kc] {message}", flush=True)


class Paths:
    def __init__(self, root: str | Path = "."):
        self.root = Path(root)

    def prepared(self, dataset: str) -> Path:
        return self.root / "data" / "prepared" / dataset

    def net(self, name: str) -> Path:
        return self.root / "data" / "nets" / f"{name}.pt"

    def features(self, name: str) -> Path:
        return self.root / "data" / "features" / name

    def fit(self, pair: str) -> Path:
        return self.root / "data" / "fits" / f"{pair}.pt"

    def decomp(self, pair: str) -> Path:
        return self.root / "data" / "decomp" / f"{pair}.npz"

    def metrics(self, *parts: str) -> Path:
        return self.root.joinpath("metrics", *parts)

    def plots(self, *parts: str) -> Path:
        return self.root.joinpath("plots", *parts)


# ------------------------------------------------------------------------------------------------
# prepare, train, prune, distill
# ------------------------------------------------------------------------------------------------
def prepare(cfg: Config, name: str, root=".") -> dict:
    spec = cfg.datasets[name]
    t0 = time.perf_counter()
    meta = data.prepare(spec.source, spec.root, Paths(root).prepared(name), image_size=spec.image_size,
                        max_train=spec.max_train, max_test=spec.max_test, seed=cfg.seed, download=spec.download,
                        skip_difficult=spec.skip_difficult, num_workers=spec.num_workers, progress=None)
    log(f"prepare {name}: {meta['counts']['train']} train / {meta['counts']['test']} test images, "
        f"{len(meta['classes'])} classes, {time.perf_counter() - t0:.1f} s")
    return meta


def task(cfg: Config, spec: dict | str, root=".") -> data.Task:
    """A kc.data.Task from a task name or a stored task spec (checkpoints carry theirs)."""
    spec = cfg.tasks[spec].as_dict() if isinstance(spec, str) else spec
    paths = Paths(root)
    try:
        prepared = [data.load_prepared(paths.prepared(d)) for d in spec["datasets"]]
        counts = [len(p.classes) for p in prepared]

        def expand(members):
            return data.expand_classes(members, spec["datasets"], counts)
        classes = expand(spec["classes"]) if spec["classes"] is not None else None
        groups = {k: expand(v) for k, v in spec["groups"].items()} if spec["groups"] is not None else None
        return data.Task(prepared, classes=classes, groups=groups)
    except data.DataError:
        raise
    except ValueError as exc:
        raise ValueError(f"tasks.{spec['name']}: {exc}") from None


def _subset_classes(store: features.FeatureStore, classes: list, root) -> list[int]:
    """A pair's ``classes`` as label indices of its feature store's datasets."""
    base = data.Task([Paths(root).prepared(d) for d in store.meta["datasets"]])
    counts = [len(d.classes) for d in base.datasets]
    return base.class_indices(data.expand_classes(classes, store.meta["datasets"], counts))


def _task_data(cfg: Config, spec: dict | str, split_name: str, root) -> tuple[data.Task, data.ImageSet, data.ImageSet]:
    """(task, training images of the net's data split, test images)."""
    t = task(cfg, spec, root)
    train_set = t.load("train")
    train_set = train_set.subset(data.half_split(train_set.labels, split_name, seed=cfg.seed))
    return t, train_set, t.load("test")


def _net_record(cfg: Config, name: str, tcfg, task_spec: dict, **extra) -> dict:
    net = cfg.nets[name]
    return {"net": name, "kind": net.kind, "task": task_spec, "split": net.split, "seed": net.seed,
            "train": asdict(tcfg), "parent": net.parent, "threshold": net.threshold, **extra}


def _save_net(cfg, name, model, task_obj, tcfg, result, root, config, metrics) -> None:
    if not is_main_process():
        return
    paths = Paths(root)
    save_checkpoint(paths.net(name), model, arch=cfg.nets[name].arch, num_classes=task_obj.num_classes,
                    in_channels=task_obj.channels, config=config, history=result["history"],
                    test_accuracy=result["test_accuracy"], classes=list(task_obj.classes))
    last = result["history"][-1]
    write_json(paths.metrics("nets", f"{name}.json"),
               {"test_accuracy": result["test_accuracy"], "test_loss": result["test_loss"],
                "train_accuracy": last["train_accuracy"], "epochs": len(result["history"]),
                "seconds": sum(r["seconds"] for r in result["history"]), **metrics})


def train_net(cfg: Config, name: str, root=".") -> dict:
    """Stage train@<net>: a net from scratch on its task (and half of the data for split half0/half1)."""
    net = cfg.nets[name]
    if net.kind != "scratch":
        stage = {"pruned": "prune", "distilled": "distill"}[net.kind]
        raise ValueError(f"{name} is a {net.kind} net; the {stage} stage makes it")
    t, train_set, test_set = _task_data(cfg, net.task, net.split, root)
    torch.manual_seed(net.seed)
    model = build(net.arch, t.num_classes, t.channels)
    tcfg = replace(net.train, seed=net.seed, device=device())
    result = train(model, train_set, test_set, tcfg)
    spec = cfg.tasks[net.task].as_dict()
    _save_net(cfg, name, model, t, tcfg, result, root, _net_record(cfg, name, tcfg, spec, generation=0), {})
    log(f"train {name}: test accuracy {result['test_accuracy']:.4f} on {len(train_set)} images")
    return result


def _generation(cfg: Config, name: str) -> int:
    net = cfg.nets[name]
    return _generation(cfg, net.parent) + 1 if net.kind == "distilled" else 0


def prune_net(cfg: Config, name: str, root=".") -> dict:
    """Stage prune@<net>: magnitude pruning of the parent (Han et al. 2016), survivors retrained."""
    net = cfg.nets[name]
    model, meta = load_checkpoint(Paths(root).net(net.parent))
    spec = meta["config"]["task"]
    t, train_set, test_set = _task_data(cfg, spec, meta["config"]["split"], root)
    dev = _resolved_device()
    parent_acc = evaluate(model, test_set, device=dev)["accuracy"]
    masks = prune_masks(model, net.threshold)
    apply_masks(model, masks)
    fraction = pruned_fraction(model)
    pruned_acc = evaluate(model, test_set, device=dev)["accuracy"]
    tcfg = replace(net.train, seed=net.seed, device=device())
    result = train(model, train_set, test_set, tcfg, masks=masks)
    after = pruned_fraction(model)
    if after < fraction - 1e-12:
        raise RuntimeError(f"{name}: pruned weights came back during retraining ({fraction:.4f} -> {after:.4f})")
    config = _net_record(cfg, name, tcfg, spec, generation=0, pruned_fraction=fraction)
    metrics = {"pruned_fraction": fraction, "parent_accuracy": parent_acc, "accuracy_after_pruning": pruned_acc,
               "accuracy_drop": parent_acc - result["test_accuracy"], "threshold": net.threshold}
    _save_net(cfg, name, model, t, tcfg, result, root, config, metrics)
    log(f"prune {name}: {fraction:.1%} of weights removed, accuracy {parent_acc:.4f} -> {pruned_acc:.4f} "
        f"-> {result['test_accuracy']:.4f} after retraining")
    return result


def distill_net(cfg: Config, name: str, root=".") -> dict:
    """Stage distill@<net>: a born-again generation, CE + alpha * KD(tau) against its teacher."""
    net = cfg.nets[name]
    teacher, meta = load_checkpoint(Paths(root).net(net.parent))
    spec = meta["config"]["task"]
    t, train_set, test_set = _task_data(cfg, spec, meta["config"]["split"], root)
    torch.manual_seed(net.seed)
    model = build(net.arch, t.num_classes, t.channels)
    tcfg = replace(net.train, seed=net.seed, device=device())
    alpha, tau = cfg.distill["alpha"], cfg.distill["tau"]
    result = train(model, train_set, test_set, tcfg, teacher=teacher, kd_alpha=alpha, kd_tau=tau)
    generation = _generation(cfg, name)
    config = _net_record(cfg, name, tcfg, spec, generation=generation, kd_alpha=alpha, kd_tau=tau)
    metrics = {"generation": generation, "teacher_accuracy": float(meta["test_accuracy"])}
    _save_net(cfg, name, model, t, tcfg, result, root, config, metrics)
    log(f"distill {name} (generation {generation}): test accuracy {result['test_accuracy']:.4f} "
        f"(teacher {meta['test_accuracy']:.4f})")
    return result


# ------------------------------------------------------------------------------------------------
# extract, fit, decompose
# ------------------------------------------------------------------------------------------------
def _store_images(cfg: Config, spec: dict, split_name: str, root) -> tuple[data.ImageSet, np.ndarray]:
    """All images of the task's datasets (their own labels), and the seeded class-balanced choice.

    Every net whose task uses the same datasets gets the same images, so pairs line up."""
    base = data.Task([Paths(root).prepared(d) for d in spec["datasets"]]).load(split_name)
    limit = cfg.features[f"{split_name}_images"]
    idx = data.stratified_subset(base.labels, limit, seed=cfg.seed) if limit else np.arange(len(base))
    return base, idx


def extract_net(cfg: Config, name: str, root=".") -> dict:
    """Stage extract@<net>: the net's listed layers over the fixed train/test images, float16 memmaps."""
    model, meta = load_checkpoint(Paths(root).net(name))
    spec = meta["config"]["task"]
    splits = {}
    for split_name in ("train", "test"):
        base, idx = _store_images(cfg, spec, split_name, root)
        splits[split_name] = (base.subset(idx), base.labels[idx], idx)
    t0 = time.perf_counter()
    out = features.extract(model, cfg.feature_layers[name], splits, Paths(root).features(name),
                           meta={"net": name, "arch": meta["arch"], "task": spec, "datasets": spec["datasets"]},
                           batch_size=cfg.features["batch_size"], device=_resolved_device(),
                           dtype=cfg.features["dtype"])
    shapes = ", ".join(f"{k} {tuple(v['shape'])}" for k, v in out["layers"].items())
    log(f"extract {name}: {shapes} for {out['counts']['train']} + {out['counts']['test']} images, "
        f"{time.perf_counter() - t0:.1f} s")
    return out


def _pair_rows(cfg: Config, pair: PairSpec, store: features.FeatureStore, split_name: str, root):
    """Rows of the stores a pair uses, and their labels (remapped to the subset when it has classes)."""
    labels = store.labels(split_name)
    if pair.classes is None:
        return np.arange(len(labels)), labels
    try:
        classes = _subset_classes(store, pair.classes, root)
    except ValueError as exc:
        raise ValueError(f"pairs.{pair.name}.classes: {exc}") from None
    lut = np.full(max(int(labels.max()), max(classes)) + 1, -1)
    lut[classes] = np.arange(len(classes))
    rows = np.flatnonzero(lut[labels] >= 0)
    return rows, lut[labels[rows]]


def pair_features(cfg: Config, pair: PairSpec, split_name: str, root=".") -> studies.PairFeatures:
    """The aligned source/target features of a pair on one split (normalised and raw views)."""
    paths = Paths(root)
    src_store, tgt_store = features.FeatureStore(paths.features(pair.source)), features.FeatureStore(paths.features(pair.target))
    if not np.array_equal(src_store.index(split_name), tgt_store.index(split_name)) or \
            src_store.meta["datasets"] != tgt_store.meta["datasets"]:
        raise ValueError(f"pairs.{pair.name}: the feature stores of {pair.source} and {pair.target} hold "
                         "different images; re-run their extract stages with the same features settings")
    rows, labels = _pair_rows(cfg, pair, src_store, split_name, root)
    tgt_shape = tgt_store.shape(pair.target_layer)
    src_shape = src_store.shape(pair.source_layer)
    size = tuple(tgt_shape[1:]) if len(tgt_shape) == 3 and src_shape[1:] != tgt_shape[1:] else None
    return studies.PairFeatures(
        source=src_store.array(pair.source_layer, split_name, rows=rows, size=size),
        target=tgt_store.array(pair.target_layer, split_name, rows=rows),
        source_raw=src_store.array(pair.source_layer, split_name, rows=rows, normalise=False),
        target_raw=tgt_store.array(pair.target_layer, split_name, rows=rows, normalise=False),
        labels=labels)


def fit_pair(cfg: Config, name: str, root=".") -> list[dict]:
    """Stage fit@<pair>: g_θ (Eq. 1-2) from the source's to the target's training features."""
    pair = cfg.pairs[name]
    d = pair_features(cfg, pair, "train", root)
    torch.manual_seed(cfg.seed)
    g = consistency.ConsistencyNet(d.source.shape[1], d.target.shape[1], K=pair.K, kernel_size=cfg.fit.kernel_size,
                                   norm=cfg.fit.norm, gate=cfg.fit.gate)
    history = consistency.fit(g, d.source, d.target, lam=pair.lam, epochs=cfg.fit.epochs,
                              batch_size=cfg.fit.batch_size, lr=cfg.fit.lr, device=_resolved_device(), seed=cfg.seed)
    paths = Paths(root)
    consistency.save(g.cpu(), paths.fit(name), pair=asdict(pair), history=history)
    last = history[-1]
    write_json(paths.metrics("fits", f"{name}.json"),
               {"loss": last["loss"], "mse": last["mse"], "penalty": last["penalty"], "lam": pair.lam, "K": pair.K,
                **{k: v for k, v in last.items() if k.startswith("p") and k[1:].isdigit()},
                "epochs": len(history), "images": len(d.source), "seconds": sum(r["seconds"] for r in history)})
    write_csv(paths.plots("fits", f"{name}.csv"),
              [{k: v for k, v in row.items() if k != "seconds"} for row in history])
    gates = " ".join(f"p{k + 1}={float(p):.3f}" for k, p in enumerate(g.gates.detach()))
    log(f"fit {name}: loss {last['loss']:.4f} (mse {last['mse']:.4f}) {gates} on {len(d.source)} images")
    return history


def decompose_pair(cfg: Config, name: str, root=".") -> dict:
    """Stage decompose@<pair>: variances of x^(k) and x^Δ on the test images, CKA, linear predictivity."""
    from kc.similarity import linear_cka, linear_predictivity

    pair = cfg.pairs[name]
    paths = Paths(root)
    g, _ = consistency.load(paths.fit(name))
    test, train_d = pair_features(cfg, pair, "test", root), pair_features(cfg, pair, "train", root)
    bs = cfg.decompose["batch_size"]
    dev = _resolved_device()
    v = consistency.variances(g, test.source, test.target, batch_size=bs, device=dev)
    metrics = {f"var_x{k}": v[f"x{k}"] for k in range(g.K + 1)}
    metrics.update(var_delta=v["delta"], var_target=v["target"], var_output=v["output"],
                   delta_ratio=v["delta_ratio"], consistent_ratio=1 - v["delta_ratio"])
    metrics["cka"] = linear_cka(test.source_raw, test.target_raw, batch_size=cfg.decompose["cka_batch_size"],
                                seed=cfg.seed)
    metrics["linear_predictivity"] = linear_predictivity(train_d.source, train_d.target, test.source, test.target,
                                                         kernel_size=cfg.fit.kernel_size, batch_size=bs)
    metrics["images"] = len(test.source)
    write_json(paths.metrics("pairs", f"{name}.json"), metrics)
    _write_figure_data(cfg, pair, g, test, paths.decomp(name), root)
    log(f"decompose {name}: Var(x^Δ)/Var(x*) = {v['delta_ratio']:.4f}, "
        + ", ".join(f"Var(x^({k}))={v[f'x{k}']:.4f}" for k in range(g.K + 1))
        + f", CKA {metrics['cka']:.3f}, linear R^2 {metrics['linear_predictivity']:.3f}")
    return metrics


def _write_figure_data(cfg, pair, g, test: studies.PairFeatures, path: Path, root) -> None:
    """A few test images with their features and components (normalised space), for the report."""
    n = min(cfg.decompose["figure_images"], len(test.source))
    rows = np.linspace(0, len(test.source) - 1, n).astype(np.int64) if n else np.zeros(0, np.int64)
    store = features.FeatureStore(Paths(root).features(pair.target))
    base = data.Task([Paths(root).prepared(d) for d in store.meta["datasets"]]).load("test")
    image_index = store.index("test")[test.target.rows[rows]]
    src, tgt = test.source[rows], test.target[rows]
    comps = g.eval().components(src) if n else torch.zeros(g.K + 1, 0, *tgt.shape[1:])
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=base.raw(image_index) if n else np.zeros((0,), np.uint8),
                                labels=test.labels[rows], source=src.numpy().astype(np.float16),
                                target=tgt.numpy().astype(np.float16),
                                components=comps.numpy().astype(np.float16),
                                residual=(tgt - comps.sum(0)).numpy().astype(np.float16))


# ------------------------------------------------------------------------------------------------
# refine (classifier experiments)
# ------------------------------------------------------------------------------------------------
def _upper(root, net: str, layer: str):
    model, _ = load_checkpoint(Paths(root).net(net))
    return split(model, layer)[1]


def _write_refine(root, kind: str, name: str, rows: dict, extra: dict) -> dict:
    out = {**extra, **{f"{row}_accuracy": r["test_accuracy"] for row, r in rows.items()}}
    write_json(Paths(root).metrics("refine", f"{kind}_{name}.json"), out)
    log(f"refine {kind} {name}: " + ", ".join(f"{row} {r['test_accuracy']:.4f}" for row, r in rows.items()))
    return out


def refine_components(cfg: Config, name: str, root=".") -> dict:
    """Stage refine_components@<name>: Table 3 (Exp. 1)."""
    entry = cfg.refine["components"][name]
    pair = cfg.pairs[entry["pair"]]
    g, _ = consistency.load(Paths(root).fit(pair.name))
    rows = studies.refine_components(g, _upper(root, pair.source, pair.source_layer),
                                     _upper(root, pair.target, pair.target_layer),
                                     pair_features(cfg, pair, "train", root), pair_features(cfg, pair, "test", root),
                                     cfg.refine["recipe"], seed=cfg.seed, device=_resolved_device())
    return _write_refine(root, "components", name, rows, {})


def refine_subset(cfg: Config, name: str, root=".") -> dict:
    """Stage refine_subset@<name>: Table 4 (Exp. 2), a classifier for the pair's class subset."""
    entry = cfg.refine["subset"][name]
    pair = cfg.pairs[entry["pair"]]
    g, _ = consistency.load(Paths(root).fit(pair.name))
    classes = _subset_classes(features.FeatureStore(Paths(root).features(pair.source)), pair.classes, root)
    rows = studies.refine_subset(g, _upper(root, pair.source, pair.source_layer),
                                 _upper(root, pair.target, pair.target_layer), classes,
                                 pair_features(cfg, pair, "train", root), pair_features(cfg, pair, "test", root),
                                 cfg.refine["recipe"], seed=cfg.seed, device=_resolved_device())
    return _write_refine(root, "subset", name, rows, {"classes": len(classes)})


def diagnose(cfg: Config, name: str, root=".") -> dict:
    """Stage diagnose@<name>: Section 4.1's two classifier experiments on the weak net."""
    entry = cfg.refine["diagnosis"][name]
    blind, unrel = cfg.pairs[entry["blind_spots"]], cfg.pairs[entry["unreliable"]]
    g_blind, _ = consistency.load(Paths(root).fit(blind.name))
    g_unrel, _ = consistency.load(Paths(root).fit(unrel.name))
    rows = studies.diagnose(g_blind, g_unrel, _upper(root, entry["weak"], blind.source_layer),
                            _upper(root, entry["strong"], blind.target_layer),
                            pair_features(cfg, blind, "train", root), pair_features(cfg, blind, "test", root),
                            pair_features(cfg, unrel, "train", root), pair_features(cfg, unrel, "test", root),
                            cfg.refine["recipe"], seed=cfg.seed, device=_resolved_device())
    return _write_refine(root, "diagnosis", name, rows, {})
