"""params.yaml -> a validated, typed config; a bad value fails before any work, naming its key path.

    cfg = load("params.yaml")           # ConfigError("pairs.x.lam: must be a number >= 0, got -1")
    cfg.pairs["prune_050"].source       # 'vgg_s_prune050'
    cfg.nets["vgg_s_gen3"].arch         # 'vgg_s' (followed through the born-again chain)

Command line: ``python -m kc check params.yaml`` validates and summarises the file.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kc.data import FASHION_MNIST_CLASSES, SOURCES, VOC_CLASSES, slug
from kc import paper
from kc.models import ALIASES, ARCHS
from kc.train import TrainConfig

NAME_RE = re.compile(r"^[a-z0-9_]+$")
SPLITS = ("full", "half0", "half1")
# Class names known without reading the data (others are checked when the data is prepared).
STATIC_CLASSES = {"fashion_mnist": [slug(c) for c in FASHION_MNIST_CLASSES],
                  "voc2012_objects": [slug(c) for c in VOC_CLASSES]}


class ConfigError(ValueError):
    """A bad params file: the message starts with the key path."""


_MISSING = object()


class _Section:
    """Reads keys of one mapping, tracking the key path for messages and rejecting unknown keys."""

    def __init__(self, data: Any, path: str):
        if not isinstance(data, dict):
            raise ConfigError(f"{path or 'params'}: must be a mapping, got {_show(data)}")
        self.data, self.path = data, path

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, default: Any = _MISSING) -> Any:
        if name not in self.data:
            if default is _MISSING:
                raise ConfigError(f"{self.key(name)}: missing (required)")
            return default
        return self.data[name]

    def done(self, allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            raise ConfigError(f"{self.key(unknown[0])}: unknown key; allowed here: {', '.join(allowed)}")

    def sub(self, name: str, default: Any = _MISSING) -> "_Section":
        return _Section(self.get(name, default), self.key(name))

    # typed readers ---------------------------------------------------------------------------
    def int(self, name, default=_MISSING, minimum=None, allow_none=False) -> int | None:
        value = self.get(name, default)
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            bound = f" >= {minimum}" if minimum is not None else ""
            raise ConfigError(f"{self.key(name)}: must be an integer{bound}{' or null' if allow_none else ''}, "
                              f"got {_show(value)}")
        return value

    def number(self, name, default=_MISSING, minimum=None, positive=False) -> float:
        value = self.get(name, default)
        bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
        if not bad and ((minimum is not None and value < minimum) or (positive and value <= 0)):
            bad = True
        if bad:
            bound = " > 0" if positive else f" >= {minimum}" if minimum is not None else ""
            raise ConfigError(f"{self.key(name)}: must be a number{bound}, got {_show(value)}")
        return float(value)

    def str(self, name, default=_MISSING, choices=None) -> str:
        value = self.get(name, default)
        if not isinstance(value, str) or (choices is not None and value not in choices):
            allowed = f" (one of {', '.join(choices)})" if choices else ""
            raise ConfigError(f"{self.key(name)}: must be a string{allowed}, got {_show(value)}")
        return value

    def bool(self, name, default=_MISSING) -> bool:
        value = self.get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.key(name)}: must be true or false, got {_show(value)}")
        return value

    def name(self, name, names: dict | None = None, what: str = "name", hint: str = "") -> str:
        value = self.get(name)
        _check_name(value, self.key(name))
        if names is not None and value not in names:
            raise ConfigError(f"{self.key(name)}: unknown {what} {value!r}{hint}; defined: {', '.join(names) or 'none'}")
        return value

    def mapping(self, name, default=_MISSING) -> dict:
        value = self.get(name, default)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{self.key(name)}: must be a mapping, got {_show(value)}")
        for key in value:
            _check_name(key, f"{self.key(name)}.{key}")
        return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_name(value: Any, where: str) -> None:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ConfigError(f"{where}: names must match [a-z0-9_]+ (they become file names and shell "
                          f"arguments), got {_show(value)}")


# ------------------------------------------------------------------------------------------------
@dataclass
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


@dataclass
class TaskSpec:
    name: str
    datasets: list[str]
    classes: list | None = None
    groups: dict | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "datasets": list(self.datasets), "classes": self.classes, "groups": self.groups}


@dataclass
class NetSpec:
    """A trained net: from scratch (kind "scratch"), pruned from a parent, or distilled from a teacher."""
    name: str
    kind: str
    arch: str
    task: str
    seed: int
    train: TrainConfig
    split: str = "full"
    parent: str | None = None        # pruned: the net pruned; distilled: the teacher
    threshold: float | None = None


@dataclass
class PairSpec:
    name: str
    source: str
    target: str
    source_layer: str
    target_layer: str
    lam: float
    K: int
    classes: list | None = None


@dataclass
class FitSpec:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    kernel_size: int = 3
    norm: str = "dataset"
    gate: str = "linear"


@dataclass
class Config:
    seed: int
    lam: float
    K: int
    datasets: dict[str, DatasetSpec]
    tasks: dict[str, TaskSpec]
    nets: dict[str, NetSpec]
    features: dict
    feature_layers: dict[str, list[str]]
    fit: FitSpec
    decompose: dict
    pairs: dict[str, PairSpec]
    studies: dict
    refine: dict
    distill: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False)



# ------------------------------------------------------------------------------------------------
def load(path: str | Path = "params.yaml") -> Config:
    """Read and validate a params file; raises ConfigError naming the key path."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such params file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse(data)


TOP_KEYS = ("seed", "lam", "K", "datasets", "tasks", "train", "nets", "prune", "distill", "features", "fit",
            "decompose", "pairs", "studies", "refine", "report")


def parse(data: Any) -> Config:
    root = _Section(data, "")
    root.done(TOP_KEYS)
    seed = root.int("seed", minimum=0)
    lam = root.number("lam", minimum=0)
    K = root.int("K", minimum=0)
    datasets = _datasets(root)
    tasks = _tasks(root, datasets)
    base_train = _train_dict(root.sub("train"))
    _train_config(base_train, None, "train")
    nets = _nets(root, tasks, base_train)
    features, feature_layers = _features(root, nets)
    fit = _fit(root)
    dec = root.sub("decompose")
    dec.done(("batch_size", "figure_images", "cka_batch_size"))
    decompose = {"batch_size": dec.int("batch_size", 256, minimum=1),
                 "figure_images": dec.int("figure_images", 4, minimum=0),
                 "cka_batch_size": dec.int("cka_batch_size", 256, minimum=4)}
    pairs = _pairs(root, nets, tasks, datasets, feature_layers, lam, K)
    studies = _studies(root, pairs, nets)
    refine = _refine(root, pairs, nets)
    rep = root.sub("report")
    rep.done(("channel", "max_figure_pairs"))
    report = {"channel": rep.int("channel", -1, minimum=-1), "max_figure_pairs": rep.int("max_figure_pairs", 6, minimum=0)}
    d = root.sub("distill")
    distill = {"alpha": d.number("alpha", minimum=0), "tau": d.number("tau", positive=True)}
    return Config(seed=seed, lam=lam, K=K, datasets=datasets, tasks=tasks, nets=nets, features=features,
                  feature_layers=feature_layers, fit=fit, decompose=decompose, pairs=pairs, studies=studies,
                  refine=refine, distill=distill, report=report, raw=data)


def _datasets(root: _Section) -> dict[str, DatasetSpec]:
    out = {}
    entries = root.mapping("datasets")
    if not entries:
        raise ConfigError("datasets: define at least one dataset")
    for name in entries:
        s = root.sub("datasets").sub(name)
        s.done(("source", "root", "image_size", "max_train", "max_test", "download", "skip_difficult", "num_workers"))
        source = s.str("source", choices=tuple(SOURCES))
        default_root = "/usr/share/datasets/fashion-mnist" if source == "fashion_mnist" else _MISSING
        if s.get("download", False) is True and source != "fashion_mnist":
            raise ConfigError(f"{s.key('download')}: only fashion_mnist can be downloaded; {source} must be "
                              "extracted by hand into root (the error of its prepare stage says how)")
        out[name] = DatasetSpec(name=name, source=source, root=s.str("root", default_root),
                                image_size=s.int("image_size", None, minimum=8, allow_none=True),
                                max_train=s.int("max_train", None, minimum=2, allow_none=True),
                                max_test=s.int("max_test", None, minimum=1, allow_none=True),
                                download=s.bool("download", False), skip_difficult=s.bool("skip_difficult", True),
                                num_workers=s.int("num_workers", 0, minimum=0))
    return out


def _class_names(datasets: dict[str, DatasetSpec], names: list[str]) -> list[str] | None:
    """The label space of a mix of datasets, when known statically."""
    out = []
    for name in names:
        static = STATIC_CLASSES.get(datasets[name].source)
        if static is None:
            return None
        out += static
    return out


def _check_classes(values: Any, where: str, known: list[str] | None, datasets: list[str]) -> list:
    """Class names, indices, or "dataset:<name>" (all classes of one dataset of the task's mix)."""
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: must be a non-empty list of class names or indices, got {_show(values)}")
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ConfigError(f"{where}[{i}]: must be a class name or index, got {_show(value)}")
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


def _tasks(root: _Section, datasets: dict[str, DatasetSpec]) -> dict[str, TaskSpec]:
    out = {}
    for name in root.mapping("tasks"):
        s = root.sub("tasks").sub(name)
        s.done(("datasets", "classes", "groups"))
        names = s.get("datasets")
        if not isinstance(names, list) or not names:
            raise ConfigError(f"{s.key('datasets')}: must be a non-empty list of dataset names, got {_show(names)}")
        for i, d in enumerate(names):
            if d not in datasets:
                raise ConfigError(f"{s.key('datasets')}[{i}]: unknown dataset {d!r}; defined: {', '.join(datasets)}")
        known = _class_names(datasets, names)
        classes = s.get("classes", None)
        groups = s.get("groups", None)
        if classes is not None and groups is not None:
            raise ConfigError(f"{s.key('groups')}: give either classes or groups, not both")
        if classes is not None:
            _check_classes(classes, s.key("classes"), known, names)
        if groups is not None:
            g = s.mapping("groups")
            if len(g) < 2:
                raise ConfigError(f"{s.key('groups')}: needs at least two groups")
            seen: set = set()
            for group, members in g.items():
                _check_classes(members, f"{s.key('groups')}.{group}", known, names)
                for m in members:
                    key = slug(m) if isinstance(m, str) else (known[m] if known else m)
                    if key in seen:
                        raise ConfigError(f"{s.key('groups')}.{group}: class {m!r} is in two groups")
                    seen.add(key)
        out[name] = TaskSpec(name=name, datasets=list(names), classes=classes, groups=groups)
    if not out:
        raise ConfigError("tasks: define at least one task")
    return out


def _train_dict(s: _Section) -> dict:
    allowed = tuple(TrainConfig.__dataclass_fields__)
    s.done(allowed)
    return dict(s.data)


def _train_config(base: dict, override: Any, where: str) -> TrainConfig:
    if override is None:
        override = {}
    sec = _Section(override, where)
    sec.done(tuple(TrainConfig.__dataclass_fields__))
    merged = {**base, **override}
    try:
        return TrainConfig.from_dict(merged, where)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _nets(root: _Section, tasks: dict[str, TaskSpec], base_train: dict) -> dict[str, NetSpec]:
    nets: dict[str, NetSpec] = {}
    for name in root.mapping("nets"):
        s = root.sub("nets").sub(name)
        s.done(("arch", "task", "seed", "split", "train"))
        arch = s.str("arch", choices=ARCHS)
        task = s.name("task", tasks, "task")
        seed = s.int("seed", minimum=0)
        split = s.str("split", "full", choices=SPLITS)
        nets[name] = NetSpec(name=name, kind="scratch", arch=arch, task=task, seed=seed, split=split,
                             train=_train_config(base_train, s.get("train", None), s.key("train")))
    prune = root.sub("prune")
    prune.done(("retrain", "nets"))
    retrain = prune.get("retrain") or {}
    for name in prune.mapping("nets"):
        s = prune.sub("nets").sub(name)
        s.done(("parent", "threshold", "seed"))
        if name in nets:
            raise ConfigError(f"{s.path}: net name {name!r} is already used")
        parent = s.name("parent", nets, "net")
        p = nets[parent]
        nets[name] = NetSpec(name=name, kind="pruned", arch=p.arch, task=p.task, seed=s.int("seed", p.seed, minimum=0),
                             split=p.split, parent=parent, threshold=s.number("threshold", minimum=0),
                             train=_train_config(_recipe_of(p), retrain, prune.key("retrain")))
    distill = root.sub("distill")
    distill.done(("alpha", "tau", "nets"))
    for name in distill.mapping("nets"):
        s = distill.sub("nets").sub(name)
        s.done(("teacher", "seed", "train"))
        if name in nets:
            raise ConfigError(f"{s.path}: net name {name!r} is already used")
        teacher = s.name("teacher", nets, "net", " (a teacher must be defined before its student)")
        t = nets[teacher]
        nets[name] = NetSpec(name=name, kind="distilled", arch=t.arch, task=t.task, seed=s.int("seed", minimum=0),
                             split=t.split, parent=teacher,
                             train=_train_config(base_train, s.get("train", None), s.key("train")))
    if not nets:
        raise ConfigError("nets: define at least one net")
    return nets


def _recipe_of(net: NetSpec) -> dict:
    """A pruned net retrains from its parent's own recipe (then `prune.retrain` overrides)."""
    return asdict(net.train)


def _features(root: _Section, nets: dict[str, NetSpec]) -> tuple[dict, dict[str, list[str]]]:
    s = root.sub("features")
    s.done(("train_images", "test_images", "batch_size", "dtype", "nets"))
    features = {"train_images": s.int("train_images", minimum=4, allow_none=True),
                "test_images": s.int("test_images", minimum=4, allow_none=True),
                "batch_size": s.int("batch_size", 256, minimum=1),
                "dtype": s.str("dtype", choices=("float16", "float32"))}
    layers = {}
    for name, value in s.mapping("nets").items():
        where = s.key(f"nets.{name}")
        if name not in nets:
            raise ConfigError(f"{where}: unknown net {name!r}; defined: {', '.join(nets)}")
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: must be a non-empty list of layer names, got {_show(value)}")
        if len(set(value)) != len(value):
            raise ConfigError(f"{where}: a layer is listed twice")
        for i, layer in enumerate(value):
            _check_layer(nets[name].arch, layer, f"{where}[{i}]")
        layers[name] = list(value)
    return features, layers


def _check_layer(arch: str, layer: str, where: str) -> None:
    if layer in ALIASES[arch]:
        return
    if not re.match(r"^[A-Za-z0-9_.]+$", layer):
        raise ConfigError(f"{where}: bad layer name {layer!r}")
    if layer in _node_names(arch):
        return
    raise ConfigError(f"{where}: unknown layer {layer!r} for {arch}; aliases: {', '.join(ALIASES[arch])} "
                      "(or a graph-node name from kc.models.node_names)")


_NODE_NAMES: dict[str, set] = {}


def _node_names(arch: str) -> set:
    if arch not in _NODE_NAMES:
        from kc.models import build, node_names
        names = set(node_names(build(arch, 2)))
        names |= {n.rsplit(".", i)[0] for n in names for i in range(1, n.count(".") + 1)}  # module prefixes
        _NODE_NAMES[arch] = names
    return _NODE_NAMES[arch]


def _fit(root: _Section) -> FitSpec:
    s = root.sub("fit")
    s.done(("epochs", "batch_size", "lr", "kernel_size", "norm", "gate"))
    return FitSpec(epochs=s.int("epochs", 10, minimum=1), batch_size=s.int("batch_size", 64, minimum=1),
                   lr=s.number("lr", 1e-3, positive=True), kernel_size=s.int("kernel_size", 3, minimum=1),
                   norm=s.str("norm", "dataset", choices=("dataset", "instance")),
                   gate=s.str("gate", "linear", choices=("linear", "sigmoid")))


def _pairs(root, nets, tasks, datasets, feature_layers, lam, K) -> dict[str, PairSpec]:
    out = {}
    for name in root.mapping("pairs"):
        s = root.sub("pairs").sub(name)
        s.done(("source", "target", "layer", "source_layer", "target_layer", "lam", "K", "classes"))
        source = s.name("source", nets, "net")
        target = s.name("target", nets, "net")
        if "layer" in s.data and ("source_layer" in s.data or "target_layer" in s.data):
            raise ConfigError(f"{s.key('layer')}: give layer, or source_layer and target_layer, not both")
        if "layer" in s.data:
            source_layer = target_layer = s.str("layer")
        else:
            source_layer, target_layer = s.str("source_layer"), s.str("target_layer")
        for net, layer, key in ((source, source_layer, "source_layer"), (target, target_layer, "target_layer")):
            where = s.key("layer" if "layer" in s.data else key)
            if layer not in feature_layers.get(net, []):
                raise ConfigError(f"{where}: layer {layer!r} of net {net!r} is not extracted; add it to "
                                  f"features.nets.{net} (now: {feature_layers.get(net, [])})")
        src_task, tgt_task = tasks[nets[source].task], tasks[nets[target].task]
        if src_task.datasets != tgt_task.datasets:
            raise ConfigError(f"{s.path}: source and target nets must see the same images: their tasks use "
                              f"datasets {src_task.datasets} and {tgt_task.datasets}")
        classes = s.get("classes", None)
        if classes is not None:
            if src_task.groups is not None or src_task.classes is not None:
                raise ConfigError(f"{s.key('classes')}: needs a source net trained on all classes of its "
                                  f"datasets (task {src_task.name!r} selects or groups classes)")
            _check_classes(classes, s.key("classes"), _class_names(datasets, src_task.datasets), src_task.datasets)
        out[name] = PairSpec(name=name, source=source, target=target, source_layer=source_layer,
                             target_layer=target_layer, lam=s.number("lam", lam, minimum=0),
                             K=s.int("K", K, minimum=0), classes=classes)
    return out


def _pair_list(s: _Section, name: str, pairs: dict, minimum: int = 1) -> list[str]:
    value = s.get(name)
    if not isinstance(value, list) or len(value) < minimum:
        raise ConfigError(f"{s.key(name)}: must be a list of at least {minimum} pair name(s), got {_show(value)}")
    for i, p in enumerate(value):
        if p not in pairs:
            raise ConfigError(f"{s.key(name)}[{i}]: unknown pair {p!r}; defined in pairs")
    return list(value)


def _studies(root: _Section, pairs: dict, nets: dict) -> dict:
    s = root.sub("studies")
    s.done(("stability", "compression", "born_again", "cross_task", "sweep"))
    out: dict[str, Any] = {"stability": {}, "compression": [], "born_again": [], "cross_task": {}, "sweep": []}
    for name in s.mapping("stability", {}):
        e = s.sub("stability").sub(name)
        e.done(("case1", "case2", "paper"))
        entry = {"case1": _pair_list(e, "case1", pairs), "case2": _pair_list(e, "case2", pairs),
                 "paper": _paper_key(e, paper.TABLE1)}
        layers = {(nets[pairs[p].source].arch, pairs[p].source_layer, pairs[p].target_layer)
                  for p in entry["case1"] + entry["case2"]}
        if len(layers) != 1:
            raise ConfigError(f"{e.path}: all pairs of a stability entry must compare one architecture at one "
                              f"layer; got {sorted(layers)}")
        entry["arch"], entry["layer"], _ = layers.pop()
        out["stability"][name] = entry
    if s.get("compression", None):
        out["compression"] = _pair_list(s, "compression", pairs)
        for i, p in enumerate(out["compression"]):
            src = nets[pairs[p].source]
            if src.kind != "pruned" or src.parent != pairs[p].target:
                raise ConfigError(f"studies.compression[{i}]: pair {p!r} must reconstruct a pruned net's parent "
                                  "from the pruned net (source: pruned net, target: its parent)")
    if s.get("born_again", None):
        out["born_again"] = _pair_list(s, "born_again", pairs)
        targets = {pairs[p].target for p in out["born_again"]}
        if len(targets) != 1:
            raise ConfigError("studies.born_again: every pair must reconstruct the same (newest) generation")
    if s.get("cross_task", None):
        e = s.sub("cross_task")
        e.done(("fine_to_binary", "binary_to_fine"))
        out["cross_task"] = {k: e.name(k, pairs, "pair") for k in ("fine_to_binary", "binary_to_fine")}
    if s.get("sweep", None):
        out["sweep"] = _pair_list(s, "sweep", pairs, minimum=2)
    return out


def _paper_key(e: _Section, table: dict) -> str | None:
    """Optional ``paper:`` key naming the paper's column shown beside this entry."""
    value = e.get("paper", None)
    if value is not None and value not in table:
        raise ConfigError(f"{e.key('paper')}: unknown paper column {value!r}; one of: {', '.join(table)}")
    return value


def _refine(root: _Section, pairs: dict, nets: dict) -> dict:
    s = root.sub("refine")
    s.done(("recipe", "components", "subset", "diagnosis"))
    r = s.sub("recipe")
    r.done(("epochs", "batch_size", "lr", "momentum", "weight_decay"))
    recipe = {"epochs": r.int("epochs", 3, minimum=1), "batch_size": r.int("batch_size", 128, minimum=1),
              "lr": r.number("lr", 0.01, positive=True), "momentum": r.number("momentum", 0.9, minimum=0),
              "weight_decay": r.number("weight_decay", 5e-4, minimum=0)}
    out: dict[str, Any] = {"recipe": recipe, "components": {}, "subset": {}, "diagnosis": {}}
    for kind in ("components", "subset"):
        for name in s.mapping(kind, {}):
            e = s.sub(kind).sub(name)
            e.done(("pair", "a", "b", "paper"))
            pair = e.name("pair", pairs, "pair")
            a, b = e.name("a", nets, "net"), e.name("b", nets, "net")
            if (a, b) != (pairs[pair].source, pairs[pair].target):
                raise ConfigError(f"{e.path}: a and b must be the pair's source and target "
                                  f"({pairs[pair].source}, {pairs[pair].target}), got ({a}, {b})")
            if kind == "subset" and pairs[pair].classes is None:
                raise ConfigError(f"{e.key('pair')}: pair {pair!r} has no classes; Exp. 2 fits g on a class subset")
            if kind == "components" and pairs[pair].classes is not None:
                raise ConfigError(f"{e.key('pair')}: pair {pair!r} is fitted on a class subset; Exp. 1 needs all classes")
            if nets[a].task != nets[b].task:
                raise ConfigError(f"{e.path}: a and b must be trained on the same task")
            out[kind][name] = {"pair": pair, "a": a, "b": b,
                               "paper": _paper_key(e, paper.TABLE3 if kind == "components" else paper.TABLE4)}
    for name in s.mapping("diagnosis", {}):
        e = s.sub("diagnosis").sub(name)
        e.done(("weak", "strong", "blind_spots", "unreliable"))
        weak, strong = e.name("weak", nets, "net"), e.name("strong", nets, "net")
        blind, unrel = e.name("blind_spots", pairs, "pair"), e.name("unreliable", pairs, "pair")
        if (pairs[blind].source, pairs[blind].target) != (weak, strong):
            raise ConfigError(f"{e.key('blind_spots')}: pair {blind!r} must reconstruct the strong net from the weak one")
        if (pairs[unrel].source, pairs[unrel].target) != (strong, weak):
            raise ConfigError(f"{e.key('unreliable')}: pair {unrel!r} must reconstruct the weak net from the strong one")
        if pairs[blind].target_layer != pairs[unrel].source_layer or pairs[blind].source_layer != pairs[unrel].target_layer:
            raise ConfigError(f"{e.path}: the two pairs must use the same two layers in opposite directions")
        if nets[weak].task != nets[strong].task:
            raise ConfigError(f"{e.path}: weak and strong must be trained on the same task")
        out["diagnosis"][name] = {"weak": weak, "strong": strong, "blind_spots": blind, "unreliable": unrel}
    return out
