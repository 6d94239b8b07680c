"""The architectures kc builds and their named layer taps; plain data, no torch (configs import it).

    ARCHS                          # the paper's torchvision nets and CPU-sized members of each family
    tap_node("vgg16", "conv4_3")        # 'features.32': the ReLU after conv4_3 (post-activation)
    tap_node("vgg16", "conv4_3_pre")    # 'features.30': the convolution's output, before BN and ReLU
    tap_for("vgg16", "conv4_3", "authors")   # 'conv4_3_pre': the authors' code taps before the activation

Every alias has two forms. ``<alias>`` (the same as ``<alias>_post``) is the feature after the
ReLU that follows the layer: what the next layer reads, the paper's "output feature of the layer".
``<alias>_pre`` is the layer's output before its activation, as the authors' released code taps it
(ConvOutput.py): a convolution's raw output (for VGG-16-BN also before its batch norm), and for a
ResNet stage the residual sum before the block's last ReLU.
"""
from __future__ import annotations

PAPER_ARCHS = ("alexnet", "vgg16", "resnet18", "resnet34", "resnet50")
SMALL_ARCHS = ("alexnet_s", "vgg_s", "resnet_s")
ARCHS = PAPER_ARCHS + SMALL_ARCHS

# Images each architecture is built for: (channels, size).
INPUT = {**{a: (3, 224) for a in PAPER_ARCHS}, **{a: (1, 28) for a in SMALL_ARCHS}}

_VGG16_BLOCKS = (2, 2, 3, 3, 3)


def _vgg16_taps() -> dict[str, tuple[str, str]]:
    """convX_Y -> (its ReLU, its convolution) in torchvision's vgg16_bn ``features`` (conv, bn, relu; pools)."""
    taps, index = {}, 0
    for block, convs in enumerate(_VGG16_BLOCKS, start=1):
        for conv in range(1, convs + 1):
            taps[f"conv{block}_{conv}"] = (f"features.{index + 2}", f"features.{index}")
            index += 3
        index += 1  # max pool
    return taps


def _resnet_taps(blocks: tuple[int, ...]) -> dict[str, tuple[str, str]]:
    """layerN -> (the stage's output, the residual sum of its last block before the final ReLU)."""
    return {f"layer{i}": (f"layer{i}", f"layer{i}.{n - 1}.add") for i, n in enumerate(blocks, start=1)}


# alias -> (post-activation node, pre-activation node), in torchvision's feature-extraction naming.
TAPS: dict[str, dict[str, tuple[str, str]]] = {
    "alexnet": {f"conv{i}": (f"features.{relu}", f"features.{relu - 1}")
                for i, relu in zip(range(1, 6), (1, 4, 7, 9, 11))},
    "vgg16": _vgg16_taps(),
    "resnet18": _resnet_taps((2, 2, 2, 2)),
    "resnet34": _resnet_taps((3, 4, 6, 3)),
    "resnet50": _resnet_taps((3, 4, 6, 3)),
    "alexnet_s": {f"conv{i}": (f"features.relu{i}", f"features.conv{i}") for i in range(1, 6)},
    "vgg_s": {f"conv{b}_{c}": (f"features.block{b}.relu{c}", f"features.block{b}.conv{c}")
              for b, n in ((1, 2), (2, 2), (3, 3), (4, 3)) for c in range(1, n + 1)},
    "resnet_s": _resnet_taps((2, 2, 2, 2)),
}

# Every name a layer can be given: alias, alias_post (the same) and alias_pre.
ALIASES: dict[str, dict[str, str]] = {
    arch: {name: node for alias, (post, pre) in taps.items()
           for name, node in ((alias, post), (f"{alias}_post", post), (f"{alias}_pre", pre))}
    for arch, taps in TAPS.items()}

# The layers the studies use by default (the paper: conv4/conv5, conv4_3/conv5_3, the last 14x14 map).
STUDY_LAYERS = {"alexnet": ("conv4", "conv5"), "vgg16": ("conv4_3", "conv5_3"), "resnet18": ("layer3",),
                "resnet34": ("layer3",), "resnet50": ("layer3",), "alexnet_s": ("conv4", "conv5"),
                "vgg_s": ("conv3_3", "conv4_3"), "resnet_s": ("layer3", "layer4")}

READINGS = ("paper", "authors")


def tap_for(arch: str, layer: str, reading: str) -> str:
    """The explicit tap a reading uses for a layer named in params.

    An alias of ``arch`` without suffix means post-activation under the paper's reading and
    pre-activation under the authors' (their ConvOutput.py); an explicit ``_pre``/``_post`` or a
    graph-node name is kept as it is.
    """
    if reading not in READINGS:
        raise ValueError(f"reading must be one of {', '.join(READINGS)}, got {reading!r}")
    if layer in TAPS.get(arch, {}):
        return f"{layer}_pre" if reading == "authors" else f"{layer}_post"
    return layer


def tap_node(arch: str, layer: str) -> str:
    """The graph node of an alias of ``arch``; other names (graph nodes, module names) unchanged."""
    return ALIASES.get(arch, {}).get(layer, layer)
