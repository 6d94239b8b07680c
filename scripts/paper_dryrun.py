"""The paper's whole DAG (configs/paper.yaml) on small generated copies of its datasets, on the CPU.

    make paper-dryrun                       # or: python scripts/paper_dryrun.py [--keep DIR]

Writes fake CUB-200-2011, Stanford Dogs and VOC 2012 in their official on-disk layouts (kc.data.fake:
a handful of classes, a few real JPEG images each, bounding boxes, VOC XML with difficult flags and
several objects per image), then runs the real `dvc repro` of configs/paper.yaml in a temporary git
repository with the roots pointed at them. Only what must shrink is shrunk, by code, so the dry run
follows every edit of configs/paper.yaml: epochs (training, retraining, g, classifiers, comparisons)
to 1, and the number of feature and comparison images. The 224-px inputs, the real architectures
(AlexNet, VGG-16-BN, ResNet-18/34/50) and every net, pair, study and classifier of the file are kept.
About 25 minutes on 2 CPU cores; exits non-zero when any stage fails.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kc.data import fake  # noqa: E402
from kc.data.catalog import VOC_CLASSES  # noqa: E402

GENERATED = ("dvc.lock", "metrics", "report", "plots", "data", "results")
FIT_IMAGES = 24        # features.train_images: images g is fitted on
COMPARE_IMAGES = 20     # of the 20 fake CUB test images: 15 to fit g, 5 to score it


def fake_datasets(base: Path) -> dict[str, Path]:
    """Roots of the three fake datasets, by source: 4 bird species, 3 dog breeds, the 20 VOC classes.

    Two training images per class (one per half for Case 2) keep the 224-px nets affordable on a CPU;
    CUB has 5 test images per class so that the comparison has 20 test images to split."""
    return {
        "cub200": fake.write_cub(base / "cub", classes=4, train_per_class=2, test_per_class=5, size=(96, 80), seed=1),
        "stanford_dogs": fake.write_stanford_dogs(base / "dogs", classes=3, train_per_class=2, test_per_class=2,
                                                  size=(96, 80), seed=2),
        "voc2012_objects": fake.write_voc2012(base / "voc", classes=list(VOC_CLASSES), train_per_class=1,
                                              test_per_class=1, size=(128, 96), seed=3),
    }


def shrink(params: dict, roots: dict[str, Path]) -> dict:
    """configs/paper.yaml with fake roots and one epoch everywhere; structure untouched."""
    for spec in params["datasets"].values():
        spec["root"] = str(roots[spec["source"]])
        spec["num_workers"] = 0
    params["train"]["epochs"] = 1
    for pop in params["nets"].values():
        if "train" in pop:
            pop["train"]["epochs"] = 1
    params["fit"]["epochs"] = 1
    params["classifier"]["epochs"] = 1
    params["features"]["train_images"] = FIT_IMAGES
    params["features"]["test_images"] = None
    for entry in (params.get("compression") or {}).values():
        entry.setdefault("retrain", {})["epochs"] = 1
    for entry in (params.get("compare") or {}).values():
        entry["images"], entry["epochs"] = COMPARE_IMAGES, 1
    params["report"]["draws"] = 200
    return params


def copy_project(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        if name.split("/")[0] in GENERATED or not (ROOT / name).is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="kc-paper-dryrun-"))
    if args.keep and work.exists():
        shutil.rmtree(work)
    repo = work / "repo"
    repo.mkdir(parents=True)
    t0 = time.perf_counter()
    roots = fake_datasets(work / "datasets")
    copy_project(repo)
    params = shrink(yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text()), roots)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, KC_DEVICE=os.environ.get("KC_DEVICE", "cpu"), DVC_NO_ANALYTICS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               GIT_AUTHOR_NAME="kc", GIT_AUTHOR_EMAIL="kc@localhost", GIT_COMMITTER_NAME="kc",
               GIT_COMMITTER_EMAIL="kc@localhost")
    env.pop("KC_PARAMS", None)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "paper dry run"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True)
    print(f"[dryrun] configs/paper.yaml on fake datasets in {work}", flush=True)
    code = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env).returncode
    minutes = (time.perf_counter() - t0) / 60
    if code == 0:
        head = (repo / "report" / "README.md").read_text().splitlines()
        verdicts = next((line for line in head if line.startswith("## The paper's claims")), "")
        print(f"[dryrun] ok in {minutes:.1f} min: {repo / 'report' / 'README.md'} — {verdicts[3:]}", flush=True)
    else:
        print(f"[dryrun] FAILED (dvc repro exited {code}) after {minutes:.1f} min; the run is in {work}", flush=True)
    if code == 0 and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
