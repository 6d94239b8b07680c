"""dvc.yaml lists, for every stage, exactly the code its script runs, and the paths kc writes."""
import subprocess
import sys
from pathlib import Path

import yaml

from kc.codedeps import code_deps

ROOT = Path(__file__).resolve().parents[1]


def _bodies():
    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for name, stage in doc["stages"].items():
        yield name, stage.get("do", stage)


def test_every_stage_depends_on_exactly_the_code_it_runs():
    for name, body in _bodies():
        script = next(d for d in body["deps"] if str(d).startswith("stages/"))
        assert body["cmd"].split()[:2] == ["python", script], name           # the command runs that script
        listed = sorted(d for d in body["deps"] if str(d).startswith("kc/"))
        assert listed == code_deps(ROOT / script), f"{name}: run `python scripts/dvc_deps.py`"
    out = subprocess.run([sys.executable, "scripts/dvc_deps.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_code_deps_follow_imports_transitively(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("def f():\n    from kc.pipeline.pairs import fit_pairs\n")
    deps = code_deps(script)
    # imported inside a function, and what that module imports in turn (pairs -> consistency -> util)
    assert {"kc/pipeline/pairs.py", "kc/consistency.py", "kc/util.py", "kc/pipeline/__init__.py"} <= set(deps)
    assert "kc/studies/stability.py" not in deps and "kc/report.py" not in deps
    script.write_text("import os\n")
    assert code_deps(script) == []


def test_no_command_carries_a_value_from_params():
    for name, body in _bodies():
        assert "${" not in body["cmd"], name        # names come from DVC_STAGE, never through the shell
        assert "data/checked.txt" in body["deps"] or name == "check", name


def test_no_stage_depends_on_all_prepared_datasets():
    for name, body in _bodies():
        if name != "tasks":                          # the task manifests record the datasets each task reads
            assert "data/prepared" not in body["deps"], name
