"""Report helpers: the rank correlation behind claims 6-7 and the component figure."""
import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

from kc.report import component_grid, spearman


def test_spearman_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.normal(size=7), rng.normal(size=7)
        assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)
    assert np.isnan(spearman([1], [2])) and np.isnan(spearman([1, 2], [3, 3]))


def test_component_grid_draws_every_order(tmp_path):
    rng = np.random.default_rng(0)
    comps = rng.normal(size=(3, 2, 4, 7, 7)).astype(np.float16)
    np.savez(tmp_path / "d.npz", images=rng.integers(0, 255, size=(2, 1, 28, 28), dtype=np.uint8),
             labels=np.array([0, 1]), source=comps[0], target=comps.sum(0) + 0.1,
             components=comps, residual=np.full((2, 4, 7, 7), 0.1, dtype=np.float16))
    channel = component_grid(tmp_path / "d.npz", tmp_path / "grid.png", "test", channel=-1)
    assert 0 <= channel < 4
    with Image.open(tmp_path / "grid.png") as im:
        assert im.format == "PNG" and im.size[0] > 2 * im.size[1]      # 2 rows x (input, x*, x0..x2, Δ) columns
    assert component_grid(tmp_path / "d.npz", tmp_path / "grid2.png", "test", channel=2) == 2
