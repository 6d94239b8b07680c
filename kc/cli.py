"""Command line: ``python -m kc check|plan|compare``.

    python -m kc check params.yaml        # validate the whole file; one `kc: error:` line when it is bad
    python -m kc plan params.yaml         # what a run will cost: disk, GPU memory, stages, before it starts
    python -m kc compare A.pt B.pt --data fmnist --layers-a ... --layers-b ... --out DIR
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = ("usage: python -m kc check PARAMS.yaml [--write FILE] | python -m kc plan PARAMS.yaml | "
             "python -m kc compare A.pt B.pt --data DATA --layers-a L,.. --layers-b L,.. --out DIR")
    if len(args) in (2, 4) and args[0] == "check":
        if len(args) == 4 and args[2] != "--write":
            print(usage, file=sys.stderr)
            return 2
        from kc.stage import check
        return check(args[1], args[3] if len(args) == 4 else None)
    if len(args) >= 2 and args[0] == "plan":
        from kc.plan import main as plan_main
        return plan_main(args[1:])
    if args and args[0] == "compare":
        from kc.compare import main as compare_main
        return compare_main(args[1:])
    print(usage, file=sys.stderr)
    return 2
