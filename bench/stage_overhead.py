"""The fixed costs of the pipeline: a stage's start-up, and a `dvc repro` that has nothing to do.

    python bench/stage_overhead.py            # in a repository after a full `dvc repro` (make repro)
    python bench/stage_overhead.py --runs 7

Prints the minimum and median wall time over several runs of: starting Python with the imports of a
stage that computes (torch, torchvision, kc's pipeline) and of one that does not (check, report); and
a no-op `dvc repro` (every stage up to date). Run it alone on the machine (timings of two jobs that
each use both cores are meaningless).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

IMPORTS = {
    "a computing stage's imports (train, stability, ...)": "import kc.stage, kc.pipeline.nets, kc.pipeline.pairs, kc.studies.stability, torchvision",
    "the check stage's imports": "import kc.stage, kc.studies.refinement, kc.studies.compare",
    "the report stage's imports": "import kc.stage, kc.report",
}


def timed(cmd: list[str], cwd: Path, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", nargs="?", type=Path, default=Path("."))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    for what, code in IMPORTS.items():
        lo, med = timed([sys.executable, "-c", code], args.repo, args.runs)
        print(f"{what:<55} min {lo:5.2f} s  median {med:5.2f} s")
    stages = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=args.repo,
                            capture_output=True, text=True, check=True).stdout.split()
    out = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=args.repo, capture_output=True, text=True)
    if "up to date" not in out.stdout:
        print("dvc status: not up to date; run `dvc repro` first to time a no-op repro", file=sys.stderr)
        return 1
    lo, med = timed([sys.executable, "-m", "dvc", "repro"], args.repo, args.runs)
    print(f"{f'no-op dvc repro ({len(stages)} stages)':<55} min {lo:5.2f} s  median {med:5.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
