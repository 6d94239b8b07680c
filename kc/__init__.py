"""kc: knowledge consistency between neural networks (Liang et al., ICLR 2020).

    from kc import ConsistencyNet, fit, decompose
    kc.compare(model_a, model_b, images, layers_a, layers_b)   # -> kc.Comparison (the module is callable)
    import kc.models, kc.similarity          # submodules also load on first attribute access: kc.models

Submodules are imported lazily, so stages that need only part of the library start fast.
"""
import importlib

__version__ = "0.1.0"

_SUBMODULES = {"consistency", "similarity", "stats", "data", "models", "archs", "train", "features", "classifiers",
               "readings", "studies", "report", "figures", "config", "paths", "pipeline", "paper", "io", "cli", "compare",
               "plan", "stage", "launch", "codedeps", "util"}
_EXPORTS = {"ConsistencyNet": "consistency", "fit": "consistency", "decompose": "consistency",
            "variances": "consistency", "Decomposition": "consistency", "linear_cka": "similarity",
            "linear_predictivity": "similarity", "Comparison": "compare"}

__all__ = sorted(_SUBMODULES | set(_EXPORTS))


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"kc.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"kc.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'kc' has no attribute {name!r}")
