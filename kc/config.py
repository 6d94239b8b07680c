"""params.yaml -> a validated, typed config; a bad value fails before any work, naming its key path.

    cfg = load("params.yaml")              # ConfigError("lam: must be a number >= 0, got -1")
    cfg.nets["vgg_s"].nets                  # the population's nets: vgg_s_seed0, ..., vgg_s_split0_half1, ...
    cfg.studies["stability"]               # each study parses its own section (kc.studies.<name>.parse)

Command line: ``python -m kc check params.yaml`` validates the whole file. A stage parses the core
sections and its own study's section only (``load(path, studies=["stability"])``), so that it
imports, and DVC lists as dependencies, only the code it runs; the `check` stage, upstream of every
other stage, validates everything first.

This module imports no torch: validating params is fast.
"""
from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kc.archs import ARCHS, READINGS, TAPS
from kc.data.catalog import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, VOC_CLASSES, slug

NAME = re.compile(r"[a-z0-9_]+")
SOURCES = ("fashion_mnist", "cub200", "stanford_dogs", "voc2012_objects", "imagefolder")
SCHEDULES = ("cosine", "step", "constant")
# Class names known without reading the data (others are checked when the data is prepared).
STATIC_CLASSES = {"fashion_mnist": [slug(c) for c in FASHION_MNIST_CLASSES],
                  "voc2012_objects": [slug(c) for c in VOC_CLASSES]}
# The studies, in report order; each is kc.studies.<name> and owns params section <name>.
STUDIES = ("stability", "readings", "refinement", "diagnosis", "compression", "born_again", "cross_task",
           "overfitting", "sweep", "compare")


class ConfigError(ValueError):
    """A bad params file: the message starts with the key path (or the file)."""


_MISSING = object()


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ConfigError(f"{where}: names must match [a-z0-9_]+ (they become file and stage names), got {show(value)}")
    return value


class Section:
    """Reads the keys of one mapping, tracking the key path for messages and rejecting unknown keys."""

    def __init__(self, data: Any, path: str):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path or 'params'}: must be a mapping, got {show(data)}")
        self.data, self.path = data, path

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str, default: Any = _MISSING) -> Any:
        if name not in self.data:
            if default is _MISSING:
                raise ConfigError(f"{self.key(name)}: missing (required)")
            return default
        return self.data[name]

    def done(self, allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(self.data) - set(allowed), key=str)
        if unknown:
            raise ConfigError(f"{self.key(str(unknown[0]))}: unknown key; allowed here: {', '.join(allowed)}")

    def sub(self, name: str, default: Any = _MISSING) -> "Section":
        return Section(self.get(name, default), self.key(name))

    def int(self, name, default=_MISSING, minimum=None, allow_none=False) -> int | None:
        value = self.get(name, default)
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            bound = f" >= {minimum}" if minimum is not None else ""
            raise ConfigError(f"{self.key(name)}: must be an integer{bound}{' or null' if allow_none else ''}, "
                              f"got {show(value)}")
        return value

    def number(self, name, default=_MISSING, minimum=None, positive=False) -> float:
        value = self.get(name, default)
        bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
        if not bad and ((minimum is not None and value < minimum) or (positive and value <= 0)):
            bad = True
        if bad:
            bound = " > 0" if positive else f" >= {minimum}" if minimum is not None else ""
            raise ConfigError(f"{self.key(name)}: must be a finite number{bound}, got {show(value)}")
        return float(value)

    def str(self, name, default=_MISSING, choices=None) -> str:
        value = self.get(name, default)
        if not isinstance(value, str) or (choices is not None and value not in choices):
            allowed = f" (one of {', '.join(choices)})" if choices else ""
            raise ConfigError(f"{self.key(name)}: must be a string{allowed}, got {show(value)}")
        return value

    def bool(self, name, default=_MISSING) -> bool:
        value = self.get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.key(name)}: must be true or false, got {show(value)}")
        return value

    def name(self, name, names: dict | None = None, what: str = "name") -> str:
        value = check_name(self.get(name), self.key(name))
        if names is not None and value not in names:
            raise ConfigError(f"{self.key(name)}: unknown {what} {value!r}; defined: {', '.join(names) or 'none'}")
        return value

    def names(self, name, names: dict, what: str, default=_MISSING, minimum: int = 1) -> list[str]:
        value = self.get(name, default)
        if not isinstance(value, list) or len(value) < minimum:
            raise ConfigError(f"{self.key(name)}: must be a list of at least {minimum} {what} name(s), got {show(value)}")
        for i, v in enumerate(value):
            check_name(v, f"{self.key(name)}[{i}]")
            if v not in names:
                raise ConfigError(f"{self.key(name)}[{i}]: unknown {what} {v!r}; defined: {', '.join(names) or 'none'}")
        if len(set(value)) != len(value):
            raise ConfigError(f"{self.key(name)}: a {what} is listed twice")
        return list(value)

    def numbers(self, name, default=_MISSING, minimum=None, positive=False, at_least: int = 1) -> list[float]:
        value = self.get(name, default)
        if not isinstance(value, list) or len(value) < at_least:
            raise ConfigError(f"{self.key(name)}: must be a list of at least {at_least} number(s), got {show(value)}")
        holder = Section({str(i): v for i, v in enumerate(value)}, self.key(name))
        out = [holder.number(str(i), minimum=minimum, positive=positive) for i in range(len(value))]
        return out

    def ints(self, name, default=_MISSING, minimum=None, at_least: int = 1) -> list[int]:
        value = self.get(name, default)
        if not isinstance(value, list) or len(value) < at_least:
            raise ConfigError(f"{self.key(name)}: must be a list of at least {at_least} integer(s), got {show(value)}")
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, int) or (minimum is not None and v < minimum):
                raise ConfigError(f"{self.key(name)}[{i}]: must be an integer{f' >= {minimum}' if minimum is not None else ''}, "
                                  f"got {show(v)}")
        if len(set(value)) != len(value):
            raise ConfigError(f"{self.key(name)}: a value is listed twice")
        return list(value)

    def entries(self, name, default=_MISSING) -> dict:
        """A mapping of named entries (names checked); None and {} mean no entries."""
        value = self.get(name, default)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{self.key(name)}: must be a mapping of named entries, got {show(value)}")
        for key in value:
            check_name(key, f"{self.key(name)}.{key}")
        return value


# ------------------------------------------------------------------------------------------------
# Specs of the core sections
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetSpec:
    name: str
    source: str
    root: str
    image_size: int | None = None
    max_train: int | None = None
    max_test: int | None = None
    download: bool = False
    skip_difficult: bool = True
    num_workers: int = 0


@dataclass(frozen=True)
class TaskSpec:
    name: str
    datasets: tuple[str, ...]
    classes: tuple | None = None
    groups: dict | None = None
    images_per_class: int | None = None     # per class of the datasets; None: every prepared training image

    def as_dict(self) -> dict:
        return {"name": self.name, "datasets": list(self.datasets),
                "classes": list(self.classes) if self.classes is not None else None,
                "groups": self.groups, "images_per_class": self.images_per_class}


@dataclass(frozen=True)
class Recipe:
    """How a backbone is trained: SGD with momentum and a schedule, no augmentation (the paper's regime)."""
    epochs: int = 60
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule")}


@dataclass(frozen=True)
class NetSpec:
    """One trained net. ``split``: "full", or "split<i>_half<h>" (half h of the i-th random division)."""
    name: str
    set: str                         # the population (or study-owned set) it belongs to
    arch: str
    task: str
    seed: int
    recipe: Recipe
    split: str = "full"
    kind: str = "scratch"            # scratch | pruned | distilled
    parent: "NetSpec | None" = None  # pruned: the net pruned; distilled: the teacher
    threshold: float | None = None
    generation: int = 0

    @property
    def half(self) -> tuple[int, int] | None:
        if self.split == "full":
            return None
        i, h = self.split.split("_")
        return int(i[5:]), int(h[4:])


@dataclass(frozen=True)
class Population:
    """Nets that differ only in their seed (Case 1) or their half of the data (Case 2, Section 4.2)."""
    name: str
    arch: str
    task: str
    seeds: tuple[int, ...]
    halves: tuple[tuple[int, int], ...]
    recipe: Recipe
    layers: tuple[str, ...]

    @property
    def nets(self) -> list[NetSpec]:
        out = [NetSpec(f"{self.name}_seed{s}", self.name, self.arch, self.task, s, self.recipe) for s in self.seeds]
        for i, seeds in enumerate(self.halves):
            out += [NetSpec(f"{self.name}_split{i}_half{h}", self.name, self.arch, self.task, s, self.recipe,
                            split=f"split{i}_half{h}") for h, s in enumerate(seeds)]
        return out

    @property
    def seed_nets(self) -> list[NetSpec]:
        return [n for n in self.nets if n.split == "full"]

    @property
    def primary(self) -> NetSpec:
        """The net the single-net studies use (compression, born-again, diagnosis, ...): the first seed."""
        return self.nets[0]

    def net(self, name: str) -> NetSpec:
        for n in self.nets:
            if n.name == name:
                return n
        raise KeyError(name)


@dataclass(frozen=True)
class FitSpec:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    kernel_size: int = 3


@dataclass(frozen=True)
class ClassifierSpec:
    """The one recipe of every classifier row of Tables 3-4 and Section 4.1 (baselines included)."""
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seeds: tuple[int, ...] = (0, 1, 2)


@dataclass
class Config:
    seed: int
    reading: str
    lam: float
    lam_by_arch: dict[str, float]
    K: int
    datasets: dict[str, DatasetSpec]
    tasks: dict[str, TaskSpec]
    train: Recipe
    nets: dict[str, Population]
    features: dict
    fit: FitSpec
    classifier: ClassifierSpec
    report: dict
    studies: dict[str, Any] = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False)

    def lam_for(self, source_arch: str, target_arch: str) -> float:
        """λ of Eq. 2 for a pair: the paper uses 8.0 "for AlexNet features", 0.1 elsewhere (Section 4)."""
        values = [self.lam_by_arch[a] for a in (source_arch, target_arch) if a in self.lam_by_arch]
        return max(values) if values else self.lam

    def population(self, name: str) -> Population:
        return self.nets[name]


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------
class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (DVC refuses such files too)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} is given twice in one mapping")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_params(path: str | Path) -> dict:
    """The params file as data; ConfigError naming the file for anything unreadable."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a params file (e.g. params.yaml)")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such params file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); params files are UTF-8 YAML") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    return data


def load(path: str | Path = "params.yaml", studies: tuple[str, ...] | list[str] | None = None) -> Config:
    """Read and validate a params file; ``studies``: which study sections to parse (None: all)."""
    return parse(read_params(path), studies)


TOP_KEYS = ("seed", "reading", "lam", "lam_by_arch", "K", "datasets", "tasks", "train", "nets", "features",
            "fit", "classifier", "report") + STUDIES


def parse(data: Any, studies: tuple[str, ...] | list[str] | None = None) -> Config:
    root = Section(data, "")
    root.done(TOP_KEYS)
    datasets = _datasets(root)
    tasks = _tasks(root, datasets)
    train = _recipe(root.sub("train"), Recipe(), "train")
    lam_by_arch = {}
    by_arch = root.sub("lam_by_arch")
    by_arch.done(ARCHS)
    for arch in by_arch.data:
        lam_by_arch[arch] = by_arch.number(arch, minimum=0)
    cfg = Config(seed=root.int("seed", minimum=0), reading=root.str("reading", choices=READINGS),
                 lam=root.number("lam", minimum=0), lam_by_arch=lam_by_arch, K=root.int("K", minimum=0),
                 datasets=datasets, tasks=tasks, train=train, nets=_populations(root, tasks, train),
                 features=_features(root), fit=_fit(root), classifier=_classifier(root), report=_report(root),
                 raw=data)
    for name in STUDIES:   # dvc.yaml iterates over every study section: each must be there
        if not root.has(name):
            raise ConfigError(f"{name}: missing (dvc.yaml runs a stage per entry; give an empty {{}} or [] to run none)")
    for name in (STUDIES if studies is None else studies):
        if name not in STUDIES:
            raise ValueError(f"unknown study {name!r}; studies: {', '.join(STUDIES)}")
        module = importlib.import_module(f"kc.studies.{name}")
        cfg.studies[name] = module.parse(root.get(name, None), cfg)
    return cfg


def _datasets(root: Section) -> dict[str, DatasetSpec]:
    out = {}
    entries = root.entries("datasets")
    if not entries:
        raise ConfigError("datasets: define at least one dataset")
    for name in entries:
        s = root.sub("datasets").sub(name)
        s.done(("source", "root", "image_size", "max_train", "max_test", "download", "skip_difficult", "num_workers"))
        source = s.str("source", choices=SOURCES)
        if s.get("download", False) is True and source != "fashion_mnist":
            raise ConfigError(f"{s.key('download')}: only fashion_mnist can be downloaded; {source} must be "
                              "extracted by hand into root (the error of its prepare stage says how)")
        default_root = FASHION_MNIST_ROOT if source == "fashion_mnist" else _MISSING
        out[name] = DatasetSpec(name=name, source=source, root=s.str("root", default_root),
                                image_size=s.int("image_size", None, minimum=8, allow_none=True),
                                max_train=s.int("max_train", None, minimum=2, allow_none=True),
                                max_test=s.int("max_test", None, minimum=1, allow_none=True),
                                download=s.bool("download", False), skip_difficult=s.bool("skip_difficult", True),
                                num_workers=s.int("num_workers", 0, minimum=0))
    return out


def class_names(datasets: dict[str, DatasetSpec], names) -> list[str] | None:
    """The label space of a mix of datasets, when known without reading the data."""
    out = []
    for name in names:
        static = STATIC_CLASSES.get(datasets[name].source)
        if static is None:
            return None
        out += static
    return out


def check_classes(values: Any, where: str, known: list[str] | None, datasets) -> list:
    """Class names, indices, or "dataset:<name>" (all classes of one dataset of the task's mix)."""
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: must be a non-empty list of class names or indices, got {show(values)}")
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ConfigError(f"{where}[{i}]: must be a class name or index, got {show(value)}")
        if isinstance(value, str) and value.startswith("dataset:"):
            if value[8:] not in datasets:
                raise ConfigError(f"{where}[{i}]: {value!r} names no dataset of this task ({', '.join(datasets)})")
            continue
        if known is not None:
            if isinstance(value, int) and not 0 <= value < len(known):
                raise ConfigError(f"{where}[{i}]: class index {value} out of range 0..{len(known) - 1}")
            if isinstance(value, str) and slug(value) not in known:
                raise ConfigError(f"{where}[{i}]: unknown class {value!r}; valid: {', '.join(known)}")
    if len(set(map(str, values))) != len(values):
        raise ConfigError(f"{where}: a class is listed twice")
    return values


def _tasks(root: Section, datasets: dict[str, DatasetSpec]) -> dict[str, TaskSpec]:
    out = {}
    for name in root.entries("tasks"):
        s = root.sub("tasks").sub(name)
        s.done(("datasets", "classes", "groups", "images_per_class"))
        names = s.get("datasets")
        if not isinstance(names, list) or not names:
            raise ConfigError(f"{s.key('datasets')}: must be a non-empty list of dataset names, got {show(names)}")
        for i, d in enumerate(names):
            if d not in datasets:
                raise ConfigError(f"{s.key('datasets')}[{i}]: unknown dataset {d!r}; defined: {', '.join(datasets)}")
        known = class_names(datasets, names)
        classes, groups = s.get("classes", None), s.get("groups", None)
        if classes is not None and groups is not None:
            raise ConfigError(f"{s.key('groups')}: give either classes or groups, not both")
        if classes is not None:
            check_classes(classes, s.key("classes"), known, names)
        if groups is not None:
            g = s.entries("groups")
            if len(g) < 2:
                raise ConfigError(f"{s.key('groups')}: needs at least two groups")
            seen: set = set()
            for group, members in g.items():
                check_classes(members, f"{s.key('groups')}.{group}", known, names)
                for m in members:
                    key = slug(m) if isinstance(m, str) else (known[m] if known else m)
                    if key in seen:
                        raise ConfigError(f"{s.key('groups')}.{group}: class {m!r} is in two groups")
                    seen.add(key)
        out[name] = TaskSpec(name=name, datasets=tuple(names), classes=tuple(classes) if classes else None,
                             groups=groups, images_per_class=s.int("images_per_class", None, minimum=1, allow_none=True))
    if not out:
        raise ConfigError("tasks: define at least one task")
    return out


def _recipe(s: Section, base: Recipe, where: str) -> Recipe:
    s.done(("epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule"))
    return Recipe(epochs=s.int("epochs", base.epochs, minimum=1), batch_size=s.int("batch_size", base.batch_size, minimum=1),
                  lr=s.number("lr", base.lr, positive=True), momentum=s.number("momentum", base.momentum, minimum=0),
                  weight_decay=s.number("weight_decay", base.weight_decay, minimum=0),
                  schedule=s.str("schedule", base.schedule, choices=SCHEDULES))


def recipe_with(base: Recipe, s: Section) -> Recipe:
    """``base`` with the keys of ``s`` overriding it (e.g. a study's retraining recipe)."""
    return _recipe(s, base, s.path)


def _populations(root: Section, tasks: dict[str, TaskSpec], train: Recipe) -> dict[str, Population]:
    out: dict[str, Population] = {}
    net_names: dict[str, str] = {}
    for name in root.entries("nets"):
        s = root.sub("nets").sub(name)
        s.done(("arch", "task", "seeds", "halves", "train", "layers"))
        arch = s.str("arch", choices=ARCHS)
        task = s.name("task", tasks, "task")
        seeds = s.ints("seeds", minimum=0)
        halves = s.get("halves", [])
        if not isinstance(halves, list) or any(not isinstance(h, list) or len(h) != 2 for h in halves):
            raise ConfigError(f"{s.key('halves')}: must be a list of [seed of half 0, seed of half 1] pairs "
                              f"(one per random division of the training set), got {show(halves)}")
        for i, h in enumerate(halves):
            Section({"0": h[0], "1": h[1]}, f"{s.key('halves')}[{i}]").int("0", minimum=0)
            Section({"0": h[0], "1": h[1]}, f"{s.key('halves')}[{i}]").int("1", minimum=0)
        layers = s.get("layers")
        if not isinstance(layers, list) or not layers or not all(isinstance(v, str) for v in layers):
            raise ConfigError(f"{s.key('layers')}: must be a non-empty list of layer names, got {show(layers)}")
        for i, layer in enumerate(layers):
            check_layer(arch, layer, f"{s.key('layers')}[{i}]")
        if len(set(layers)) != len(layers):
            raise ConfigError(f"{s.key('layers')}: a layer is listed twice")
        pop = Population(name=name, arch=arch, task=task, seeds=tuple(seeds), halves=tuple(tuple(h) for h in halves),
                         recipe=_recipe(s.sub("train", {}), train, s.key("train")), layers=tuple(layers))
        for net in pop.nets:
            if net.name in net_names or net.name in out:
                raise ConfigError(f"{s.path}: net name {net.name!r} is also made by nets.{net_names.get(net.name, net.name)}")
            net_names[net.name] = name
        out[name] = pop
    if not out:
        raise ConfigError("nets: define at least one population of nets")
    for name in out:
        if name in net_names:
            raise ConfigError(f"nets.{name}: the population's name is also the name of a net of nets.{net_names[name]}")
    return out


def check_layer(arch: str, layer: str, where: str) -> None:
    """An alias of ``arch`` (also _pre / _post), or a torchvision graph-node name of it."""
    if layer in TAPS[arch] or layer in {f"{a}{s}" for a in TAPS[arch] for s in ("_pre", "_post")}:
        return
    if not isinstance(layer, str) or not re.fullmatch(r"[A-Za-z0-9_.]+", layer):
        raise ConfigError(f"{where}: bad layer name {show(layer)}")
    if layer in _node_names(arch):
        return
    raise ConfigError(f"{where}: unknown layer {layer!r} for {arch}; aliases: {', '.join(TAPS[arch])} "
                      "(each also as <alias>_pre / <alias>_post), or a graph-node name from kc.models.node_names")


_NODE_NAMES: dict[str, set] = {}


def _node_names(arch: str) -> set:
    if arch not in _NODE_NAMES:
        from kc.models import build, node_names  # torch: only for layers that are not aliases
        names = set(node_names(build(arch, 2)))
        names |= {n.rsplit(".", i)[0] for n in names for i in range(1, n.count(".") + 1)}  # module prefixes
        _NODE_NAMES[arch] = names
    return _NODE_NAMES[arch]


def _features(root: Section) -> dict:
    s = root.sub("features")
    s.done(("train_images", "test_images", "batch_size", "dtype"))
    return {"train_images": s.int("train_images", minimum=4), "test_images": s.int("test_images", None, minimum=4, allow_none=True),
            "batch_size": s.int("batch_size", 256, minimum=1), "dtype": s.str("dtype", "float16", choices=("float16", "float32"))}


def _fit(root: Section) -> FitSpec:
    s = root.sub("fit")
    s.done(("epochs", "batch_size", "lr", "kernel_size"))
    d = FitSpec()
    return FitSpec(epochs=s.int("epochs", d.epochs, minimum=1), batch_size=s.int("batch_size", d.batch_size, minimum=1),
                   lr=s.number("lr", d.lr, positive=True), kernel_size=s.int("kernel_size", d.kernel_size, minimum=1))


def _classifier(root: Section) -> ClassifierSpec:
    s = root.sub("classifier")
    s.done(("epochs", "batch_size", "lr", "momentum", "weight_decay", "seeds"))
    d = ClassifierSpec()
    return ClassifierSpec(epochs=s.int("epochs", d.epochs, minimum=1), batch_size=s.int("batch_size", d.batch_size, minimum=1),
                          lr=s.number("lr", d.lr, positive=True), momentum=s.number("momentum", d.momentum, minimum=0),
                          weight_decay=s.number("weight_decay", d.weight_decay, minimum=0),
                          seeds=tuple(s.ints("seeds", list(d.seeds), minimum=0)))


def _report(root: Section) -> dict:
    s = root.sub("report")
    s.done(("channel", "figure_images", "draws"))
    return {"channel": s.int("channel", -1, minimum=-1), "figure_images": s.int("figure_images", 4, minimum=0),
            "draws": s.int("draws", 2000, minimum=100)}


# ------------------------------------------------------------------------------------------------
# Helpers for study sections
# ------------------------------------------------------------------------------------------------
def population_layer(cfg: Config, s: Section, pop_key: str = "nets", layer_key: str = "layer") -> tuple[Population, str]:
    """A study entry's population and one of its stored layers."""
    pop = cfg.nets[s.name(pop_key, cfg.nets, "population of nets")]
    layer = s.str(layer_key)
    if layer not in pop.layers:
        raise ConfigError(f"{s.key(layer_key)}: layer {layer!r} is not stored for nets.{pop.name}; add it to "
                          f"nets.{pop.name}.layers (now: {list(pop.layers)})")
    return pop, layer


def same_images(cfg: Config, a: Population, b: Population, where: str) -> None:
    """Pairs compare features of the same images: the two nets' tasks must use the same datasets."""
    if cfg.tasks[a.task].datasets != cfg.tasks[b.task].datasets:
        raise ConfigError(f"{where}: nets.{a.name} and nets.{b.name} must see the same images: their tasks use "
                          f"datasets {list(cfg.tasks[a.task].datasets)} and {list(cfg.tasks[b.task].datasets)}")
