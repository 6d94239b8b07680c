"""Intervals and tests behind every verdict: paired, hierarchical bootstrap by resampling weights.

Each claim of the paper is decided on a 95% interval (DESIGN.md, "Verdicts carry uncertainty").
Every interval here is a percentile bootstrap (Efron & Tibshirani 1993, ch. 13) over the *test
images*, paired (all rows, pairs and levels measured on the same images get the same resampled
images), and hierarchical when there are >= 2 seeds or pairs of nets (seeds/pairs are resampled
independently of the images; Davison & Hinkley 1997, sec. 3.8; Saravanan et al. 2020). A resample
is a row of multinomial counts, so pooled statistics are matrix products (draws x n) @ (n x k)::

    from kc import stats
    iv = stats.accuracy_difference(correct_refined, correct_raw, seed=0)    # (seeds, images) bools
    iv.to_dict()                 # {"estimate": 0.012, "ci95": [0.004, 0.02], "n": {"images": 10000, "seeds": 3}}
    stats.verdict(iv)            # "holds" | "does not hold" | "inconclusive" | "not run"

    m_delta = stats.image_moments(x_delta)        # (N, 3) [count, sum, sum of squares] per image
    m_star = stats.image_moments(x_star)          # stack pairs -> (pairs, N, 3)
    stats.ratio_interval(m_delta, m_star)         # Var(x^Δ)/Var(x*) averaged over pairs (Sec. 4.2)
    stats.trend_interval(thresholds, moments_per_threshold)    # Spearman of level vs Var(x^Δ)

    # any joint statistic from the same weights (e.g. "both gains > 0" as the min of two gains):
    stats.bootstrap_interval(lambda w, v: np.minimum(w @ gain1, w @ gain2) / n, n_images=n)

Everything is deterministic given ``seed``: images and seeds/pairs are drawn from two independent
streams spawned from ``np.random.default_rng(seed)``, and the chunking that bounds memory does not
change the draws. Results are in the statistic's own units (accuracy as a fraction, not percent).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

DRAWS = 2000
LEVEL = 0.95
# Weights are generated and consumed in chunks of at most this many elements (draws x images),
# ~32 MiB of float64; the draws do not depend on it.
MAX_ELEMENTS = 1 << 22

VERDICTS = ("holds", "does not hold", "inconclusive", "not run")


# ---------------------------------------------------------------------------------------------------
# the interval
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A statistic on the full data and its bootstrap percentile interval.

    ``n`` holds the sizes behind it, e.g. ``{"images": 10000, "seeds": 3}``; ``level`` the coverage.
    """

    estimate: float
    low: float
    high: float
    n: dict = field(default_factory=dict)
    level: float = LEVEL

    def as_list(self) -> list[float]:
        return [float(self.low), float(self.high)]

    @property
    def finite(self) -> bool:
        return bool(np.isfinite([self.estimate, self.low, self.high]).all())

    def to_dict(self) -> dict:
        """JSON-ready: ``{"estimate", "ci95": [low, high], "n"}`` (non-finite numbers become None;
        ``"level"`` is added when the level is not 0.95, the key stays ``ci95``)."""
        out = {"estimate": _json_float(self.estimate),
               "ci95": [_json_float(self.low), _json_float(self.high)],
               "n": {k: _json_value(v) for k, v in self.n.items()}}
        if not math.isclose(self.level, LEVEL):
            out["level"] = float(self.level)
        return out


def _json_float(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _json_value(v: Any) -> Any:
    if isinstance(v, (np.integer, int)):
        return int(v)
    if isinstance(v, (list, tuple)):
        return [_json_value(u) for u in v]
    if isinstance(v, (np.floating, float)):
        return _json_float(v)
    return v


# ---------------------------------------------------------------------------------------------------
# resampling
# ---------------------------------------------------------------------------------------------------
def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def resample_weights(n: int, draws: int, rng: np.random.Generator | int | None) -> np.ndarray:
    """(draws, n) float64 multinomial counts, each row summing to n: ``draws`` bootstrap resamples
    with replacement of n items (Efron 1979), as weights (row r counts how often item i was drawn).

    Built as ``bincount`` of ``rng.integers(0, n, (draws, n))``, so row r equals the counts of the
    materialised resample ``idx[r]``; consecutive calls on one generator continue the same stream.
    """
    n, draws = _check_count(n, "n", 1), _check_count(draws, "draws", 1)
    idx = _rng(rng).integers(0, n, size=(draws, n), dtype=np.int64)
    idx += (np.arange(draws, dtype=np.int64) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=draws * n).reshape(draws, n).astype(np.float64)


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for images and for seeds/pairs, spawned from default_rng(seed)."""
    images, groups = np.random.default_rng(seed).spawn(2)
    return images, groups


def bootstrap(statistic: Callable[..., np.ndarray], n_images: int,
              n_seeds: int | Sequence[int] = 1, *, draws: int = DRAWS, seed: int = 0,
              max_elements: int = MAX_ELEMENTS) -> np.ndarray:
    """Draws of ``statistic`` under the paired, hierarchical bootstrap: shape (draws,).

    ``statistic(image_weights (d, n_images), seed_weights) -> (d,)`` is called on chunks of d
    draws. Image weights are multinomial resamples of the images, the same for every row/pair/seed
    the statistic touches (paired). ``seed_weights`` is a (d, n_seeds) array of multinomial
    resamples of the seeds, drawn independently of the images (two-level bootstrap); with
    n_seeds < 2 it is all ones (nothing to resample). ``n_seeds`` may be a sequence of group sizes
    (e.g. pairs of two settings resampled within each setting): then ``seed_weights`` is a list of
    (d, size) arrays, one per group. The full-data statistic is ``statistic(ones, ones)``; see
    :func:`bootstrap_interval`.
    """
    n_images = _check_count(n_images, "n_images", 2)
    draws = _check_count(draws, "draws", 1)
    grouped = not isinstance(n_seeds, (int, np.integer))
    sizes = [_check_count(s, "n_seeds", 1) for s in (n_seeds if grouped else [n_seeds])]
    if not sizes:
        raise ValueError("n_seeds: give at least one group size")
    image_rng, group_rng = _streams(seed)
    chunk = max(1, int(max_elements) // n_images)
    out = np.empty(draws, dtype=np.float64)
    for start in range(0, draws, chunk):
        d = min(chunk, draws - start)
        w = resample_weights(n_images, d, image_rng)
        v = [resample_weights(s, d, group_rng) if s >= 2 else np.ones((d, s)) for s in sizes]
        values = np.asarray(statistic(w, v if grouped else v[0]), dtype=np.float64)
        if values.shape != (d,):
            raise ValueError(f"statistic: must return shape (draws,) = ({d},), got {values.shape}")
        out[start:start + d] = values
    return out


def full_data(statistic: Callable[..., np.ndarray], n_images: int,
              n_seeds: int | Sequence[int] = 1) -> float:
    """``statistic`` on the full data: unit weights for every image and every seed."""
    grouped = not isinstance(n_seeds, (int, np.integer))
    ones = [np.ones((1, int(s))) for s in (n_seeds if grouped else [n_seeds])]
    value = np.asarray(statistic(np.ones((1, int(n_images))), ones if grouped else ones[0]))
    return float(value.reshape(-1)[0])


def bootstrap_interval(statistic: Callable[..., np.ndarray], n_images: int,
                       n_seeds: int | Sequence[int] = 1, *, draws: int = DRAWS, seed: int = 0,
                       level: float = LEVEL, n: dict | None = None) -> Interval:
    """:func:`bootstrap` plus the full-data estimate, as a percentile :class:`Interval`."""
    samples = bootstrap(statistic, n_images, n_seeds, draws=draws, seed=seed)
    if n is None:
        n = {"images": int(n_images)}
        if isinstance(n_seeds, (int, np.integer)):
            n["seeds"] = int(n_seeds)
        else:
            n["seeds"] = [int(s) for s in n_seeds]
    return percentile_interval(samples, full_data(statistic, n_images, n_seeds), level, n)


def percentile_interval(draws: np.ndarray, estimate: float, level: float = LEVEL,
                        n: dict | None = None) -> Interval:
    """Percentile bootstrap interval (Efron & Tibshirani 1993, sec. 13.3): the (1-level)/2 and
    (1+level)/2 quantiles of the draws (linear interpolation). Any non-finite draw makes the
    interval non-finite (nan), which :func:`verdict` reports as "inconclusive" (the data cannot
    decide) rather than silently dropping the resamples where the statistic is undefined."""
    draws = np.asarray(draws, dtype=np.float64).reshape(-1)
    if draws.size == 0:
        raise ValueError("draws: empty; need at least one bootstrap draw")
    level = _check_level(level)
    if np.isfinite(draws).all():
        low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    else:
        low = high = math.nan
    return Interval(float(estimate), float(low), float(high), dict(n or {}), float(level))


# ---------------------------------------------------------------------------------------------------
# accuracies of classifiers on the same test images (paired)
# ---------------------------------------------------------------------------------------------------
def accuracy_difference(correct_a, correct_b, *, draws: int = DRAWS, seed: int = 0,
                        level: float = LEVEL) -> Interval:
    """Accuracy of row a minus row b on the same test images, with a paired two-level interval.

    ``correct_*``: bool or 0/1, shaped (seeds, images) or (images,); seed s of a is paired with
    seed s of b. Estimate: mean over seeds and images of a - b (a fraction). Bootstrap: the images
    are resampled once per draw and used for every seed and both rows (paired); the seeds are
    resampled independently when there are >= 2 (hierarchical bootstrap, Davison & Hinkley 1997,
    sec. 3.8). With few seeds (2-3) the seed level is coarse; the two-level bootstrap tends to be
    conservative when seeds differ only by image noise.
    """
    a = _correctness(correct_a, "correct_a")
    b = _correctness(correct_b, "correct_b")
    _check_same_shape(a, b, "correct_a", "correct_b", ("seeds", "images"))
    diff = a - b                                            # (S, n)
    n_seeds, n_images = diff.shape

    def statistic(w: np.ndarray, v: np.ndarray) -> np.ndarray:
        per_seed = (w @ diff.T) / n_images                  # (d, S): accuracy difference per seed
        return (per_seed * v).sum(axis=1) / n_seeds         # seed-weighted mean

    return bootstrap_interval(statistic, n_images, n_seeds, draws=draws, seed=seed, level=level,
                              n={"images": n_images, "seeds": n_seeds})


def accuracy_differences(rows: dict[str, np.ndarray], pairs: list[tuple[str, str]], *,
                         draws: int = DRAWS, seed: int = 0,
                         level: float = LEVEL) -> dict[tuple[str, str], Interval]:
    """:func:`accuracy_difference` for each (a, b) in ``pairs`` of named ``rows``, keyed by (a, b).

    Every pair uses the same ``seed``, hence the same resampled images and seeds: the intervals are
    computed on one common set of resamples."""
    out = {}
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"pairs: each entry must be (name_a, name_b), got {pair!r}")
        for name in pair:
            if name not in rows:
                raise ValueError(f"pairs: {name!r} is not a key of rows (have {sorted(rows)})")
        a, b = pair
        out[(a, b)] = accuracy_difference(rows[a], rows[b], draws=draws, seed=seed, level=level)
    return out


def mcnemar(correct_a, correct_b) -> dict:
    """Exact two-sided McNemar test (McNemar 1947; exact binomial form, Fagerland et al. 2013) for
    one seed: ``{"b": a right & b wrong, "c": a wrong & b right, "n": images, "p_value"}``,
    p = min(1, 2 * P(X <= min(b, c))), X ~ Binomial(b + c, 1/2); p = 1 when b + c = 0."""
    from scipy.stats import binom

    a = _correctness(correct_a, "correct_a")
    b = _correctness(correct_b, "correct_b")
    _check_same_shape(a, b, "correct_a", "correct_b", ("seeds", "images"))
    if a.shape[0] != 1:
        raise ValueError(f"correct_a: mcnemar takes one seed, shaped (images,) or (1, images); "
                         f"got {a.shape[0]} seeds")
    ra, rb = a[0].astype(bool), b[0].astype(bool)
    n_b, n_c = int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))
    p = 1.0 if n_b + n_c == 0 else min(1.0, 2.0 * float(binom.cdf(min(n_b, n_c), n_b + n_c, 0.5)))
    return {"b": n_b, "c": n_c, "n": int(ra.size), "p_value": p}


# ---------------------------------------------------------------------------------------------------
# variances and variance ratios from per-image sufficient statistics
# ---------------------------------------------------------------------------------------------------
def image_moments(x, *, shift: float = 0.0, batch: int = 256) -> np.ndarray:
    """(N, ...) batch -> (N, 3) float64 ``[count, sum, sum of squares]`` of each image's elements.

    Accumulates in float64, ``batch`` images at a time (memory bounded). ``shift`` stores moments of
    x - shift: the pooled variance is unchanged and cancellation in S2 - S1^2/N is smaller when the
    shift is near the mean (Chan, Golub & LeVeque 1983); use one shift for moments that are pooled.
    Accepts a torch tensor (any device) or a numpy / memory-mapped array."""
    try:
        import torch
    except ImportError:                                     # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(x, torch.Tensor):
        flat = x.detach().reshape(x.shape[0], math.prod(x.shape[1:])) if x.ndim else x
        to64 = lambda t: t.to(torch.float64).cpu().numpy()  # noqa: E731
    else:
        x = x if isinstance(x, np.ndarray) else np.asarray(x)
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise ValueError(f"x: must be numeric, got dtype {x.dtype}")
        flat = x.reshape(x.shape[0], math.prod(x.shape[1:])) if x.ndim else x
        to64 = lambda t: np.asarray(t, dtype=np.float64)  # noqa: E731
    if x.ndim == 0:
        raise ValueError("x: must be a batch shaped (N, ...), got a scalar")
    n, k = flat.shape
    if n == 0 or k == 0:
        raise ValueError(f"x: empty batch of shape {tuple(x.shape)}; need N >= 1 images of >= 1 element")
    out = np.empty((n, 3), dtype=np.float64)
    out[:, 0] = k
    for start in range(0, n, batch):
        block = to64(flat[start:start + batch]) - shift
        if not np.isfinite(block).all():
            raise ValueError("x: contains NaN or infinite values")
        out[start:start + batch, 1] = block.sum(axis=1)
        out[start:start + batch, 2] = np.einsum("ij,ij->i", block, block)
    return out


def pooled_variance(moments: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray | float:
    """Var(x) of Sec. 4.2: every element of every image pooled around ONE scalar mean (ddof=0),
    ``(S2 - S1^2/N) / N`` from per-image moments.

    ``moments``: (n, 3) or (..., n, 3) ``[count, sum, sumsq]``. ``weights``: None (the full data)
    -> a float for (n, 3), an array (...) otherwise; or (draws, n) resampling weights -> (draws,)
    or (draws, ...), each image's moments counted ``weights[r, i]`` times (one matrix product)."""
    m = _check_moments(moments, "moments")
    if weights is None:
        totals = m.sum(axis=-2)                             # (..., 3)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != m.shape[-2]:
            raise ValueError(f"weights: must be (draws, n) with n = {m.shape[-2]} images, got {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("weights: must be finite and >= 0")
        lead = m.shape[:-2]
        flat = np.moveaxis(m, -2, 0).reshape(m.shape[-2], -1)     # (n, prod(lead) * 3)
        totals = (w @ flat).reshape((w.shape[0],) + lead + (3,))
    count, s1, s2 = totals[..., 0], totals[..., 1], totals[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.maximum(s2 - s1 * s1 / count, 0.0) / count
    return float(var) if np.ndim(var) == 0 else var


def _pair_mean(values: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pair-weighted mean over the last axis: values (d, P), pair weights v (d, P) summing to P."""
    return (values * v).sum(axis=1) / values.shape[1]


def _ratios(delta: np.ndarray, target: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(d, P) Var(delta_p) / Var(target_p) under image weights w."""
    var = pooled_variance(np.stack([delta, target]), w)      # (d, 2, P)
    with np.errstate(divide="ignore", invalid="ignore"):
        return var[:, 0] / var[:, 1]


def ratio_interval(delta: np.ndarray, target: np.ndarray, *, draws: int = DRAWS, seed: int = 0,
                   level: float = LEVEL) -> Interval:
    """Mean over pairs of Var(x^Δ_p) / Var(x*_p) (Sec. 4.2: instability "averaged over all pairs of
    neural networks"), with a paired, hierarchical percentile interval.

    ``delta``, ``target``: per-image moments (:func:`image_moments`) of x^Δ and x*, shaped
    (pairs, images, 3) or (images, 3) for one pair. All pairs are measured on the same test images,
    so one resample of the images serves every pair (paired); with >= 2 pairs the pairs are
    resampled too, independently (two-level bootstrap). Ordered pairs that share nets (A->B, B->A,
    A->C, ...) are not independent, so the pair level is approximate: it treats pairs as the
    sampling unit, which understates between-net dependence when nets recur across pairs.
    """
    d, t = _moment_pair(delta, target, "delta", "target")
    n_pairs, n_images = d.shape[0], d.shape[1]

    def statistic(w, v):
        return _pair_mean(_ratios(d, t, w), v)

    return bootstrap_interval(statistic, n_images, n_pairs, draws=draws, seed=seed, level=level,
                              n={"images": n_images, "pairs": n_pairs})


def ratio_difference_interval(first: tuple[np.ndarray, np.ndarray],
                              second: tuple[np.ndarray, np.ndarray], *, pairs: str = "independent",
                              draws: int = DRAWS, seed: int = 0, level: float = LEVEL) -> Interval:
    """ratio(first) - ratio(second), each the :func:`ratio_interval` statistic of a (delta, target)
    moments tuple, both settings measured on the same test images (paired over images).

    ``pairs="independent"`` (default) resamples the pairs within each setting separately (e.g.
    seeds vs data splits: different nets); ``pairs="paired"`` resamples pair p of both settings
    together (the same nets in two layers or two settings; needs equal pair counts)."""
    d1, t1 = _moment_pair(*_tuple2(first, "first"), "first[0]", "first[1]")
    d2, t2 = _moment_pair(*_tuple2(second, "second"), "second[0]", "second[1]")
    _check_same_images(d1, d2, "first", "second")
    sizes, group = _pair_groups(d1.shape[0], d2.shape[0], pairs, "first", "second")

    def statistic(w, v):
        v1, v2 = (v[0], v[0]) if len(v) == 1 else v
        return _pair_mean(_ratios(d1, t1, w), v1) - _pair_mean(_ratios(d2, t2, w), v2)

    n = {"images": d1.shape[1], **group}
    return bootstrap_interval(statistic, d1.shape[1], sizes, draws=draws, seed=seed, level=level, n=n)


def variance_interval(moments: np.ndarray, *, draws: int = DRAWS, seed: int = 0,
                      level: float = LEVEL, group: str = "pairs") -> Interval:
    """Mean over pairs (or seeds; ``group`` names them in ``n``) of the pooled Var of one quantity,
    e.g. Var(x^Δ); moments (pairs, images, 3) or (images, 3). Images resampled jointly across pairs,
    pairs resampled when >= 2 (see :func:`ratio_interval` for the caveat on shared nets)."""
    m = _check_moments(moments, "moments", stack=True)
    n_pairs, n_images = m.shape[0], m.shape[1]

    def statistic(w, v):
        return _pair_mean(pooled_variance(m, w), v)

    return bootstrap_interval(statistic, n_images, n_pairs, draws=draws, seed=seed, level=level,
                              n={"images": n_images, group: n_pairs})


def variance_difference_interval(first_moments: np.ndarray, second_moments: np.ndarray, *,
                                 pairs: str = "paired", draws: int = DRAWS, seed: int = 0,
                                 level: float = LEVEL) -> Interval:
    """Mean-over-pairs Var(first) - Var(second), e.g. Var(x^(0)) - Var(x^(1)), paired over images.

    ``pairs="paired"`` (default: both quantities come from the same fitted pairs) resamples pair p
    of both together; ``"independent"`` resamples each side's pairs separately."""
    a = _check_moments(first_moments, "first_moments", stack=True)
    b = _check_moments(second_moments, "second_moments", stack=True)
    _check_same_images(a, b, "first_moments", "second_moments")
    sizes, group = _pair_groups(a.shape[0], b.shape[0], pairs, "first_moments", "second_moments")

    def statistic(w, v):
        v1, v2 = (v[0], v[0]) if len(v) == 1 else v
        return _pair_mean(pooled_variance(a, w), v1) - _pair_mean(pooled_variance(b, w), v2)

    n = {"images": a.shape[1], **group}
    return bootstrap_interval(statistic, a.shape[1], sizes, draws=draws, seed=seed, level=level, n=n)


# ---------------------------------------------------------------------------------------------------
# trends over levels
# ---------------------------------------------------------------------------------------------------
def _average_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..L along the last axis, ties get the average of their ranks (vectorised)."""
    a = np.asarray(a, dtype=np.float64)
    length = a.shape[-1]
    order = np.argsort(a, axis=-1, kind="stable")
    s = np.take_along_axis(a, order, axis=-1)
    idx = np.broadcast_to(np.arange(length), a.shape)
    new = np.ones(a.shape, dtype=bool)
    new[..., 1:] = s[..., 1:] != s[..., :-1]                  # a tie group starts here
    last = np.ones(a.shape, dtype=bool)
    last[..., :-1] = new[..., 1:]                            # a tie group ends here
    start = np.maximum.accumulate(np.where(new, idx, 0), axis=-1)
    end = np.flip(np.minimum.accumulate(np.flip(np.where(last, idx, length), -1), axis=-1), -1)
    ranks = np.empty(a.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=-1)
    return ranks


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of the 1-D x with each row of y (d, L); nan where a side is constant."""
    xc = x - x.mean()
    yc = y - y.mean(axis=-1, keepdims=True)
    sx, sy = np.sqrt((xc * xc).sum()), np.sqrt((yc * yc).sum(axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (yc @ xc) / (sx * sy)
    r = np.where((sx > 0) & (sy > 0), r, np.nan)
    return np.clip(r, -1.0, 1.0)


def spearman(x, y) -> float:
    """Spearman's rank correlation (Spearman 1904): Pearson correlation of average ranks (ties
    share their mean rank), as scipy.stats.spearmanr; nan for < 2 points or a constant side."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"y: must have the same length as x ({x.size}), got {y.size}")
    if x.size < 2:
        return math.nan
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x, y: must be finite (no NaN or infinity)")
    return float(_pearson_rows(_average_ranks(x), _average_ranks(y)[None])[0])


def _slope_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of y (d, L) on x (L,)."""
    xc = x - x.mean()
    return (y - y.mean(axis=-1, keepdims=True)) @ xc / (xc * xc).sum()


def trend_interval(levels, per_image_values, statistic: str = "spearman", *, n_images: int | None = None,
                   draws: int = DRAWS, seed: int = 0, level: float = LEVEL) -> Interval:
    """Trend of y over levels (pruning thresholds, born-again generations) with a paired interval.

    ``levels``: (L,) x-values, at least 2 distinct. ``per_image_values``: either per-level moments
    (L, images, 3), y_l = :func:`pooled_variance` (e.g. Var(x^Δ) per threshold), or a callable
    ``y(weights (d, images)) -> (d, L)`` for any other y (then pass ``n_images``), e.g. the accuracy
    drop from per-image correctness. Every level is evaluated on the SAME resampled images
    (paired). ``statistic``: "spearman" (rank correlation of levels vs y; interval of a discrete
    statistic, so e.g. [1, 1] with 4 clearly separated levels) or "slope" (least squares, y per
    unit of level)."""
    x = np.asarray(levels, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"levels: must be 1-D with >= 2 levels, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("levels: must be finite")
    if np.unique(x).size < 2:
        raise ValueError("levels: need at least 2 distinct values")
    if statistic not in ("spearman", "slope"):
        raise ValueError(f"statistic: must be 'spearman' or 'slope', got {statistic!r}")
    if callable(per_image_values):
        if n_images is None:
            raise ValueError("n_images: required when per_image_values is a callable y(weights)")
        y_of = per_image_values
    else:
        m = _check_moments(per_image_values, "per_image_values", stack=True)
        if m.shape[0] != x.size:
            raise ValueError(f"per_image_values: first axis must have one entry per level "
                             f"({x.size}), got {m.shape[0]}")
        n_images = m.shape[1]
        y_of = lambda w: pooled_variance(m, w)              # noqa: E731  (d, L)
    n_images = _check_count(n_images, "n_images", 2)
    rank_x = _average_ranks(x)

    def stat(w, v):
        y = np.asarray(y_of(w), dtype=np.float64)
        if y.shape != (w.shape[0], x.size):
            raise ValueError(f"per_image_values: y(weights) must return (draws, L) = "
                             f"({w.shape[0]}, {x.size}), got {y.shape}")
        if statistic == "slope":
            return _slope_rows(x, y)
        return _pearson_rows(rank_x, _average_ranks(y))

    return bootstrap_interval(stat, n_images, 1, draws=draws, seed=seed, level=level,
                              n={"images": n_images, "levels": int(x.size)})


# ---------------------------------------------------------------------------------------------------
# verdicts
# ---------------------------------------------------------------------------------------------------
def verdict(interval: Interval | None, boundary: float = 0.0, paper_side: str = ">") -> str:
    """The claim's verdict from its interval: "holds" when the whole interval lies on the paper's
    side of ``boundary`` (">": low > boundary; "<": high < boundary), "does not hold" when it lies
    entirely on the other side, "inconclusive" when it straddles or touches the boundary or is
    non-finite (the statistic is undefined on some resamples, e.g. a rank correlation of a constant:
    the run happened and its data cannot decide), and "not run" for None (nothing was measured)."""
    if paper_side not in (">", "<"):
        raise ValueError(f"paper_side: must be '>' or '<', got {paper_side!r}")
    if interval is None:
        return "not run"
    low, high = float(interval.low), float(interval.high)
    if not math.isfinite(float(boundary)):
        raise ValueError(f"boundary: must be finite, got {boundary!r}")
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    above, below = low > boundary, high < boundary
    if paper_side == ">":
        return "holds" if above else "does not hold" if below else "inconclusive"
    return "holds" if below else "does not hold" if above else "inconclusive"


def combine(verdicts: list[str]) -> str:
    """One verdict from several: all "holds" -> "holds"; any "does not hold" -> "does not hold";
    all (or none given) "not run" -> "not run"; anything else -> "inconclusive"."""
    verdicts = list(verdicts)
    for v in verdicts:
        if v not in VERDICTS:
            raise ValueError(f"verdicts: {v!r} is not one of {VERDICTS}")
    if not verdicts or all(v == "not run" for v in verdicts):
        return "not run"
    if "does not hold" in verdicts:
        return "does not hold"
    if all(v == "holds" for v in verdicts):
        return "holds"
    return "inconclusive"


# ---------------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------------
def _check_count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be in (0, 1), got {level!r}")
    return level


def _correctness(values: Any, name: str) -> np.ndarray:
    """bool/0-1 array (seeds, images) or (images,) -> float64 (seeds, images)."""
    a = np.asarray(values)
    if a.dtype == object or not (a.dtype == bool or np.issubdtype(a.dtype, np.number)):
        raise ValueError(f"{name}: must be a bool or 0/1 array, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise ValueError(f"{name}: must be shaped (seeds, images) or (images,), got {np.shape(values)}")
    if a.size == 0:
        raise ValueError(f"{name}: empty; need >= 1 seed and >= 2 images")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or infinite values; allowed are bool or 0/1")
    if not np.isin(a, (0.0, 1.0)).all():
        raise ValueError(f"{name}: values must be bool or 0/1 (per-image correctness)")
    if a.shape[1] < 2:
        raise ValueError(f"{name}: need >= 2 images, got {a.shape[1]}")
    return a


def _check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str,
                      axes: tuple[str, str]) -> None:
    for axis, label in enumerate(axes):
        if a.shape[axis] != b.shape[axis]:
            raise ValueError(f"{name_b}: has {b.shape[axis]} {label} but {name_a} has {a.shape[axis]}; "
                             f"they must match ({label} are paired)")


def _check_moments(moments: Any, name: str, stack: bool = False) -> np.ndarray:
    """Per-image moments (..., n, 3) [count, sum, sumsq]; ``stack``: exactly (n, 3) -> (1, n, 3)
    or (G, n, 3)."""
    m = np.asarray(moments, dtype=np.float64)
    if m.ndim < 2 or m.shape[-1] != 3:
        raise ValueError(f"{name}: must be per-image moments shaped (..., images, 3) "
                         f"[count, sum, sumsq], got {np.shape(moments)}")
    if stack:
        if m.ndim == 2:
            m = m[None]
        if m.ndim != 3:
            raise ValueError(f"{name}: must be shaped (images, 3) or (pairs, images, 3), got {m.shape}")
    if m.size == 0 or 0 in m.shape:
        raise ValueError(f"{name}: empty, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    if (m[..., 0] <= 0).any():
        raise ValueError(f"{name}: counts (column 0) must be > 0")
    if (m[..., 2] < 0).any():
        raise ValueError(f"{name}: sums of squares (column 2) must be >= 0")
    if stack and m.shape[1] < 2:
        raise ValueError(f"{name}: need >= 2 images, got {m.shape[1]}")
    return m


def _moment_pair(delta: Any, target: Any, name_d: str, name_t: str) -> tuple[np.ndarray, np.ndarray]:
    d = _check_moments(delta, name_d, stack=True)
    t = _check_moments(target, name_t, stack=True)
    if d.shape != t.shape:
        raise ValueError(f"{name_t}: shape {t.shape} must equal {name_d}'s {d.shape} "
                         f"(same pairs, same images)")
    return d, t


def _tuple2(value: Any, name: str) -> tuple[Any, Any]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name}: must be a (delta, target) tuple of moments")
    return value[0], value[1]


def _check_same_images(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{name_b}: has {b.shape[1]} images but {name_a} has {a.shape[1]}; "
                         f"both must be measured on the same test images")


def _pair_groups(p1: int, p2: int, pairs: str, name_a: str, name_b: str) -> tuple[list[int], dict]:
    if pairs == "paired":
        if p1 != p2:
            raise ValueError(f"{name_b}: has {p2} pairs but {name_a} has {p1}; pairs='paired' needs "
                             f"equal counts (use pairs='independent')")
        return [p1], {"pairs": p1}
    if pairs == "independent":
        return [p1, p2], {"pairs": [p1, p2]}
    raise ValueError(f"pairs: must be 'paired' or 'independent', got {pairs!r}")
