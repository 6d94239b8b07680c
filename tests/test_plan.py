"""`python -m kc plan`: what a run will cost, from the architectures' real shapes, before it starts."""
import subprocess
import sys
from pathlib import Path

import yaml

from kc.config import parse
from kc.plan import plan

ROOT = Path(__file__).resolve().parents[1]


def test_plan_counts_stages_and_bytes(tmp_path):
    cfg = parse(yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text()))
    p = plan(cfg, tmp_path)
    listed = {li.kind: li for li in p["lines"]}
    assert listed["train"].stages == len(cfg.nets) and listed["features"].stages == len(cfg.nets)
    # vgg_s stores conv3_3 and conv4_3 (pre and post: the readings study) = 4 taps of 32x7x7, two bytes each,
    # on the fit and test images of 5 nets ... the plan must at least count that
    fit, test = cfg.features["train_images"], 300
    assert listed["features"].bytes >= 4 * 4 * 32 * 49 * 2 * (fit + test)
    assert p["with_cache"] == 2 * p["total_bytes"] and p["peak_fit"] > 0 and p["peak_train"] > 0


def test_plan_command_prints_the_table(tmp_path):
    out = subprocess.run([sys.executable, "-m", "kc", "plan", str(ROOT / "configs" / "smoke.yaml")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "stage kind" in out.stdout and "peak GPU memory" in out.stdout and "total" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "kc", "plan", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("kc: error:")
