"""What every study's report part uses: claims with their intervals, figures, tables, reading results.

A study's ``report(ctx)`` returns a :class:`StudyReport`; kc.report lays them out in order, draws
the figures (kc.figures) and writes report/claims.json and metrics/summary.json.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kc import paper, stats
from kc.config import Config
from kc.io import read_json, read_npz
from kc.paths import Paths


@dataclass
class Claim:
    """One of the paper's claims as measured: the rule (fixed before the run) and the 95% interval."""
    number: int
    statistic: str                 # what is measured, in words
    rule: str                      # how the verdict follows from the interval
    interval: stats.Interval | None
    boundary: float = 0.0
    side: str = ">"                # the paper's side of the boundary
    detail: str = ""               # the deciding numbers, in words

    @property
    def verdict(self) -> str:
        return stats.verdict(self.interval, self.boundary, self.side)

    def to_dict(self) -> dict:
        iv = self.interval
        finite = iv is not None and math.isfinite(iv.low) and math.isfinite(iv.high)
        return {"claim": paper.CLAIMS[self.number], "verdict": self.verdict, "statistic": self.statistic,
                "estimate": iv.estimate if iv is not None and math.isfinite(iv.estimate) else None,
                "ci95": [iv.low, iv.high] if finite else None, "n": dict(iv.n) if iv is not None else {},
                "rule": self.rule, "detail": self.detail}


def not_run(number: int, why: str) -> Claim:
    return Claim(number, "-", "not run: " + why, None, detail=why)


@dataclass
class Figure:
    """A figure of the report, drawn by kc.figures from this data."""
    name: str                      # report/<name>.png
    kind: str                      # components | curve | heatmap | scatter
    title: str
    data: dict
    caption: str = ""


@dataclass
class StudyReport:
    key: str
    title: str
    text: str
    claims: list[Claim] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    summary: dict = field(default_factory=dict)       # numbers for metrics/summary.json
    plots: dict = field(default_factory=dict)         # plots/<name>.csv rows


class Context:
    """What a study's report reads: the config and the run's results, with the bootstrap settings."""

    def __init__(self, cfg: Config, root: str | Path = "."):
        self.cfg, self.root, self.paths = cfg, Path(root), Paths(root)
        self.draws = cfg.report["draws"]
        self._cache: dict = {}

    def metrics(self, study: str, entry: str) -> dict:
        return self._read(self.paths.results(study, entry) / "metrics.json", read_json)

    def net_metrics(self, net_set: str) -> dict:
        return self._read(self.paths.net_results(net_set) / "metrics.json", read_json)

    def net_correct(self, net_set: str) -> dict:
        return self._read(self.paths.net_results(net_set) / "correct.npz", read_npz)

    def results(self, study: str, entry: str, name: str) -> dict:
        return self._read(self.paths.results(study, entry) / name, read_npz)

    def _read(self, path: Path, reader):
        if path not in self._cache:
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing: run the stage that writes it (dvc repro)")
            self._cache[path] = reader(path)
        return self._cache[path]


# ------------------------------------------------------------------------------------------------
# Per-image moments (kc.pipeline.pairs.measure): quantities along axis 1
# ------------------------------------------------------------------------------------------------
def delta_moments(m: np.ndarray) -> np.ndarray:
    return m[:, -3]


def target_moments(m: np.ndarray) -> np.ndarray:
    return m[:, -2]


def orders_of(m: np.ndarray) -> int:
    """K + 1, the number of components x^(0) .. x^(K) stored."""
    return m.shape[1] - 3


def stack(moments: list[np.ndarray]) -> np.ndarray:
    """(pairs, images, quantities, 3) from one (images, quantities, 3) array per pair."""
    return np.stack(moments)


def pair_variances(m: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(draws, pairs, quantities) pooled variances from stacked moments (pairs, images, q, 3)."""
    return stats.pooled_variance(np.moveaxis(m, 1, 2), w)      # moments (pairs, q, images, 3)


def pair_mean(values: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mean over pairs (last axis of ``values``, (draws, pairs)) under pair resampling weights v."""
    return (values * v).sum(axis=1) / values.shape[1]


def accuracy_draws(c: np.ndarray):
    """(w, v) -> (draws,) accuracy of one classifier row, correctness (seeds, images), under the
    bootstrap's image weights w (draws, images) and seed weights v (draws, seeds)."""
    S, N = c.shape
    c = c.astype(np.float64)
    return lambda w, v: (v * (c @ w.T).T).sum(axis=1) / (S * N)


def ratio_draws(m: np.ndarray, w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mean over pairs of Var(x^Δ)/Var(x*) per draw, from stacked moments."""
    var = pair_variances(m, w)
    return pair_mean(var[..., -3] / var[..., -2], v)


# ------------------------------------------------------------------------------------------------
# Formatting
# ------------------------------------------------------------------------------------------------
def fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def pct(x: Any, digits: int = 2) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}"


def ci(iv: stats.Interval | None, digits: int = 3, scale: float = 1.0) -> str:
    """``0.123 [0.110, 0.137]``."""
    if iv is None:
        return "–"
    return f"{fmt(iv.estimate * scale, digits)} [{fmt(iv.low * scale, digits)}, {fmt(iv.high * scale, digits)}]"


def table(rows: list[dict]) -> str:
    """A Markdown table from dicts with the same keys (values already formatted)."""
    if not rows:
        return "(none)\n"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(r.get(h, "")) for h in header) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def combined_interval(parts: list[tuple[int, int, Any]], reduce, draws: int, seed: int, n: dict) -> stats.Interval:
    """One statistic over several parts (columns, layers, ...): ``reduce`` (e.g. np.min, np.mean over
    axis 0) of each part's ``fn(image_weights, pair_weights) -> (draws,)``.

    ``parts``: (n_images, n_pairs, fn). Every part is bootstrapped with the same seed, so parts on the
    same test images get the same resampled images (paired) and the same resampled pair indices
    (the same nets at another layer are resampled together)."""
    samples = np.stack([stats.bootstrap(fn, ni, np_, draws=draws, seed=seed) for ni, np_, fn in parts])
    estimates = np.array([stats.full_data(fn, ni, np_) for ni, np_, fn in parts])
    return stats.percentile_interval(reduce(samples, axis=0), float(reduce(estimates, axis=0)), n=n)


def list_of_populations(value, cfg: Config, key: str) -> list[str]:
    """A study section that is a list of population names (None: none)."""
    from kc.config import ConfigError, Section

    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be a list of population names (nets.<name>), got {value!r}")
    return Section({key: value}, "").names(key, cfg.nets, "population of nets", minimum=0)


def entries(value, key: str):
    """A study section that maps entry names to settings: [(name, Section of its settings)]."""
    from kc.config import Section

    s = Section({key: value}, "")
    names = s.entries(key, {})
    return [(name, s.sub(key).sub(name)) for name in names]


def write_metrics(root, study: str, entry: str, data: dict, folder: Path) -> None:
    """A study entry's numbers: into its results folder (``folder``, being built; the report reads it)
    and into metrics/<study>/<entry>.json (git-tracked, for `dvc metrics diff`)."""
    from kc.io import write_json

    write_json(Path(folder) / "metrics.json", data)
    write_json(Paths(root).metrics(study, entry), data)
