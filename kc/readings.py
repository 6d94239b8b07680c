"""The two readings of the method kc can run, selected by ``reading:`` in params (README, "Readings").

    READINGS["paper"].net_options()        # {"norm": "dataset", "gate": "linear", ...} for ConsistencyNet
    READINGS["authors"].fit_options(fit)   # their optimiser recipe, with the epochs from params

``paper`` is kc's reading of the paper's text; ``authors`` follows the authors' released code
(github.com/nexuslrf/knowledge_consistency, commit 54645f8): pre-activation taps, raw targets, g
scaling its own input and each h^(k) by the per-image, per-channel (unbiased) spatial standard
deviation, sigmoid gates, Adam at 1e-4 decayed log-spaced to 1e-6 with weight decay 1e-4 on every
parameter. Their init: ``_initialize_weights`` intends Kaiming-normal fan_out but runs before the
convolutions are created, so the released code keeps PyTorch's default init; kc matches what runs
(``init="kaiming_fan_out"`` is available as what they meant). Both readings report Var with the
paper's one scalar mean (Section 4.2); the authors' Variance.py subtracts per-channel means,
reported beside it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reading:
    name: str
    tap: str                   # "post" | "pre": which form of a layer alias is tapped (kc.archs)
    normalise: bool            # footnote 2: x and x* to zero mean, unit variance (one scalar each)
    norm: str                  # Σ of Eq. 1: "dataset" (per-channel variance over images and positions) | "instance"
    gate: str                  # p^(k): "linear" (free scalar) | "sigmoid"
    input_scale: str           # "none" | "instance": g divides its input x by x's per-image, per-channel std
    init: str                  # "default" (PyTorch's) | "kaiming_fan_out"
    lr: float | None           # None: fit.lr from params
    lr_end: float | None       # log-spaced decay from lr to lr_end over the epochs; None: constant
    weight_decay: float

    def net_options(self) -> dict:
        return {"norm": self.norm, "gate": self.gate, "input_scale": self.input_scale, "init": self.init}

    def fit_options(self, fit) -> dict:
        """Keyword arguments of kc.consistency.fit for this reading (``fit``: the params' FitSpec)."""
        options = {"epochs": fit.epochs, "batch_size": fit.batch_size, "lr": self.lr if self.lr is not None else fit.lr,
                   "optimizer": "adam", "weight_decay": self.weight_decay}
        if self.lr_end is not None:
            options.update(schedule="logspace", lr_end=self.lr_end)
        return options


READINGS = {
    "paper": Reading("paper", tap="post", normalise=True, norm="dataset", gate="linear", input_scale="none",
                     init="default", lr=None, lr_end=None, weight_decay=0.0),
    "authors": Reading("authors", tap="pre", normalise=False, norm="instance", gate="sigmoid", input_scale="instance",
                       init="default", lr=1e-4, lr_end=1e-6, weight_decay=1e-4),
}

# One row per difference, for README's table and the report: (what, paper text, authors' code).
DIFFERENCES = (
    ("layer tapped", "the layer's output feature", "before the activation (ConvOutput.py)"),
    ("x and x*", "normalised to zero mean, unit variance (footnote 2)", "raw features; g scales its input per image"),
    ("Σ of h^(k)", "variance of each element over images", "per image and channel: unbiased spatial std + 1e-5; 1 on 1x1 maps"),
    ("p^(k)", "a scalar", "sigmoid of a scalar"),
    ("init of W^(k)", "not given", "PyTorch's default (the Kaiming fan_out init runs before the convolutions exist)"),
    ("optimiser", "not given", "Adam, lr 1e-4 -> 1e-6 log-spaced, weight decay 1e-4 on all parameters"),
    ("λ", "0.1; 8 for AlexNet", "alpha = 0.5 by default"),
    ("Var(x)", "one scalar mean over images and elements (4.2)", "per-channel means (Variance.py)"),
)
