"""What a run will cost, before it starts: ``python -m kc plan params.yaml``.

    python -m kc plan configs/paper.yaml
    stage kind     stages  disk (outputs)  what dominates
    train              12       1.9 GB     checkpoints of 31 nets (largest: vgg16, 538 MB)
    ...

Per stage kind and in total: the number of stages, the bytes their outputs take on disk (feature
stores from the architectures' real map shapes, traced on the meta device without computing, times
the image counts; checkpoints from the parameter counts), and the peak GPU memory of the largest
training batch and the largest fit of g (estimated from shapes: parameters, gradients, optimiser
state and the activations kept for the backward pass). DVC keeps a copy of every cached output in
.dvc/cache (kc uses copies, never links, kc.io), so the disk needed is about twice the outputs; it
warns when the free disk under the repository is smaller. Image counts come from data/prepared when
it is there, else from each dataset's official size (approximate for VOC objects).
"""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kc.archs import INPUT, tap_for
from kc.config import Config, ConfigError, load

# Official sizes (train, test) of each source before max_train/max_test; VOC: objects that are not difficult.
OFFICIAL = {"fashion_mnist": (60000, 10000), "cub200": (5994, 5794), "stanford_dogs": (12000, 8580),
            "voc2012_objects": (13600, 13800), "imagefolder": (None, None)}
CLASSES = {"fashion_mnist": 10, "cub200": 200, "stanford_dogs": 120, "voc2012_objects": 20}


@dataclass
class Line:
    kind: str
    stages: int = 0
    bytes: int = 0
    notes: list[str] = field(default_factory=list)


def _counts(cfg: Config, dataset: str, root: Path) -> tuple[int, int, int | None]:
    """(train images, test images, classes) of a prepared dataset, or its official size limited by params."""
    meta = root / "data" / "prepared" / dataset / "meta.json"
    spec = cfg.datasets[dataset]
    if meta.is_file():
        import json
        m = json.loads(meta.read_text())
        return m["counts"]["train"], m["counts"]["test"], len(m["classes"])
    train, test = OFFICIAL[spec.source]
    if train is None:
        raise ConfigError(f"datasets.{dataset}: image counts of an imagefolder are known only once it is prepared")
    limit = lambda n, cap: n if cap is None else min(n, cap)  # noqa: E731
    return limit(train, spec.max_train), limit(test, spec.max_test), CLASSES.get(spec.source)


def _traced(arch: str, num_classes: int, taps: list[str]) -> tuple[dict[str, tuple[int, int]], int, int]:
    """({tap: (channels, positions) of its map}, parameter bytes, activation bytes kept per image for
    training), traced on the meta device (shapes only, nothing computed)."""
    import torch

    from kc.models import build, split

    channels, size = INPUT[arch]
    model = build(arch, num_classes, channels).to("meta")
    x = torch.empty(1, channels, size, size, device="meta")
    maps = {}
    for tap in taps:
        f = split(model, tap)[0](x)
        maps[tap] = (int(f.shape[1]), int(f[0, 0].numel()))
    saved = 0

    def count(module, inputs, output):
        nonlocal saved
        if torch.is_tensor(output) and not list(module.children()):
            saved += output[0].numel()
    hooks = [m.register_forward_hook(count) for m in model.modules()]
    model(x)
    for h in hooks:
        h.remove()
    params = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    return maps, params * 4, saved * 4


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def plan(cfg: Config, root: str | Path = ".") -> dict:
    root = Path(root)
    bytes_ = {"float16": 2, "float32": 4}[cfg.features["dtype"]]
    lines: dict[str, Line] = {}

    def line(kind: str) -> Line:
        return lines.setdefault(kind, Line(kind))

    prepared = {}
    for name, spec in cfg.datasets.items():
        train, test, classes = _counts(cfg, name, root)
        size = spec.image_size or 224
        ch = 1 if spec.source == "fashion_mnist" else 3
        prepared[name] = (train, test, classes)
        li = line("prepare")
        li.stages += 1
        li.bytes += (train + test) * ch * size * size
    line("check").stages = line("tasks").stages = line("report").stages = 1
    peak_train, peak_fit, fit_note, train_note = 0, 0, "", ""
    traced: dict = {}
    arch_params: dict[str, int] = {}
    for name, pop in cfg.nets.items():
        task = cfg.tasks[pop.task]
        train_all = sum(prepared[d][0] for d in task.datasets)
        test_all = sum(prepared[d][1] for d in task.datasets)
        classes = sum(prepared[d][2] or 2 for d in task.datasets)
        n_train = min(train_all, (task.images_per_class or train_all) * classes)
        n_test = min(test_all, cfg.features["test_images"] or test_all)
        n_fit = min(train_all, cfg.features["train_images"])
        taps = sorted({tap_for(pop.arch, layer, r) for layer in pop.layers for r in ("paper", "authors")
                       if r == cfg.reading or name in cfg.raw.get("readings", [])})
        key = (pop.arch, classes, tuple(taps))
        if key not in traced:
            traced[key] = _traced(pop.arch, len(task.groups) if task.groups else classes, taps)
        maps, param_bytes, act_bytes = traced[key]
        n = len(pop.nets)
        tr = line("train")
        tr.stages += 1
        tr.bytes += n * param_bytes
        ft = line("features")
        ft.stages += 1
        ft.bytes += n * sum(c * hw for c, hw in maps.values()) * bytes_ * (n_fit + n_train + n_test)
        batch = pop.recipe.batch_size
        mem = param_bytes * 4 + act_bytes * batch // 2      # weights, grads, momentum, copy; bf16 activations
        if mem > peak_train:
            peak_train, train_note = mem, f"{pop.arch}, batch {batch}"
        for tap, (c, hw) in maps.items():
            # g: K+1 convolutions C -> C over the map; every branch's activations kept for the backward pass
            g_params = (cfg.K + 1) * c * c * cfg.fit.kernel_size ** 2
            g_mem = g_params * 4 * 4 + cfg.fit.batch_size * (3 * cfg.K + 3) * c * hw * 4 * 2
            if g_mem > peak_fit:
                side = int(round(hw ** 0.5))
                peak_fit, fit_note = g_mem, f"{c}x{side}x{side} maps of {pop.arch}, batch {cfg.fit.batch_size}"
        arch_params[name] = param_bytes
    study_stages = {"stability": len(cfg.studies["stability"]), "readings": len(cfg.studies["readings"]),
                    "refine_components": len(cfg.studies["refinement"]["components"]),
                    "refine_subset": len(cfg.studies["refinement"]["subset"]),
                    "diagnose": len(cfg.studies["diagnosis"]), "prune": len(cfg.studies["compression"]),
                    "compression": len(cfg.studies["compression"]), "distill": len(cfg.studies["born_again"]),
                    "born_again": len(cfg.studies["born_again"]), "cross_task": len(cfg.studies["cross_task"]),
                    "overfitting": len(cfg.studies["overfitting"]), "sweep": len(cfg.studies["sweep"]),
                    "compare": len(cfg.studies["compare"])}
    for kind, count in study_stages.items():
        if count:
            line(kind).stages = count
    for study, kind, per in (("compression", "prune", lambda e: len(e["thresholds"])),
                             ("born_again", "distill", lambda e: len(e["seeds"]))):
        for e in cfg.studies[study].values():
            line(kind).bytes += per(e) * arch_params[e["nets"]]
    total = sum(li.bytes for li in lines.values())
    free = shutil.disk_usage(root if root.exists() else Path(".")).free
    return {"lines": list(lines.values()), "total_bytes": total, "with_cache": 2 * total, "free": free,
            "stages": sum(li.stages for li in lines.values()), "peak_train": peak_train, "train_note": train_note,
            "peak_fit": peak_fit, "fit_note": fit_note}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m kc plan PARAMS.yaml", file=sys.stderr)
        return 2
    try:
        cfg = load(argv[0])
        p = plan(cfg, Path("."))
    except ConfigError as exc:
        print(f"kc: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(f"{argv[0]}: {p['stages']} stages")
    print(f"{'stage kind':<18}{'stages':>7}  {'outputs on disk':>16}")
    for li in p["lines"]:
        print(f"{li.kind:<18}{li.stages:>7}  {gib(li.bytes) if li.bytes else '–':>16}")
    print(f"{'total':<18}{p['stages']:>7}  {gib(p['total_bytes']):>16}  (x2 with DVC's cache: {gib(p['with_cache'])})")
    print(f"peak GPU memory: training {gib(p['peak_train'])} ({p['train_note']}); fitting g {gib(p['peak_fit'])} "
          f"({p['fit_note']})")
    print(f"free disk here: {gib(p['free'])}")
    if p["free"] < p["with_cache"]:
        print(f"warning: the run needs about {gib(p['with_cache'])} but only {gib(p['free'])} is free", file=sys.stderr)
    return 0
