"""Run a params profile end to end in a temporary repository and keep its report.

    python scripts/run_profile.py configs/overfitting.yaml profiles/overfitting

Copies the project (without outputs) into a temporary git repository, uses the profile as
params.yaml, runs the real `dvc repro` there and copies its report (README.md, claims.json, figures)
and metrics/summary.json into DEST, replacing what was there. The default report links to
profiles/overfitting/ for the study that does not fit the default's time budget.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from paper_dryrun import copy_project  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python scripts/run_profile.py PROFILE.yaml DEST", file=sys.stderr)
        return 2
    profile, dest = Path(argv[0]).resolve(), Path(argv[1])
    work = Path(tempfile.mkdtemp(prefix="kc-profile-"))
    repo = work / "repo"
    repo.mkdir()
    copy_project(repo)
    shutil.copy(profile, repo / "params.yaml")
    env = dict(os.environ, DVC_NO_ANALYTICS="1", KC_DEVICE=os.environ.get("KC_DEVICE", "auto"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               GIT_AUTHOR_NAME="kc", GIT_AUTHOR_EMAIL="kc@localhost", GIT_COMMITTER_NAME="kc",
               GIT_COMMITTER_EMAIL="kc@localhost")
    env.pop("KC_PARAMS", None)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", f"profile {profile.name}"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True)
    code = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env).returncode
    if code != 0:
        print(f"dvc repro failed ({code}); the run is in {work}", file=sys.stderr)
        return code
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(repo / "report", dest)
    shutil.copy(repo / "metrics" / "summary.json", dest / "summary.json")
    (dest / "params.yaml").write_text(profile.read_text())
    shutil.rmtree(work, ignore_errors=True)
    print(f"{profile.name}: report in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
