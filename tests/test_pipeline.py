"""End to end: the real `dvc repro` of the smoke profile in a temporary git repository.

Runs the whole DAG (prepare ... report) on a few hundred Fashion-MNIST images, checks every metrics
file, the report and its figures, then shares the artefacts through a local-directory DVC remote
into a fresh clone, and finally changes λ with `dvc exp run -S` and reads from DVC's own output
which stages reran. About 3-4 minutes on 2 cores.
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ("dvc.lock", "metrics", "report", "plots", "data")


def _env():
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` in stage commands
    env.update(GIT_AUTHOR_NAME="kc-test", GIT_AUTHOR_EMAIL="kc@test", GIT_COMMITTER_NAME="kc-test",
               GIT_COMMITTER_EMAIL="kc@test", DVC_NO_ANALYTICS="1", KC_DEVICE="cpu")
    env.pop("KC_PARAMS", None)
    return env


def run(args, cwd, check=True, timeout=900):
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def dvc(*args, cwd, check=True):
    return run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=check)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the project with the smoke profile as params.yaml, after a full `dvc repro`."""
    repo = tmp_path_factory.mktemp("kc") / "repo"
    files = run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT).stdout.split()
    for name in files:
        if name.split("/")[0] in GENERATED or not (ROOT / name).is_file():
            continue
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    shutil.copy(ROOT / "configs" / "smoke.yaml", repo / "params.yaml")
    run(["git", "init", "-q"], cwd=repo)
    run(["git", "add", "-A"], cwd=repo)
    run(["git", "commit", "-qm", "smoke"], cwd=repo)
    out = dvc("repro", cwd=repo)
    repo.joinpath("repro.log").write_text(out.stdout + out.stderr)
    return repo


@pytest.fixture(scope="module")
def params(repo):
    return yaml.safe_load((repo / "params.yaml").read_text())


def _finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def test_every_stage_ran_and_metrics_are_sane(repo, params):
    ran = stages_run((repo / "repro.log").read_text())
    nets = list(params["nets"]) + list(params["prune"]["nets"]) + list(params["distill"]["nets"])
    assert {f"fit@{p}" for p in params["pairs"]} <= ran and "report" in ran
    for net in nets:
        m = json.loads((repo / "metrics" / "nets" / f"{net}.json").read_text())
        assert 0 < m["test_accuracy"] <= 1, net
    for net, spec in params["prune"]["nets"].items():
        m = json.loads((repo / "metrics" / "nets" / f"{net}.json").read_text())
        assert 0 < m["pruned_fraction"] < 1
    fractions = [json.loads((repo / "metrics" / "nets" / f"{n}.json").read_text())["pruned_fraction"]
                 for n in params["prune"]["nets"]]
    assert fractions == sorted(fractions)                     # a higher threshold removes more
    for pair, spec in params["pairs"].items():
        fitm = json.loads((repo / "metrics" / "fits" / f"{pair}.json").read_text())
        assert _finite(fitm["loss"]) and fitm["loss"] >= 0
        m = json.loads((repo / "metrics" / "pairs" / f"{pair}.json").read_text())
        K = spec.get("K", params["K"])
        for key in [f"var_x{k}" for k in range(K + 1)] + ["var_delta", "var_target"]:
            assert _finite(m[key]) and m[key] >= 0, (pair, key)
        assert 0 <= m["delta_ratio"] <= 1.05, (pair, m["delta_ratio"])
        assert -1 <= m["cka"] <= 1 and m["linear_predictivity"] <= 1
        assert (repo / "plots" / "fits" / f"{pair}.csv").read_text().startswith("epoch,loss")
    for kind in ("components", "subset", "diagnosis"):
        for name in params["refine"][kind]:
            m = json.loads((repo / "metrics" / "refine" / f"{kind}_{name}.json").read_text())
            accs = [v for k, v in m.items() if k.endswith("_accuracy")]
            assert accs and all(0 <= a <= 1 for a in accs), (kind, name)


def test_report_tables_figures_and_summary(repo, params):
    text = (repo / "report" / "README.md").read_text()
    for heading in ("Stability of learning", "Table 3", "Table 4", "Diagnosis", "compression", "Born-again",
                    "between tasks", "Sweep", "Every pair"):
        assert heading.lower() in text.lower(), heading
    for name, entry in params["studies"]["stability"].items():
        layer = params["pairs"][entry["case1"][0]]["layer"]
        assert re.search(rf"\| {layer} @ vgg_s\s*\|", text)
    for pair in params["pairs"]:
        assert f"| {pair} " in text, pair
    for net in params["prune"]["nets"]:
        assert f"| {net} " in text
    for name in list(params["refine"]["components"]) + list(params["refine"]["subset"]):
        assert f"| {name} " in text
    assert text.count("— **") == 8                               # one verdict per claim of the paper
    pngs = sorted((repo / "report").glob("*.png"))
    assert {"compression.png", "born_again.png", "sweep.png"} <= {p.name for p in pngs}
    assert any(p.name.startswith("components_") for p in pngs)
    from PIL import Image
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(png) as im:
            im.verify()
        assert f"({png.name})" in text, png.name
    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    assert summary["claims_tested"] == 7                   # the smoke run has one layer: claim 2 is not run
    assert "— **not run**" in text and "claim2" not in summary
    assert all(_finite(v) for v in summary.values()), summary
    shown = json.loads(dvc("metrics", "show", "--json", cwd=repo).stdout)
    assert "claims_holding" in json.dumps(shown) and "delta_ratio" in json.dumps(shown)


def test_noop_repro_and_remote_round_trip(repo, tmp_path):
    assert stages_run(dvc("repro", cwd=repo).stdout) == set()
    remote = tmp_path / "remote"
    dvc("remote", "add", "-d", "shared", str(remote), cwd=repo)
    run(["git", "add", "-A"], cwd=repo)
    run(["git", "commit", "-qm", "results"], cwd=repo)
    dvc("push", cwd=repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], cwd=tmp_path)
    dvc("pull", cwd=clone)
    status = dvc("status", cwd=clone).stdout
    assert "up to date" in status, status
    again = dvc("repro", cwd=clone)
    assert stages_run(again.stdout) == set(), again.stdout[-3000:]
    assert (clone / "data" / "fits").is_dir() and any((clone / "data" / "fits").iterdir())


def test_changing_lambda_reruns_only_fits_and_what_follows(repo, params):
    out = dvc("exp", "run", "-S", "lam=0.3", cwd=repo)
    ran = stages_run(out.stdout)
    downstream = ("fit@", "decompose@", "refine_components@", "refine_subset@", "diagnose@", "report")
    assert ran, out.stdout[-3000:]
    assert all(s.startswith(downstream) for s in ran), sorted(ran)
    assert {f"fit@{p}" for p in params["pairs"]} <= ran
    assert not any(s.startswith(("prepare", "train", "prune", "distill", "extract")) for s in ran)
    m = json.loads((repo / "metrics" / "fits" / "seeds_vgg_s_conv4_3_ab.json").read_text())
    assert m["lam"] == 0.3
    diff = dvc("metrics", "diff", "--json", cwd=repo).stdout
    assert "metrics/fits/seeds_vgg_s_conv4_3_ab.json" in diff
