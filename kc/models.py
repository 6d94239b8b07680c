"""Backbones: the paper's torchvision nets, CPU-sized members of the same families, and the split
of any net at a named layer into ``lower`` and ``upper`` with ``upper(lower(x)) == model(x)``::

    model = build("vgg16", 200)               # torchvision VGG-16 with batch norm, from scratch
    lower, upper = split(model, "conv4_3")    # a paper alias, or any torchvision graph-node name
    lower(torch.zeros(1, 3, 224, 224)).shape  # (1, 512, 28, 28)

The paper (Section 4) uses AlexNet, VGG-16, ResNet-18/34/50 at 224 px. For 2-core CPUs there are
``alexnet_s`` (5 convolutions, no batch norm, dropout: shallow and weak), ``vgg_s`` (VGG-style stages
with batch norm, 10 convolutions) and ``resnet_s`` (ResNet-18's layout of torchvision BasicBlocks,
widths 16-32-32-32: deeper and stronger), all for 28-32 px inputs, with two named layers each whose
maps are 32 x 7 x 7 at 28 px.

Layer names: ``kc.archs`` (``conv4_3`` = ``conv4_3_post``, after the ReLU that follows the
convolution, what the next layer reads; ``conv4_3_pre``, before the activation, as the authors'
code taps it), or any torchvision graph-node name.
``build`` and ``split`` make every ReLU out-of-place, so that ``lower``'s output is never modified
by ``upper``. ``lower`` and ``upper`` share the model's parameters (deep-copy ``upper`` to fine-tune
it without touching the model).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import fx, nn

from kc.archs import ALIASES, ARCHS, INPUT, PAPER_ARCHS, SMALL_ARCHS, STUDY_LAYERS, TAPS  # noqa: F401 (re-exported)


class AlexNetS(nn.Module):
    """AlexNet's recipe at 28 px: 5 convolutions, ReLU, max pooling, dropout, no batch norm."""

    def __init__(self, num_classes: int, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 24, 5, padding=2)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(24, 48, 5, padding=2)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(48, 48, 3, padding=1)), ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(48, 32, 3, padding=1)), ("relu4", nn.ReLU()),
            ("conv5", nn.Conv2d(32, 32, 3, padding=1)), ("relu5", nn.ReLU()), ("pool5", nn.MaxPool2d(2)),
        ]))
        self.avgpool = nn.AdaptiveAvgPool2d(3)
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(32 * 9, 128), nn.ReLU(),
                                        nn.Dropout(0.5), nn.Linear(128, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class VGGS(nn.Module):
    """VGG-16-BN's recipe at 28 px: 3x3 conv + BN + ReLU stages (16, 32, 32, 32 wide; 2, 2, 3, 3 deep)."""

    def __init__(self, num_classes: int, in_channels: int = 1):
        super().__init__()
        blocks, channels = [], in_channels
        for block, (width, convs, pool) in enumerate(((16, 2, True), (32, 2, True), (32, 3, False),
                                                      (32, 3, True)), start=1):
            layers = []
            for conv in range(1, convs + 1):  # features.block<b>.relu<c> is the alias conv<b>_<c>
                layers += [(f"conv{conv}", nn.Conv2d(channels, width, 3, padding=1, bias=False)),
                           (f"bn{conv}", nn.BatchNorm2d(width)), (f"relu{conv}", nn.ReLU())]
                channels = width
            if pool:
                layers.append(("pool", nn.MaxPool2d(2)))
            blocks.append((f"block{block}", nn.Sequential(OrderedDict(layers))))
        self.features = nn.Sequential(OrderedDict(blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(3)
        self.classifier = nn.Sequential(nn.Linear(32 * 9, 128), nn.ReLU(), nn.Dropout(0.5),
                                        nn.Linear(128, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _resnet_s(num_classes: int, in_channels: int = 1) -> nn.Module:
    """torchvision's ResNet with ResNet-18's BasicBlock layout (2, 2, 2, 2) sized for 28 px.

    Widths 16, 32, 32, 32 and strides 1, 2, 2, 1: layer3 and layer4 are 32 x 7 x 7 at 28 px.
    """
    from torchvision.models.resnet import BasicBlock, ResNet

    model = ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
    model.inplanes = 16
    model.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
    model.bn1 = nn.BatchNorm2d(16)
    model.maxpool = nn.Identity()
    model.layer1 = model._make_layer(BasicBlock, 16, 2)
    model.layer2 = model._make_layer(BasicBlock, 32, 2, stride=2)
    model.layer3 = model._make_layer(BasicBlock, 32, 2, stride=2)
    model.layer4 = model._make_layer(BasicBlock, 32, 2, stride=1)
    model.fc = nn.Linear(32, num_classes)
    for m in model.modules():  # torchvision's initialisation for the replaced modules
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def _torchvision(arch: str, num_classes: int, in_channels: int) -> nn.Module:
    import torchvision.models as tvm

    ctor = {"alexnet": tvm.alexnet, "vgg16": tvm.vgg16_bn, "resnet18": tvm.resnet18,
            "resnet34": tvm.resnet34, "resnet50": tvm.resnet50}[arch]
    model = ctor(weights=None, num_classes=num_classes)  # from scratch, as in the paper
    if in_channels != 3:
        first = model.conv1 if arch.startswith("resnet") else model.features[0]
        conv = nn.Conv2d(in_channels, first.out_channels, first.kernel_size, first.stride, first.padding,
                         bias=first.bias is not None)
        if arch.startswith("resnet"):
            model.conv1 = conv
        else:
            model.features[0] = conv
    return model


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHS)}")


def _out_of_place(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return model


def build(arch: str, num_classes: int, in_channels: int | None = None) -> nn.Module:
    """A freshly initialised backbone (no pretrained weights). ``in_channels`` defaults to 3 for the
    paper's nets and 1 (Fashion-MNIST) for the small ones. Seed torch before calling for a fixed init."""
    _check_arch(arch)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if in_channels is None:
        in_channels = 1 if arch in SMALL_ARCHS else 3
    if arch == "alexnet_s":
        model = AlexNetS(num_classes, in_channels)
    elif arch == "vgg_s":
        model = VGGS(num_classes, in_channels)
    elif arch == "resnet_s":
        model = _resnet_s(num_classes, in_channels)
    else:
        model = _torchvision(arch, num_classes, in_channels)
    model.kc_arch = arch
    return _out_of_place(model)


# ------------------------------------------------------------------------------------------------
# Named layers and the lower/upper split
# ------------------------------------------------------------------------------------------------
def _trace(model: nn.Module):
    from torchvision.models.feature_extraction import NodePathTracer, _set_default_tracer_kwargs

    tracer = NodePathTracer(**_set_default_tracer_kwargs(None))
    graph = tracer.trace(model)
    return tracer, graph


def node_names(model: nn.Module) -> list[str]:
    """Every graph-node name of the model (torchvision's feature-extraction naming)."""
    tracer, _ = _trace(model)
    return list(tracer.node_to_qualname.values())


def layer_names(arch: str) -> dict[str, str]:
    """The paper-style aliases of an architecture and the graph nodes they stand for."""
    _check_arch(arch)
    return dict(ALIASES[arch])


def resolve_layer(model: nn.Module, layer: str) -> str:
    """An alias of the model's arch, or a graph-node / module name, to the node query to cut at."""
    arch = getattr(model, "kc_arch", None)
    if arch in ALIASES and layer in ALIASES[arch]:
        return ALIASES[arch][layer]
    return layer


def split(model: nn.Module, layer: str) -> tuple[nn.Module, nn.Module]:
    """(lower, upper) with ``upper(lower(x)) == model(x)``; ``lower(x)`` is the feature at ``layer``.

    ``layer``: an alias (``layer_names(arch)``) or a torchvision graph-node name; a module name such as
    ``layer3`` means that module's last node. The cut must separate the graph: a node inside a residual
    block, whose skip connection crosses it, is refused with the reason.
    """
    _out_of_place(model)
    query = resolve_layer(model, layer)
    tracer, graph = _trace(model)
    qualname = tracer.node_to_qualname
    depth = query.count(".")
    cut = None
    for node in graph.nodes:  # the last node at or under the query, as torchvision's extractor does
        name = qualname.get(node)
        if name is not None and ".".join(name.split(".")[:depth + 1]) == query:
            cut = node
    if cut is None or cut.op == "placeholder":
        arch = getattr(model, "kc_arch", None)
        aliases = ", ".join(TAPS.get(arch, {})) or "none"
        raise ValueError(f"unknown layer {layer!r} for {arch or type(model).__name__}; aliases: {aliases} "
                         "(each also as <alias>_pre / <alias>_post); or any graph-node name from "
                         "kc.models.node_names(model)")
    nodes = list(graph.nodes)
    position = {n: i for i, n in enumerate(nodes)}
    output = next(n for n in nodes if n.op == "output")

    # lower: the cut and everything it depends on.
    lower_graph, env = fx.Graph(), {}
    needed = _ancestors(cut)
    for node in nodes:
        if node in needed or node is cut:
            env[node] = lower_graph.node_copy(node, lambda n: env[n])
    lower_graph.output(env[cut])

    # upper: a new input standing for the cut, then what the output needs after it.
    upper_graph = fx.Graph()
    env = {cut: upper_graph.placeholder("feature")}
    input_dependent = _descendants(next(n for n in nodes if n.op == "placeholder"))
    for node in sorted(_ancestors(output) - {cut}, key=position.get):
        if node.op == "placeholder" or (node in input_dependent and position[node] < position[cut]):
            continue
        missing = [a for a in node.all_input_nodes if a not in env]
        if missing:
            raise ValueError(f"cannot split at {layer!r}: {qualname.get(node, node.name)} after it also reads "
                             f"{', '.join(qualname.get(m, m.name) for m in missing)} from before it "
                             "(a skip connection crosses the cut); pick the output of a whole block, e.g. 'layer3'")
        env[node] = upper_graph.node_copy(node, lambda n: env[n])
    upper_graph.output(env[output.args[0]])
    lower = fx.GraphModule(model, lower_graph, f"{type(model).__name__}Lower")
    upper = fx.GraphModule(model, upper_graph, f"{type(model).__name__}Upper")
    lower.train(model.training)
    upper.train(model.training)
    return lower, upper


def _ancestors(node: fx.Node) -> set:
    seen, stack = set(), [node]
    while stack:
        for arg in stack.pop().all_input_nodes:
            if arg not in seen:
                seen.add(arg)
                stack.append(arg)
    return seen


def _descendants(node: fx.Node) -> set:
    seen, stack = set(), [node]
    while stack:
        for user in stack.pop().users:
            if user not in seen:
                seen.add(user)
                stack.append(user)
    return seen


def feature_shape(model: nn.Module, layer: str, image_shape: tuple[int, int, int]) -> tuple[int, ...]:
    """(C, H, W) of the feature at ``layer`` for one image of ``image_shape``, by a dry run."""
    lower, _ = split(model, layer)
    was = model.training
    model.eval()
    with torch.no_grad():
        shape = tuple(lower(torch.zeros(1, *image_shape)).shape[1:])
    model.train(was)
    return shape


# ------------------------------------------------------------------------------------------------
# Wrappers and splicing (kc.compare)
# ------------------------------------------------------------------------------------------------
def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DataParallel / DistributedDataParallel / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


class _Output(nn.Module):
    def __init__(self, module: nn.Module, key: str):
        super().__init__()
        self.module, self.key = module, key

    def forward(self, x):
        return self.module(x)[self.key]


class Spliced(nn.Module):
    """x -> upper_b(denormalise_b(g(resize(normalise_a(lower_a(x)))))): B's upper layers on g(x_A).

    ``g`` stays in eval mode (its running Σ) whatever ``train()`` is called with.
    """

    def __init__(self, lower_a: nn.Module, g: nn.Module, upper_b: nn.Module, source_stats, target_stats,
                 size=None, pool: bool = False):
        super().__init__()
        self.lower_a, self.g, self.upper_b = lower_a, g, upper_b
        self.size = tuple(size) if size is not None else None
        self.pool = bool(pool)
        for name, (mean, std) in (("source", source_stats), ("target", target_stats)):
            std = float(std)
            self.register_buffer(f"{name}_mean", torch.tensor(float(mean)))
            self.register_buffer(f"{name}_std", torch.tensor(std if std > 0 else 1.0))
        self.g.eval()

    def train(self, mode: bool = True) -> "Spliced":
        super().train(mode)
        self.g.eval()
        return self

    def forward(self, x: torch.Tensor):
        f = self.lower_a(x)
        while not torch.is_tensor(f):  # a tuple/list/dict-valued node: its first tensor
            f = next(iter(f.values())) if isinstance(f, dict) else f[0]
        if self.pool:
            f = f.mean((2, 3)) if f.dim() == 4 else f.mean(1) if f.dim() == 3 else f
        f = (f - self.source_mean) / self.source_std
        if self.size is not None and f.dim() == 4 and tuple(f.shape[-2:]) != self.size:
            f = nn.functional.interpolate(f, size=self.size, mode="bilinear", align_corners=False)
        f = self.g(f)
        return self.upper_b(f * self.target_std + self.target_mean)


def splice(model_b: nn.Module, layer_b: str, g: nn.Module, model_a: nn.Module, layer_a: str, *,
           source_stats: tuple[float, float] = (0.0, 1.0), target_stats: tuple[float, float] = (0.0, 1.0),
           size: tuple[int, int] | None = None, pool: bool = False) -> Spliced:
    """B's layers above ``layer_b`` fed with g(A's feature at ``layer_a``), as one nn.Module.

    x -> upper_b(g(resize(f_a - m_a) / s_a) * s_b + m_b) with f_a = lower_a(x) (``split``), the scalar
    normalisation of footnote 2 (``source_stats``/``target_stats`` = (mean, std), e.g. from
    ``kc.compare``), ``size``: resize the normalised source map to (H, W) (bilinear) when it differs,
    ``pool``: average the source over positions/tokens first (vector g). ``Comparison.spliced`` passes
    all of these. The parts share the models' parameters.
    """
    model_a, model_b = unwrap(model_a), unwrap(model_b)
    try:
        lower_a, _ = split(model_a, layer_a)
    except ValueError as exc:  # a node inside a block (a skip connection crosses it): A's lower part only
        if "cannot split" not in str(exc):
            raise
        from torchvision.models.feature_extraction import create_feature_extractor
        _out_of_place(model_a)
        lower_a = _Output(create_feature_extractor(model_a, {resolve_layer(model_a, layer_a): "out"},
                                                   suppress_diff_warning=True), "out")
    _, upper_b = split(model_b, layer_b)
    return Spliced(lower_a, g, upper_b, source_stats, target_stats, size=size, pool=pool)
