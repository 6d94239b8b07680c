"""Stage report: the paper's tables and figures from this run, with a verdict and interval on each claim.

Command: python stages/report.py
Reads:   params.yaml (every key); metrics/, results/
Writes:  report/ (README.md, claims.json, figures), metrics/summary.json, plots/*.csv
Default: about 10 s.
"""
from kc.launch import forward

forward()  # run in a process forked from a warm server (kc.launch): torch is already loaded

from kc.stage import run_stage
from kc.config import STUDIES
from kc.report import write_report

run_stage(write_report, studies=STUDIES, device=False)
