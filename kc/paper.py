"""The paper's own reported numbers, shown beside ours in the report (for reference, never compared
numerically: the paper's nets, datasets and feature scales differ from a given run).

Keys are the paper's column names; params entries point at them with ``paper: <key>``.
"""

# Table 1: instability Var(x^Δ)/Var(x), Case 1 (different initialisations), Case 2 (different data).
TABLE1 = {
    "conv4 @ AlexNet": (0.086, 0.089),
    "conv5 @ AlexNet": (0.116, 0.155),
    "conv4-3 @ VGG-16": (0.124, 0.121),
    "conv5-3 @ VGG-16": (0.196, 0.198),
    "last conv @ ResNet-34": (0.776, 0.275),
}

# Table 2: Var(x^(0)), Var(x^(1)), Var(x^(2)), Var(x^Δ) for nets from different initialisations.
TABLE2 = {
    "conv4 @ AlexNet": (105.80, 10.51, 1.92, 11.14),
    "conv5 @ AlexNet": (424.67, 73.73, 43.69, 71.37),
    "conv4-3 @ VGG-16": (1.06, 0.07, 0.02, 0.16),
    "conv5-3 @ VGG-16": (0.88, 0.03, 0.004, 0.22),
    "last conv @ ResNet-34": (0.66, 0.10, 0.03, 2.75),
}

# Table 3: top-1 accuracy (%) of A, B, x^(0), x^(0)+x^(1), x^(0)+x^(1)+x^(2) (None: not reported).
TABLE3 = {
    "VGG-16 conv4-3": (43.15, 42.89, 45.15, 44.98, 45.06),
    "VGG-16 conv5-2": (None, None, 44.48, 44.22, 44.32),
    "ResNet-18": (34.74, 35.00, 38.16, 38.45, 38.23),
    "ResNet-34": (31.05, 30.46, 31.49, 31.76, 31.96),
    "ResNet-50": (29.98, 31.15, 30.40, 31.77, 31.84),
}

# Table 4: top-1 accuracy (%) of A, B and x^(0)+x^(1)+x^(2) on a class subset.
TABLE4 = {
    "VGG-16 conv4-3 VOC-animal": (51.55, 50.80, 59.38),
    "VGG-16 conv4-3 Mix-CUB": (44.44, 45.93, 47.50),
    "VGG-16 conv4-3 Mix-Dogs": (15.15, 15.19, 16.53),
    "VGG-16 conv5-2 VOC-animal": (51.55, 50.80, 60.18),
    "VGG-16 conv5-2 Mix-CUB": (44.44, 45.93, 46.65),
    "VGG-16 conv5-2 Mix-Dogs": (15.15, 15.19, 16.70),
    "ResNet-18 VOC-animal": (37.65, 37.22, 53.52),
    "ResNet-18 Mix-CUB": (31.93, 32.02, 38.02),
    "ResNet-18 Mix-Dogs": (14.20, 14.28, 16.17),
    "ResNet-34 VOC-animal": (39.42, 35.95, 49.98),
    "ResNet-34 Mix-CUB": (30.91, 27.74, 33.98),
    "ResNet-34 Mix-Dogs": (12.96, 12.46, 14.21),
}

# Section 4.1 (AlexNet weak, ResNet-34 strong, CUB-200-2011): accuracies in %.
DIAGNOSIS = {"weak": 60.3, "weak_without_unreliable": 65.6, "blind_spots_gain": 16.1,
             "weak_net": 56.97, "strong_net": 73.09}

# Which column of Tables 1-2 a (architecture, layer) stands for; the CPU-sized families stand for
# the paper's nets at the corresponding depth.
TABLE1_COLUMNS = {
    ("alexnet", "conv4"): "conv4 @ AlexNet", ("alexnet", "conv5"): "conv5 @ AlexNet",
    ("vgg16", "conv4_3"): "conv4-3 @ VGG-16", ("vgg16", "conv5_3"): "conv5-3 @ VGG-16",
    ("resnet34", "layer3"): "last conv @ ResNet-34",
    ("alexnet_s", "conv4"): "conv4 @ AlexNet", ("alexnet_s", "conv5"): "conv5 @ AlexNet",
    ("vgg_s", "conv3_3"): "conv4-3 @ VGG-16", ("vgg_s", "conv4_3"): "conv5-3 @ VGG-16",
    ("resnet_s", "layer4"): "last conv @ ResNet-34",
}
TABLE3_COLUMNS = {
    ("vgg16", "conv4_3"): "VGG-16 conv4-3", ("vgg16", "conv5_2"): "VGG-16 conv5-2",
    ("resnet18", "layer3"): "ResNet-18", ("resnet34", "layer3"): "ResNet-34", ("resnet50", "layer3"): "ResNet-50",
    ("vgg_s", "conv3_3"): "VGG-16 conv4-3", ("vgg_s", "conv4_3"): "VGG-16 conv5-2", ("resnet_s", "layer4"): "ResNet-18",
}


def column(table: dict, arch: str, layer: str) -> str | None:
    return table.get((arch, layer))


# The paper's claims that the report checks on each run; each study decides some of them.
CLAIMS = {
    1: "low orders carry most of the reconstructed energy: Var(x^(0)) > Var(x^(1)) > Var(x^(2)) (Table 2)",
    2: "deeper layers are less stable than shallower ones (Table 1)",
    3: "features refined by knowledge consistency match or beat both baselines (Table 3)",
    4: "on a class subset, g(x_A) beats x_A and x_B (Table 4)",
    5: "adding blind spots helps the weak net, and removing unreliable features helps it (Section 4.1)",
    6: "more pruning discards more knowledge (larger Var(x^Δ)) and costs more accuracy (Fig. 4 left)",
    7: "blind spots shrink over born-again generations (Fig. 4 right)",
    8: "the fine-grained net reconstructs the binary net better than the reverse (Section 4.6)",
}
