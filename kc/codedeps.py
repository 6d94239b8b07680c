"""Which of kc's source files a script runs: its kc imports, followed transitively (static analysis).

    python -m kc.codedeps stages/fit.py        # prints kc/consistency.py, kc/config.py, ...

dvc.yaml lists, for every stage, exactly the code it runs; tests/test_dvc_deps.py derives that list
from each stage script with :func:`code_deps` and fails when dvc.yaml misses a file. Imports inside
functions count (a stage runs them); importing a package (``from kc import data``, or a name from
``kc.data`` that is not a submodule) counts the whole package; modules loaded by name at run time
(the study sections kc.config parses with importlib) do not, so a stage depends on its own study
module only.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _file(module: str) -> list[Path]:
    """The source files of a kc module or package (a package: all of its modules)."""
    base = ROOT.joinpath(*module.split("."))
    if base.with_suffix(".py").is_file():
        return [base.with_suffix(".py")]
    if (base / "__init__.py").is_file():
        return sorted(base.glob("*.py"))
    return []


def _imports(path: Path) -> set[str]:
    """kc modules imported anywhere in a file."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name == "kc" or a.name.startswith("kc.")}
        elif isinstance(node, ast.ImportFrom) and node.module and (node.module == "kc" or node.module.startswith("kc.")):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if _file(sub) else node.module)
    return out


def code_deps(script: str | Path) -> list[str]:
    """Repository-relative paths of every kc source file ``script`` runs (sorted)."""
    seen: set[Path] = set()
    todo = [Path(script).resolve()]
    while todo:
        path = todo.pop()
        for module in _imports(path):
            if module == "kc":
                files = [ROOT / "kc" / "__init__.py"]
            else:
                files = _file(module)
                parts = module.split(".")
                for i in range(2, len(parts)):            # the packages on the way (their __init__ runs)
                    init = ROOT.joinpath(*parts[:i], "__init__.py")
                    if init.is_file():
                        files.append(init)
            for f in files:
                if f not in seen:
                    seen.add(f)
                    todo.append(f)
    return sorted(str(f.relative_to(ROOT)) for f in seen)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"{arg}:")
        for dep in code_deps(arg):
            print(f"  - {dep}")
