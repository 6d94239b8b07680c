"""Stage train@<population>, and the making of every net the studies compare.

    python stages/train.py vgg_s       # data/nets/vgg_s/*.pt, metrics/nets/vgg_s.json, results/nets/vgg_s.npz

A population (params ``nets.<name>``) is a set of nets that differ only in their seed (Case 1 of
Section 4.2) or in their half of the training data (Case 2). Each net is seeded (its init, batch
order and dropout), trained from scratch without augmentation on its task's training images
(kc.pipeline.tasks), then evaluated: accuracy on its own training images (eval mode) and on the
test images, with the per-image test correctness kept for paired comparisons. Training is
deterministic on one machine; finished nets of an interrupted stage are reused (kc.pipeline.journal).
Pruned and distilled nets (Sections 4.4-4.5) are made here too, for the studies that own them.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from kc.config import Config, NetSpec, Recipe
from kc.io import atomic_dir, write_json, write_npz
from kc.models import build, split
from kc.paths import Paths
from kc.pipeline.env import device, is_main_process, log
from kc.pipeline.journal import Journal
from kc.pipeline.tasks import manifest, net_data
from kc.pipeline.workers import map_items
from kc.train import (TrainConfig, apply_masks, evaluate, load_checkpoint, prune_masks, pruned_fraction,
                      save_checkpoint, train)

CODE = ("kc/train.py", "kc/models.py", "kc/archs.py", "kc/pipeline/nets.py", "kc/pipeline/tasks.py",
        "kc/data/images.py", "kc/data/tasks.py", "kc/data/splits.py")


def train_config(recipe: Recipe, seed: int) -> TrainConfig:
    return TrainConfig(epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, momentum=recipe.momentum,
                       weight_decay=recipe.weight_decay, schedule=recipe.schedule, seed=seed, device=device())


def record(net: NetSpec) -> dict:
    """What a checkpoint records of how its net was made."""
    return {"net": net.name, "set": net.set, "arch": net.arch, "task": net.task, "seed": net.seed, "split": net.split,
            "kind": net.kind, "recipe": net.recipe.as_dict(), "parent": net.parent.name if net.parent else None,
            "threshold": net.threshold, "generation": net.generation}


def fresh(net: NetSpec, task) -> torch.nn.Module:
    """A freshly initialised net, seeded by the net's own seed."""
    torch.manual_seed(net.seed)
    return build(net.arch, task.num_classes, task.channels)


def finish(net: NetSpec, model: torch.nn.Module, task, train_set, test_set, history: list[dict], path: Path,
           extra: dict | None = None) -> tuple[dict, np.ndarray]:
    """Evaluate a trained net (training images in eval mode; test images per image), save its checkpoint."""
    dev = device()
    on_train = evaluate(model, train_set, device=dev)
    on_test = evaluate(model, test_set, device=dev, per_image=True)
    metrics = {"train_accuracy": on_train["accuracy"], "test_accuracy": on_test["accuracy"],
               "gap": on_train["accuracy"] - on_test["accuracy"], "test_loss": on_test["loss"],
               "train_loss": on_train["loss"], "epochs": len(history), "train_images": len(train_set),
               **(extra or {})}
    save_checkpoint(path, model, arch=net.arch, num_classes=task.num_classes, in_channels=task.channels,
                    config=record(net), history=history, metrics=metrics, classes=list(task.classes))
    return metrics, on_test["correct"]


def load_net(root, net: NetSpec) -> tuple[torch.nn.Module, dict]:
    return load_checkpoint(Paths(root).net(net.set, net.name))


def upper_layers(root, net: NetSpec, layer: str) -> torch.nn.Module:
    """The layers of ``net`` above ``layer`` (an explicit tap), as a module of their own."""
    model, _ = load_net(root, net)
    return split(model, layer)[1]


@contextlib.contextmanager
def _output_dir(path: Path):
    """atomic_dir on the main process; a throwaway folder on the other ranks of a DDP run."""
    if is_main_process():
        with atomic_dir(path) as tmp:
            yield tmp
    else:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            yield Path(tmp)


def make_nets(cfg: Config, set_name: str, nets: list[NetSpec], maker, root=".", stage: str = "",
              sequential: bool = False) -> dict:
    """Make each net of a set with ``maker(net, path) -> (metrics, correct)``, side by side on the CPU
    (kc.pipeline.workers; one after the other with ``sequential``, e.g. born-again generations),
    reusing journal entries, and write data/nets/<set>/, results/nets/<set>/, metrics/nets/<set>.json."""
    paths = Paths(root)
    journal = Journal(root, stage or f"nets@{set_name}", CODE)
    metrics, correct = {}, {}
    with _output_dir(paths.nets(set_name)) as out:
        todo = []
        for net in nets:
            key = journal.key(net=record(net), parent=net.parent and record(net.parent), seed=cfg.seed,
                              task=manifest(cfg, net.task, root), device=device())
            cached = journal.get(key, ".pt")
            if cached is not None and journal.get(key, ".npz") is not None:
                blob = torch.load(cached, map_location="cpu", weights_only=True)
                (out / f"{net.name}.pt").write_bytes(cached.read_bytes())
                metrics[net.name] = blob["metrics"]
                correct[net.name] = np.load(journal.get(key, ".npz"))["correct"]
                log(f"{net.name}: reused from an interrupted run ({journal.dir})")
            else:
                todo.append((net, key))

        def make(item):
            net, key = item
            result = maker(net, out / f"{net.name}.pt")
            if is_main_process():                       # journal it at once: a killed stage keeps it
                journal.put(key, out / f"{net.name}.pt", ".pt")
                np.savez(out / f".{net.name}.correct.npz", correct=result[1])
                journal.put(key, out / f".{net.name}.correct.npz", ".npz")
                (out / f".{net.name}.correct.npz").unlink()
            return result
        # one after the other (each may learn from the one before): in this process, with all its threads
        done = [make(item) for item in todo] if sequential else map_items(make, todo, device())
        for (net, _), (m, c) in zip(todo, done):
            metrics[net.name], correct[net.name] = m, c
            log(f"{net.name}: train accuracy {m['train_accuracy']:.4f}, test {m['test_accuracy']:.4f} "
                f"on {m['train_images']} training images")
        metrics = {n.name: metrics[n.name] for n in nets}
        correct = {n.name: correct[n.name] for n in nets}
    if is_main_process():
        with atomic_dir(paths.net_results(set_name)) as folder:
            write_json(folder / "metrics.json", metrics)
            write_npz(folder / "correct.npz", **correct)
        write_json(paths.metrics("nets", set_name), metrics)
        journal.clear()
    return metrics


def train_population(cfg: Config, name: str, root=".") -> dict:
    """Stage train@<population>: every net of the population, from scratch."""
    pop = cfg.nets[name]

    def maker(net: NetSpec, path: Path):
        task, train_set, test_set = net_data(cfg, net, root)
        model = fresh(net, task)
        result = train(model, train_set, None, train_config(net.recipe, net.seed))
        return finish(net, model, task, train_set, test_set, result["history"], path)
    return make_nets(cfg, name, pop.nets, maker, root, f"train@{name}")


# ------------------------------------------------------------------------------------------------
# Pruned and distilled nets (Sections 4.4 and 4.5)
# ------------------------------------------------------------------------------------------------
def pruned(parent: NetSpec, threshold: float, recipe: Recipe, set_name: str) -> NetSpec:
    """The spec of ``parent`` pruned at ``threshold`` (x each layer's weight std) and retrained."""
    tag = f"{threshold:g}".replace(".", "")
    return replace(parent, name=f"{parent.name}_prune{tag}", set=set_name, kind="pruned", parent=parent,
                   threshold=threshold, recipe=recipe)


def prune(cfg: Config, net: NetSpec, path: Path, root=".") -> tuple[dict, np.ndarray]:
    """Magnitude pruning of net.parent (Han et al. 2016), survivors retrained with the mask held."""
    model, parent = load_net(root, net.parent)
    task, train_set, test_set = net_data(cfg, net.parent, root)
    dev = device()
    before = parent["metrics"]["test_accuracy"]
    masks = prune_masks(model, net.threshold)
    apply_masks(model, masks)
    fraction = pruned_fraction(model)
    after_pruning = evaluate(model, test_set, device=dev)["accuracy"]
    result = train(model, train_set, None, train_config(net.recipe, net.seed), masks=masks)
    if pruned_fraction(model) < fraction - 1e-12:
        raise RuntimeError(f"{net.name}: pruned weights came back during retraining")
    return finish(net, model, task, train_set, test_set, result["history"], path,
                  {"pruned_fraction": fraction, "threshold": net.threshold, "parent_accuracy": before,
                   "accuracy_after_pruning": after_pruning})


def generation(teacher: NetSpec, seed: int, set_name: str) -> NetSpec:
    """The spec of the born-again student of ``teacher`` (one generation later)."""
    g = teacher.generation + 1
    return replace(teacher, name=f"{set_name}_gen{g}", set=set_name, kind="distilled", parent=teacher, seed=seed,
                   generation=g, threshold=None)


def distill(cfg: Config, net: NetSpec, path: Path, alpha: float, tau: float, root=".") -> tuple[dict, np.ndarray]:
    """A born-again generation: a fresh net trained with CE + alpha * KD(tau) against its teacher (footnote 3)."""
    teacher, _ = load_checkpoint(path.parent / f"{net.parent.name}.pt") if net.parent.generation else load_net(root, net.parent)
    task, train_set, test_set = net_data(cfg, net, root)
    model = fresh(net, task)
    result = train(model, train_set, None, train_config(net.recipe, net.seed), teacher=teacher, kd_alpha=alpha, kd_tau=tau)
    return finish(net, model, task, train_set, test_set, result["history"], path, {"generation": net.generation})
