"""kc.stats: bootstrap intervals cover planted truths, exact identities of the pooled statistics,
exact McNemar, Spearman as scipy, verdict rules, and input validation."""
import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from kc import stats
from kc.stats import Interval


# --------------------------------------------------------------------------------------- resampling
def test_resample_weights_are_counts_of_a_materialised_resample():
    w = stats.resample_weights(50, 7, np.random.default_rng(3))
    idx = np.random.default_rng(3).integers(0, 50, size=(7, 50))
    assert w.dtype == np.float64 and w.shape == (7, 50)
    np.testing.assert_array_equal(w.sum(axis=1), 50)
    np.testing.assert_array_equal(w, [np.bincount(row, minlength=50) for row in idx])
    assert not np.array_equal(w, stats.resample_weights(50, 7, np.random.default_rng(4)))


def test_bootstrap_is_deterministic_and_independent_of_chunking():
    data = np.random.default_rng(0).integers(-50, 50, size=100).astype(float)   # exact sums

    def statistic(w, v):
        return w @ data + 1000 * (v @ np.arange(3.0))

    a = stats.bootstrap(statistic, 100, 3, draws=60, seed=5)
    b = stats.bootstrap(statistic, 100, 3, draws=60, seed=5, max_elements=333)   # chunks of 3 draws
    c = stats.bootstrap(statistic, 100, 3, draws=60, seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.std() > 0


def test_grouped_seed_weights_are_separate_resamples():
    seen = {}

    def statistic(w, v):
        seen["shapes"] = [x.shape for x in v]
        np.testing.assert_array_equal(v[0].sum(1), 2)
        np.testing.assert_array_equal(v[1], 1)                          # one pair: nothing to resample
        return w[:, 0]

    stats.bootstrap(statistic, 10, [2, 1], draws=4, seed=0)
    assert seen["shapes"] == [(4, 2), (4, 1)]


def test_percentile_interval_and_serialisation():
    iv = stats.percentile_interval(np.arange(1001.0), 500.0, n={"images": np.int64(10)})
    assert iv.as_list() == pytest.approx([25.0, 975.0])
    out = iv.to_dict()
    assert out == {"estimate": 500.0, "ci95": out["ci95"], "n": {"images": 10}}
    assert out["ci95"] == pytest.approx([25.0, 975.0]) and type(out["n"]["images"]) is int
    bad = stats.percentile_interval(np.array([1.0, np.nan]), 1.0)
    assert math.isnan(bad.low) and bad.to_dict()["ci95"] == [None, None]
    assert stats.percentile_interval(np.arange(101.0), 50, level=0.9).to_dict()["level"] == 0.9


# --------------------------------------------------------------------------------------- accuracy
def _coverage(make_interval, truth, sims):
    hits = 0
    for s in range(sims):
        iv = make_interval(np.random.default_rng(1000 + s), s)
        hits += iv.low <= truth <= iv.high
    return hits / sims


def test_accuracy_difference_covers_planted_difference():
    def interval(rng, s):
        a = rng.random(500) < 0.80                                      # true difference 0.03
        b = rng.random(500) < 0.77
        return stats.accuracy_difference(a, b, draws=500, seed=s)

    coverage = _coverage(interval, 0.03, 300)
    assert 0.90 <= coverage <= 0.985, coverage


def test_accuracy_difference_estimate_units_and_pairing():
    a = np.array([[1, 1, 0, 1], [1, 0, 1, 1]], dtype=bool)
    b = np.array([[0, 1, 0, 1], [1, 0, 0, 0]], dtype=bool)
    iv = stats.accuracy_difference(a, b, draws=50)
    assert iv.estimate == pytest.approx((a.mean() - b.mean()))            # fraction, not percent
    assert iv.n == {"images": 4, "seeds": 2}
    # a one-seed 1-D input is the same as (1, images)
    assert stats.accuracy_difference(a[0], b[0], draws=50) == stats.accuracy_difference(a[:1], b[:1], draws=50)
    # identical rows: every draw is exactly 0 (paired resampling of the same images)
    same = stats.accuracy_difference(a, a, draws=50)
    assert same.as_list() == [0.0, 0.0]


def test_seed_level_resampling():
    rng = np.random.default_rng(1)
    a, b = rng.random(400) < 0.7, rng.random(400) < 0.6
    one = stats.accuracy_difference(a, b, draws=300, seed=2)
    copies = stats.accuracy_difference(np.stack([a] * 3), np.stack([b] * 3), draws=300, seed=2)
    assert copies.as_list() == pytest.approx(one.as_list(), abs=1e-12)    # identical seeds add nothing
    # seeds that disagree (per-seed differences +0.2, 0.0, -0.1) widen the interval
    a3 = np.stack([a, a, a])
    b3 = np.stack([b, a, rng.random(400) < 0.9])
    pooled = stats.accuracy_difference(a3.reshape(1, -1), b3.reshape(1, -1), draws=300, seed=2)
    hier = stats.accuracy_difference(a3, b3, draws=300, seed=2)
    assert hier.estimate == pytest.approx(pooled.estimate)
    assert hier.high - hier.low > 2 * (pooled.high - pooled.low)


def test_accuracy_differences_share_resamples():
    rng = np.random.default_rng(0)
    rows = {"x": rng.random(300) < 0.8, "y": rng.random(300) < 0.7, "z": rng.random(300) < 0.6}
    out = stats.accuracy_differences(rows, [("x", "y"), ("x", "z")], draws=100)
    assert set(out) == {("x", "y"), ("x", "z")}
    assert out[("x", "y")] == stats.accuracy_difference(rows["x"], rows["y"], draws=100)
    with pytest.raises(ValueError, match="pairs"):
        stats.accuracy_differences(rows, [("x", "w")])


def test_mcnemar_exact_binomial():
    a = np.array([1] * 10 + [0] * 2 + [1] * 30 + [0] * 8, dtype=bool)
    b = np.array([0] * 10 + [1] * 2 + [1] * 30 + [0] * 8, dtype=bool)
    out = stats.mcnemar(a, b)
    assert (out["b"], out["c"], out["n"]) == (10, 2, 50)
    assert out["p_value"] == pytest.approx(2 * sps.binom.cdf(2, 12, 0.5), rel=1e-12)
    assert out["p_value"] == pytest.approx(0.03857421875, rel=1e-12)
    assert out["p_value"] == pytest.approx(sps.binomtest(2, 12, 0.5).pvalue, rel=1e-12)
    assert stats.mcnemar(a, a)["p_value"] == 1.0                          # no discordant pairs
    assert stats.mcnemar(a[:20], b[:20])["p_value"] <= 1.0
    with pytest.raises(ValueError, match="one seed"):
        stats.mcnemar(np.stack([a, a]), np.stack([b, b]))


# --------------------------------------------------------------------------------------- verdicts
def test_verdicts_on_planted_effects():
    def rows(rng, pa, pb, n=1000):
        return rng.random(n) < pa, rng.random(n) < pb

    outcomes = [stats.verdict(stats.accuracy_difference(*rows(np.random.default_rng(s), 0.75, 0.75),
                                                        draws=400, seed=s)) for s in range(40)]
    assert outcomes.count("inconclusive") >= 34, outcomes                 # ~95% expected
    assert "holds" in outcomes or "does not hold" in outcomes or outcomes.count("inconclusive") == 40
    strong = stats.accuracy_difference(*rows(np.random.default_rng(1), 0.9, 0.6), draws=400)
    assert stats.verdict(strong) == "holds"
    assert stats.verdict(strong, paper_side="<") == "does not hold"
    opposite = stats.accuracy_difference(*rows(np.random.default_rng(2), 0.6, 0.9), draws=400)
    assert stats.verdict(opposite) == "does not hold"
    assert stats.verdict(opposite, paper_side="<") == "holds"


def test_verdict_rules():
    iv = lambda lo, hi: Interval(0.5 * (lo + hi), lo, hi, {})           # noqa: E731
    assert stats.verdict(iv(0.1, 0.2)) == "holds"
    assert stats.verdict(iv(0.0, 0.2)) == "inconclusive"                  # touching the boundary
    assert stats.verdict(iv(-0.2, -0.1)) == "does not hold"
    assert stats.verdict(iv(0.8, 0.9), boundary=1.0, paper_side="<") == "holds"
    assert stats.verdict(iv(0.8, 1.1), boundary=1.0, paper_side="<") == "inconclusive"
    assert stats.verdict(iv(1.2, 1.3), boundary=1.0, paper_side="<") == "does not hold"
    assert stats.verdict(None) == "not run"
    assert stats.verdict(iv(math.nan, 1.0)) == "inconclusive"     # measured, but undefined on some resamples
    with pytest.raises(ValueError, match="paper_side"):
        stats.verdict(iv(0, 1), paper_side=">=")


def test_combine():
    assert stats.combine(["holds", "holds"]) == "holds"
    assert stats.combine(["holds", "does not hold", "inconclusive"]) == "does not hold"
    assert stats.combine(["not run", "not run"]) == "not run"
    assert stats.combine([]) == "not run"
    assert stats.combine(["holds", "not run"]) == "inconclusive"
    assert stats.combine(["holds", "inconclusive"]) == "inconclusive"
    with pytest.raises(ValueError, match="verdicts"):
        stats.combine(["maybe"])


# --------------------------------------------------------------------------------------- variances
def test_pooled_variance_matches_numpy_with_and_without_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(40, 3, 4, 4)).astype(np.float32)
    m = stats.image_moments(torch.from_numpy(x))
    np.testing.assert_allclose(m, stats.image_moments(x, batch=7), rtol=1e-12)
    assert m.shape == (40, 3) and (m[:, 0] == 48).all()
    assert stats.pooled_variance(m) == pytest.approx(np.var(x.astype(np.float64)), rel=1e-10)
    idx = rng.integers(0, 40, size=(5, 40))
    w = np.stack([np.bincount(row, minlength=40) for row in idx]).astype(float)
    expected = [np.var(x[row].astype(np.float64)) for row in idx]        # materialised resamples
    np.testing.assert_allclose(stats.pooled_variance(m, w), expected, rtol=1e-10)
    # a leading axis of quantities: (2, n, 3) -> (draws, 2)
    stacked = stats.pooled_variance(np.stack([m, m * [1.0, 2.0, 4.0]]), w)   # x and 2x
    assert stacked.shape == (5, 2)
    np.testing.assert_allclose(stacked, np.array(expected)[:, None] * [1, 4], rtol=1e-10)
    # a shift leaves the variance unchanged
    assert stats.pooled_variance(stats.image_moments(x, shift=3.0)) == pytest.approx(np.var(x.astype(np.float64)), rel=1e-10)


def _planted_pair(rng, n=200, k=16):
    """target: image offset N(0, 0.5^2) + noise N(0, 1) -> Var 1.25; delta = 0.5 target + N(0, 0.3^2)
    -> Var 0.4025; true ratio 0.322."""
    target = rng.normal(0, 0.5, size=(n, 1)) + rng.normal(size=(n, k))
    delta = 0.5 * target + rng.normal(0, 0.3, size=(n, k))
    return stats.image_moments(delta), stats.image_moments(target)


def test_ratio_interval_covers_planted_ratio():
    truth = (0.25 * 1.25 + 0.09) / 1.25
    coverage = _coverage(lambda rng, s: stats.ratio_interval(*_planted_pair(rng), draws=500, seed=s),
                         truth, 300)
    assert 0.90 <= coverage <= 0.985, coverage


def test_ratio_interval_estimate_and_pairs():
    rng = np.random.default_rng(0)
    x_d, x_t = rng.normal(size=(2, 30, 8)), rng.normal(size=(2, 30, 8)) * 2
    d = np.stack([stats.image_moments(v) for v in x_d])
    t = np.stack([stats.image_moments(v) for v in x_t])
    iv = stats.ratio_interval(d, t, draws=200)
    assert iv.estimate == pytest.approx(np.mean([np.var(x_d[p]) / np.var(x_t[p]) for p in range(2)]))
    assert iv.n == {"images": 30, "pairs": 2}
    assert iv.low < iv.estimate < iv.high
    one = stats.ratio_interval(d[0], t[0], draws=200)
    assert one.estimate == pytest.approx(np.var(x_d[0]) / np.var(x_t[0])) and one.n["pairs"] == 1
    # the same setting twice differs by exactly 0 in every draw (paired over images and pairs)
    same = stats.ratio_difference_interval((d, t), (d, t), pairs="paired", draws=100)
    assert same.as_list() == [0.0, 0.0]
    # with independently resampled pairs it is centred on 0 but has width
    indep = stats.ratio_difference_interval((d, t), (d, t), draws=100)
    assert indep.estimate == 0.0 and indep.low < 0 < indep.high
    # a clearly larger ratio in the first setting
    d2 = d * [1.0, 2.0, 4.0]                                              # moments of 2 x^Δ: Var x4
    bigger = stats.ratio_difference_interval((d2, t), (d, t), draws=200)
    assert bigger.estimate == pytest.approx(3 * iv.estimate)
    assert stats.verdict(bigger) == "holds"


def test_variance_intervals():
    rng = np.random.default_rng(0)
    x0 = rng.normal(0, 2.0, size=(3, 60, 10))                          # Var 4: three pairs
    x1 = rng.normal(0, 1.0, size=(3, 60, 10))                          # Var 1
    m0 = np.stack([stats.image_moments(v) for v in x0])
    m1 = np.stack([stats.image_moments(v) for v in x1])
    v0 = stats.variance_interval(m0, draws=300)
    assert v0.estimate == pytest.approx(np.mean([np.var(v) for v in x0]))
    assert v0.low < 4.0 < v0.high
    diff = stats.variance_difference_interval(m0, m1, draws=300)
    assert diff.estimate == pytest.approx(v0.estimate - np.mean([np.var(v) for v in x1]))
    assert stats.verdict(diff) == "holds" and diff.n == {"images": 60, "pairs": 3}
    assert stats.variance_difference_interval(m0, m0, draws=50).as_list() == [0.0, 0.0]
    assert stats.variance_interval(m0, group="seeds", draws=10).n == {"images": 60, "seeds": 3}


# --------------------------------------------------------------------------------------- trends
@pytest.mark.parametrize("x, y", [
    ([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]),
    ([1, 2, 2, 3, 3, 3, 4], [4, 4, 1, 2, 2, 9, 0]),
    ([0.5, 0.5, 0.5, 2.0], [1.0, 2.0, 2.0, 2.0]),
    ([3, 1, 2], [1, 2, 3]),
    ([1, 2], [2, 1]),
])
def test_spearman_matches_scipy(x, y):
    assert stats.spearman(x, y) == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)


def test_spearman_random_ties_and_degenerate():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 5, 12), rng.integers(0, 4, 12)
        expected = sps.spearmanr(x, y).statistic
        assert stats.spearman(x, y) == pytest.approx(expected, abs=1e-12) or (
            math.isnan(expected) and math.isnan(stats.spearman(x, y)))
    assert math.isnan(stats.spearman([1.0], [2.0]))
    assert math.isnan(stats.spearman([1, 2, 3], [4, 4, 4]))
    with pytest.raises(ValueError, match="y"):
        stats.spearman([1, 2, 3], [1, 2])


def test_trend_interval_on_separated_increasing_levels():
    rng = np.random.default_rng(0)
    levels = np.array([0.1, 0.2, 0.4, 0.8])
    x = [rng.normal(0, 1 + lvl * 3, size=(150, 12)) for lvl in levels]  # Var grows with the level
    moments = np.stack([stats.image_moments(v) for v in x])
    rho = stats.trend_interval(levels, moments, draws=300)
    assert rho.estimate == pytest.approx(1.0) and rho.low > 0 and stats.verdict(rho) == "holds"
    assert rho.n == {"images": 150, "levels": 4}
    slope = stats.trend_interval(levels, moments, "slope", draws=300)
    assert slope.low > 0
    falling = stats.trend_interval(levels[::-1].copy(), moments, draws=300)
    assert stats.verdict(falling) == "does not hold"
    # callable y: an accuracy drop per level from per-image correctness, all levels on the same images
    correct = np.stack([rng.random(400) < p for p in (0.9, 0.8, 0.7, 0.5)]).astype(float)   # (L, n)
    drop = lambda w: (w @ (correct[0] - correct).T) / 400                 # noqa: E731
    acc = stats.trend_interval(levels, drop, n_images=400, draws=300)
    assert acc.estimate == pytest.approx(1.0) and acc.low > 0
    with pytest.raises(ValueError, match="n_images"):
        stats.trend_interval(levels, drop)


def test_trend_interval_without_trend_is_inconclusive():
    rng = np.random.default_rng(3)
    levels = np.arange(5.0)
    moments = np.stack([stats.image_moments(rng.normal(size=(100, 8))) for _ in levels])
    assert stats.verdict(stats.trend_interval(levels, moments, draws=300)) == "inconclusive"


# --------------------------------------------------------------------------------------- validation
def test_bad_inputs_name_the_argument():
    ok = np.ones((2, 10), dtype=bool)
    with pytest.raises(ValueError, match="correct_b.*seeds"):
        stats.accuracy_difference(ok, np.ones((3, 10), dtype=bool))
    with pytest.raises(ValueError, match="correct_b.*images"):
        stats.accuracy_difference(ok, np.ones((2, 9), dtype=bool))
    with pytest.raises(ValueError, match="correct_a.*empty"):
        stats.accuracy_difference(np.ones((0,)), ok)
    with pytest.raises(ValueError, match="correct_a.*2 images"):
        stats.accuracy_difference(np.ones(1), np.ones(1))
    with pytest.raises(ValueError, match="correct_a.*NaN"):
        stats.accuracy_difference(np.array([1.0, np.nan, 0.0]), np.ones(3))
    with pytest.raises(ValueError, match="correct_b.*0/1"):
        stats.accuracy_difference(np.ones(3), np.array([0.5, 1.0, 0.0]))
    m = stats.image_moments(np.random.default_rng(0).normal(size=(10, 4)))
    with pytest.raises(ValueError, match="target"):
        stats.ratio_interval(m, m[:9])
    with pytest.raises(ValueError, match="delta.*3"):
        stats.ratio_interval(m[:, :2], m)
    bad = m.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="delta.*NaN"):
        stats.ratio_interval(bad, m)
    with pytest.raises(ValueError, match="moments.*2 images"):
        stats.variance_interval(m[:1])
    with pytest.raises(ValueError, match="second_moments.*images"):
        stats.variance_difference_interval(m, m[:8])
    with pytest.raises(ValueError, match="second_moments.*pairs"):
        stats.variance_difference_interval(m, np.stack([m, m]))
    with pytest.raises(ValueError, match="weights"):
        stats.pooled_variance(m, np.ones((3, 9)))
    with pytest.raises(ValueError, match="x.*NaN"):
        stats.image_moments(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="x.*empty"):
        stats.image_moments(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="levels"):
        stats.trend_interval([1.0, 1.0], np.stack([m, m]))
    with pytest.raises(ValueError, match="per_image_values"):
        stats.trend_interval([1.0, 2.0, 3.0], np.stack([m, m]))
    with pytest.raises(ValueError, match="statistic"):
        stats.trend_interval([1.0, 2.0], np.stack([m, m]), "kendall")
    with pytest.raises(ValueError, match="level"):
        stats.accuracy_difference(ok, ok, level=95)
    with pytest.raises(ValueError, match="draws"):
        stats.accuracy_difference(ok, ok, draws=0)
    with pytest.raises(ValueError, match="statistic"):
        stats.bootstrap(lambda w, v: w, 10)
