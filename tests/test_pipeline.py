"""End to end: the real `dvc repro` of the smoke profile in a temporary git repository.

Runs the whole DAG (check ... report) on a few hundred Fashion-MNIST images under the authors'
reading, checks the outputs, the report and claims.json, shares the artefacts through a local and an
SSH remote into fresh clones, changes λ with `dvc exp run -S` and reads from DVC's own output which
stages reran, then attacks it as a careless or hostile user would: a name that is a shell command,
an output overwritten in place, a killed stage, forced reruns that must give the same bytes.
"""
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sshd import sshd_server

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ("dvc.lock", "metrics", "report", "plots", "data", "results")


def _env(**extra):
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` in stage commands
    env.update(GIT_AUTHOR_NAME="kc-test", GIT_AUTHOR_EMAIL="kc@test", GIT_COMMITTER_NAME="kc-test",
               GIT_COMMITTER_EMAIL="kc@test", DVC_NO_ANALYTICS="1", KC_DEVICE="cpu")
    env.update(extra)
    env.pop("KC_PARAMS", None)
    return env


def run(args, cwd, check=True, timeout=1200, **env):
    proc = subprocess.run(args, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def dvc(*args, cwd, check=True, **env):
    return run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=check, **env)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


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
    run(["git", "add", "-A"], cwd=repo)
    run(["git", "commit", "-qm", "results"], cwd=repo)
    return repo


@pytest.fixture(scope="module")
def params(repo):
    return yaml.safe_load((repo / "params.yaml").read_text())


def _finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def test_every_stage_ran_and_its_outputs_are_sane(repo, params):
    ran = stages_run((repo / "repro.log").read_text())
    listed = set(dvc("stage", "list", "--name-only", cwd=repo).stdout.split())
    assert ran == listed and {"check", "tasks", "report", "readings@vgg_s", "compare@vgg_s_vs_resnet_s"} <= ran
    for pop in params["nets"]:
        m = json.loads((repo / "metrics" / "nets" / f"{pop}.json").read_text())
        assert all(0 < r["test_accuracy"] <= 1 and 0 < r["train_accuracy"] <= 1 for r in m.values()), pop
    pruned = json.loads((repo / "metrics" / "nets" / "compression_vgg_s_conv4_3.json").read_text())
    fractions = [r["pruned_fraction"] for r in pruned.values()]
    assert fractions == sorted(fractions) and 0 < fractions[0] < fractions[-1] < 1     # more threshold, more removed
    stab = json.loads((repo / "metrics" / "stability" / "vgg_s.json").read_text())
    assert stab["reading"] == "authors" and len(stab["pairs"]) == 2 * (2 + 2)           # 2 layers x (2 seeds + 2 halves)
    for name, m in stab["pairs"].items():
        for key in ("var_x0", "var_x1", "var_x2", "var_delta", "var_target", "delta_ratio", "linear_predictivity"):
            assert _finite(m[key]) and (m[key] >= 0 or key == "linear_predictivity"), (name, key)
    other = json.loads((repo / "metrics" / "readings" / "vgg_s.json").read_text())
    assert other["reading"] == "paper" and set(other["pairs"]) == set(stab["pairs"])
    for name in params["refinement"]["components"]:
        m = json.loads((repo / "metrics" / "refinement" / f"components_{name}.json").read_text())
        assert set(m["rows"]) == {"a", "b", "x0", "x0+x1", "x0+x1+x2"}
        assert all(len(r["per_seed"]) == len(params["classifier"]["seeds"]) for r in m["rows"].values())


def test_report_claims_and_figures(repo, params):
    text = (repo / "report" / "README.md").read_text()
    assert "the **authors** reading" in text
    for heading in ("Stability of learning", "Table 3", "Table 4", "Diagnosis", "compression", "Born-again",
                    "between tasks", "Over-fitting", "Sweeps of λ", "Layer-by-layer", "Readings of the paper",
                    "paper's reading and the authors' code"):
        assert heading.lower() in text.lower(), heading
    claims = json.loads((repo / "report" / "claims.json").read_text())
    assert sorted(claims) == [str(n) for n in range(1, 9)]
    for n, c in claims.items():
        assert {"claim", "verdict", "statistic", "estimate", "ci95", "n", "rule"} <= set(c), n
        assert c["verdict"] in ("holds", "does not hold", "inconclusive"), (n, c["verdict"])
        low, high = c["ci95"]
        assert _finite(low) and _finite(high) and low <= c["estimate"] <= high or low <= high, n
        assert f"**{c['verdict']}**" in text
    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    assert summary["claims_holding"] + summary["claims_inconclusive"] + summary["claims_not_holding"] == 8
    pngs = sorted((repo / "report").glob("*.png"))
    assert {"compression.png", "born_again.png", "overfitting.png", "compare_vgg_s_vs_resnet_s.png"} <= {p.name for p in pngs}
    from PIL import Image
    for png in pngs:
        with Image.open(png) as im:
            im.verify()
        assert f"({png.name})" in text, png.name
    shown = json.loads(dvc("metrics", "show", "--json", cwd=repo).stdout)
    assert "claims_holding" in json.dumps(shown) and "delta_ratio" in json.dumps(shown)


def test_noop_repro_and_remote_round_trips(repo, tmp_path):
    assert stages_run(dvc("repro", cwd=repo).stdout) == set()
    local = tmp_path / "remote"
    dvc("remote", "add", "shared", str(local), cwd=repo)
    with sshd_server(tmp_path / "ssh") as server:
        dvc("remote", "add", "ssh", f"{server.url}{tmp_path / 'ssh-store'}", cwd=repo)
        dvc("remote", "modify", "--local", "ssh", "keyfile", str(server.keyfile), cwd=repo)
        run(["git", "add", "-A"], cwd=repo)
        run(["git", "commit", "-qm", "remotes"], cwd=repo)
        for remote in ("shared", "ssh"):
            dvc("push", "-r", remote, cwd=repo, HOME=str(server.home))
            clone = tmp_path / f"clone-{remote}"
            run(["git", "clone", "-q", str(repo), str(clone)], cwd=tmp_path)
            if remote == "ssh":
                dvc("remote", "modify", "--local", "ssh", "keyfile", str(server.keyfile), cwd=clone)
            dvc("pull", "-r", remote, cwd=clone, HOME=str(server.home))
            status = dvc("status", cwd=clone).stdout
            assert "up to date" in status, (remote, status)
            again = dvc("repro", cwd=clone)
            assert stages_run(again.stdout) == set(), again.stdout[-3000:]
            for f in ("data/nets/vgg_s/vgg_s_seed0.pt", "results/stability/vgg_s/moments.npz"):
                assert md5(clone / f) == md5(repo / f), f


def test_a_name_that_is_a_shell_command_runs_nothing(repo, tmp_path):
    victim = tmp_path / "pwned"
    original = (repo / "params.yaml").read_text()
    data = yaml.safe_load(original)
    data["nets"][f"vgg_s;touch {victim}"] = data["nets"]["alexnet_s"]
    (repo / "params.yaml").write_text(yaml.safe_dump(data))
    try:
        out = dvc("repro", cwd=repo, check=False)
        assert out.returncode != 0
        assert stages_run(out.stdout) == {"check"}, out.stdout[-2000:]
        assert "kc: error: nets.vgg_s;touch" in out.stdout + out.stderr and "names must match [a-z0-9_]+" in out.stdout + out.stderr
        assert not victim.exists()
    finally:
        (repo / "params.yaml").write_text(original)
    assert stages_run(dvc("repro", cwd=repo).stdout) == {"check"}          # valid again: nothing else reruns


def test_an_output_damaged_in_place_is_rebuilt_not_restored(repo):
    ckpt = repo / "data" / "nets" / "alexnet_s" / "alexnet_s_seed0.pt"
    good = md5(ckpt)
    with open(ckpt, "r+b") as f:                     # in place, as a careless script would
        f.write(os.urandom(4096))
    assert "modified" in dvc("status", cwd=repo).stdout
    dvc("repro", cwd=repo)                           # README: `dvc repro` rebuilds what was damaged
    assert md5(ckpt) == good
    ckpt.unlink()                                    # README: deleting it and `dvc repro` gives it back intact
    dvc("repro", cwd=repo)
    assert md5(ckpt) == good


def test_a_killed_stage_changes_no_other_stage_and_reruns_clean(repo):
    before = md5(repo / "data" / "prepared" / "fmnist" / "train_images.npy")
    staging = repo / ".kc-tmp"
    seen = set(staging.iterdir()) if staging.exists() else set()
    proc = subprocess.Popen([sys.executable, "stages/prepare.py", "fmnist"], cwd=repo, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if staging.exists() and set(staging.iterdir()) - seen:          # it is writing: kill it now
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "prepare finished before it could be killed"
    leftovers = [p for p in (repo / "data" / "prepared").glob(".*") if p.name != ".gitignore"]
    assert not leftovers, "temporary files inside a dependency folder"
    assert "up to date" in dvc("status", cwd=repo).stdout
    assert md5(repo / "data" / "prepared" / "fmnist" / "train_images.npy") == before


def test_forced_reruns_give_the_same_bytes(repo):
    files = [repo / "data" / "nets" / "alexnet_s" / "alexnet_s_seed0.pt", repo / "results" / "cross_task" / "vgg_s_conv4_3" / "moments.npz",
             repo / "data" / "features" / "alexnet_s" / "alexnet_s_seed0" / "conv5_pre" / "test.npy"]
    before = [md5(f) for f in files]
    for stage in ("train@alexnet_s", "features@alexnet_s", "cross_task@vgg_s_conv4_3"):
        dvc("repro", "-f", "-s", stage, cwd=repo)
    assert [md5(f) for f in files] == before
    assert stages_run(dvc("repro", cwd=repo).stdout) == set()


def test_changing_lambda_reruns_only_the_studies(repo, params):
    out = dvc("exp", "run", "-S", "lam=0.3", cwd=repo)
    ran = stages_run(out.stdout)
    upstream = ("prepare", "tasks", "train", "features", "prune", "distill")
    assert ran and not any(s.startswith(upstream) for s in ran), sorted(ran)
    assert {"stability@vgg_s", "cross_task@vgg_s_conv4_3", "report"} <= ran
    m = json.loads((repo / "metrics" / "stability" / "vgg_s.json").read_text())
    assert all(p["lam"] == 0.3 for p in m["pairs"].values())
    diff = dvc("metrics", "diff", "--json", cwd=repo).stdout
    assert "metrics/stability/vgg_s.json" in diff


def _one_line(out):
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and lines[0].startswith("kc: error: "), out.stderr[-2000:]
    return lines[0]


def test_bad_inputs_give_one_error_line_naming_what_is_wrong(repo):
    stage = [sys.executable, "stages/stability.py", "vgg_s"]
    assert "KC_DEVICE='gpu': must be auto, cpu, cuda or cuda:N" in _one_line(run(stage, repo, check=False, KC_DEVICE="gpu"))
    import torch
    if not torch.cuda.is_available():
        assert "no CUDA device is available" in _one_line(run(stage, repo, check=False, KC_DEVICE="cuda"))
    assert "'nope' is not a stability entry" in _one_line(run([*stage[:2], "nope"], repo, check=False))
    store = repo / "data" / "features" / "vgg_s" / "vgg_s_seed0" / "conv4_3_pre" / "test.npy"
    moments = repo / "results" / "stability" / "vgg_s" / "moments.npz"
    ckpt = repo / "data" / "nets" / "vgg_s" / "vgg_s_seed1.pt"
    try:
        data = store.read_bytes()
        store.write_bytes(data[: len(data) // 2])                       # truncated
        line = _one_line(run(stage, repo, check=False))
        assert str(store.relative_to(repo)) in line and "damaged" in line
        moments.write_bytes(b"not a zip file")
        line = _one_line(run([sys.executable, "stages/report.py"], repo, check=False))
        assert "moments.npz: not a readable npz file" in line
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
        line = _one_line(run([sys.executable, "stages/refinement.py", "components", "vgg_s_conv4_3"], repo, check=False))
        assert "vgg_s_seed1.pt" in line and "weights_only=False" not in line
    finally:
        dvc("checkout", "--force", cwd=repo)
    assert "up to date" in dvc("status", cwd=repo).stdout
