"""Write into dvc.yaml, for every stage, the kc source files its script runs (kc.codedeps).

    python scripts/dvc_deps.py           # rewrite the code entries of each stage's deps in place
    python scripts/dvc_deps.py --check   # exit 1 and list the differences instead (tests/test_dvc_deps.py)

A stage's deps are its data (data/..., results/...), its script (stages/<name>.py) and exactly the kc
files that script imports, transitively: change one and `dvc repro` reruns the stages that run it.
Comments and everything else in dvc.yaml are kept.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kc.codedeps import code_deps  # noqa: E402


def stage_bodies(doc):
    for name, stage in doc["stages"].items():
        yield name, (stage["do"] if "do" in stage else stage)


def wanted(body) -> list[str]:
    script = next(d for d in body["deps"] if str(d).startswith("stages/"))
    return code_deps(ROOT / script)


def main(argv: list[str]) -> int:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 200
    yaml.indent(mapping=2, sequence=4, offset=2)
    path = ROOT / "dvc.yaml"
    doc = yaml.load(path.read_text())
    problems = []
    for name, body in stage_bodies(doc):
        deps = body["deps"]
        have = [d for d in deps if str(d).startswith("kc/")]
        need = wanted(body)
        if have != need:
            missing, extra = sorted(set(need) - set(have)), sorted(set(have) - set(need))
            problems.append(f"{name}: missing {missing or '-'}; not run by its script {extra or '-'}")
            keep = [d for d in deps if not str(d).startswith("kc/")]
            deps.clear()
            deps.extend(keep + need)
    if "--check" in argv:
        print("\n".join(problems) or "dvc.yaml: every stage lists exactly the code it runs")
        return 1 if problems else 0
    with open(path, "w") as f:
        yaml.dump(doc, f)
    print(f"dvc.yaml: {len(problems)} stage(s) updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
