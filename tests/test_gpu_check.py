"""bench/gpu_check.py: the CPU run of every part (how the script is verified before GPU time is spent),
and the exit without CUDA. Runs the script as a subprocess from outside the repository, with CUDA
hidden and a `dvc` that cannot be imported (the GPU machine has no dvc and no installed kc)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"
SECTIONS = ("env", "sum_check", "train", "consistency", "ddp")


def run(tmp_path: Path, *args: str, timeout: int = 150) -> subprocess.CompletedProcess:
    blocker = tmp_path / "blocked"
    (blocker / "dvc").mkdir(parents=True, exist_ok=True)
    (blocker / "dvc" / "__init__.py").write_text("raise ImportError('dvc is not installed on the GPU machine')\n")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(blocker))
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)


def numbers(obj, path=""):
    """Every (path, number) in a JSON value, booleans left out."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


def test_quick_cpu_run_has_every_section_with_finite_numbers(tmp_path):
    out = tmp_path / "check.json"
    proc = run(tmp_path, "--device", "cpu", "--quick", "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["failures"] == [] and report["device"] == "cpu"
    for section in SECTIONS:
        assert section in report and "error" not in report[section], (section, report.get(section))
        assert f"== {section}" in proc.stdout
    found = list(numbers(report))
    assert len(found) > 50
    bad = [(p, v) for p, v in found if not math.isfinite(v)]
    assert not bad
    assert report["env"]["kc_path"] == str(ROOT / "kc")  # imported from the repository, not an install

    sums = report["sum_check"]
    for shape in ("16x8x8", "8x5x5"):
        for precision in ("float32", "bfloat16"):
            row = sums[shape][precision]
            assert row["ok"] is True and 0 <= row["rel_err"] <= row["tolerance"] and row["max_abs_err"] >= 0
        assert sums[shape]["float32"]["rel_err"] < 1e-5 and sums[shape]["float32"]["tolerance"] == 1e-5
        assert sums[shape]["bfloat16"]["tolerance"] == pytest.approx(4 * 2 ** -8)
        assert "CUDA" in sums[shape]["float16"]["skipped"]
        assert sums[shape]["peak_memory_mb"] > 0

    train = report["train"]
    for key in ("kc_images_per_s", "reference_images_per_s", "reference_sync_images_per_s",
                "data_only_images_per_s", "kc_peak_memory_mb", "reference_peak_memory_mb"):
        assert train[key] > 0, key
    assert train["ratio_kc_over_reference"] == pytest.approx(train["kc_images_per_s"] / train["reference_images_per_s"])
    assert train["goal"] == 0.9 and isinstance(train["goal_met"], bool)
    assert len(train["runs"]["kc"]) == train["repeats"] and train["timed_steps"] >= 1

    cons = report["consistency"]
    assert cons["K"] == 2 and cons["kernel_size"] == 3
    for shape in ("16x8x8", "8x5x5"):
        row = cons[shape]
        for key in ("fit_images_per_s", "decompose_images_per_s", "variances_images_per_s",
                    "forward_images_per_s", "peak_memory_mb"):
            assert row[key] > 0, (shape, key)

    ddp = report["ddp"]
    assert ddp["ok"] is True and ddp["world_size"] == 2 and ddp["backend"] == "gloo"
    assert ddp["max_weight_difference_between_ranks"] == 0 and ddp["max_weight_change"] > 0
    assert report["total_seconds"] < 120


def test_without_cuda_exits_zero_saying_so(tmp_path):
    out = tmp_path / "check.json"
    proc = run(tmp_path, "--json", str(out), timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no CUDA device is available" in proc.stdout
    report = json.loads(out.read_text())
    assert report["cuda_available"] is False and "no CUDA device" in report["skipped"]
    assert not any(section in report for section in SECTIONS)


def test_rejects_unknown_part(tmp_path):
    proc = run(tmp_path, "--device", "cpu", "--parts", "env,warp", timeout=60)
    assert proc.returncode == 2 and "warp" in proc.stderr
