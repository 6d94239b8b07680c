"""Stage check: validate the whole params file before any other stage runs (all depend on it).

Command: python stages/check.py
Reads:   params.yaml (every key; each study module parses its own section)
Writes:  data/checked.txt (the same text whenever the file is valid, so valid edits rerun nothing)
Default: about 1 s. A bad value stops `dvc repro` here with one line `kc: error: <key path>: ...`.
"""
from kc.launch import forward

forward()  # run in a process forked from a warm server (kc.launch): torch is already loaded

import sys

from kc.paths import Paths
from kc.stage import check, params_path
from kc.studies import (born_again, compare, compression, cross_task, diagnosis, overfitting,  # noqa: F401 (parsers)
                        readings, refinement, stability, sweep)

sys.exit(check(params_path(), str(Paths().checked())))
