"""Stage report: the paper's tables and figures from this run, with a verdict on each claim.

Command: python stages/report.py
Reads:   params.yaml (studies, refine, pairs, nets, prune, distill, report); metrics/, data/decomp/
Writes:  report/README.md + report/*.png + report/claims.json, metrics/summary.json, metrics/studies.json,
         plots/compression.csv, plots/born_again.csv, plots/sweep.csv
Default: about 5 s.
"""
from kc.cli import stage
from kc.report import write_report

stage(write_report)
