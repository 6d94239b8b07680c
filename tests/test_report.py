"""Report pieces: claims and their verdicts, the figures, and the report as a loop over studies."""
import json

import numpy as np
import pytest
from PIL import Image

from kc import figures, stats
from kc.config import STUDIES
from kc.io import write_npz
from kc.report import MODULES
from kc.studies.common import Claim, Figure, combined_interval


def _png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()


def test_component_figure_draws_every_order(tmp_path):
    rng = np.random.default_rng(0)
    comps = rng.normal(size=(3, 2, 4, 7, 7)).astype(np.float16)
    write_npz(tmp_path / "d.npz", images=rng.integers(0, 255, size=(2, 1, 28, 28), dtype=np.uint8),
              labels=np.array([0, 1]), target=comps.sum(0) + 0.1, components=comps,
              residual=np.full((2, 4, 7, 7), 0.1, dtype=np.float16))
    channel = figures.components(tmp_path / "d.npz", tmp_path / "grid.png", "test", channel=-1)
    assert 0 <= channel < 4
    with Image.open(tmp_path / "grid.png") as im:
        assert im.format == "PNG" and im.size[0] > 2 * im.size[1]      # 2 rows x (input, x*, x0..x2, Δ)
    assert figures.components(tmp_path / "d.npz", tmp_path / "grid2.png", "test", channel=2) == 2


def test_figures_are_byte_reproducible(tmp_path):
    points = [{"x": float(i), "y": float(i * i), "y_low": i * i - 1.0, "y_high": i * i + 1.0} for i in range(4)]
    for kind, data in (("curve", {"points": points, "x": "x", "y": ["y"]}),
                       ("errorbars", {"points": points, "x": "x", "panels": [("y", "y_low", "y_high")]}),
                       ("heatmap", {"rows": ["a", "b"], "cols": ["c", "d"], "panels": [("share", [[0.1, 0.5], [0.9, np.nan]])]})):
        first = figures.draw(Figure(f"{kind}1", kind, kind, data), tmp_path)
        second = figures.draw(Figure(f"{kind}2", kind, kind, data), tmp_path)
        _png(first)
        assert first.read_bytes() == second.read_bytes(), kind


def test_claims_carry_the_schema_and_their_verdict():
    iv = stats.Interval(0.02, 0.01, 0.03, {"images": 100, "seeds": 3})
    c = Claim(3, "gain", "holds above -0.01", iv, boundary=-0.01)
    d = c.to_dict()
    assert set(d) >= {"claim", "verdict", "statistic", "estimate", "ci95", "n", "rule"}
    assert d["verdict"] == "holds" and d["ci95"] == [0.01, 0.03] and d["n"]["seeds"] == 3
    assert Claim(7, "trend", "below 0", iv, side="<").verdict == "does not hold"
    assert Claim(5, "x", "y", stats.Interval(0.0, -0.01, 0.02)).verdict == "inconclusive"
    json.dumps(d)


def test_combined_interval_pairs_parts_on_the_same_images():
    rng = np.random.default_rng(0)
    a = rng.normal(1.0, 1.0, 500)
    parts = [(500, 1, lambda w, v: (w @ a) / 500), (500, 1, lambda w, v: (w @ a) / 500 + 1.0)]
    iv = combined_interval(parts, np.min, 300, 0, {"images": 500})
    single = stats.bootstrap_interval(parts[0][2], 500, 1, draws=300, seed=0)
    assert iv.estimate == pytest.approx(a.mean()) and iv.low == pytest.approx(single.low)


def test_the_report_is_a_loop_over_the_studies():
    assert tuple(m.KEY for m in MODULES) == STUDIES
    for module in MODULES:
        assert callable(module.parse) and callable(module.report) and module.__doc__.strip()
