"""Stage compare@<name>: every layer of one net against every layer of another, both directions (kc.compare).

Command: python stages/compare.py vgg_s_vs_resnet_s
Reads:   params.yaml (seed, lam, lam_by_arch, K, fit, compare.<name>, the populations); data/nets/<a>/, data/nets/<b>/
Writes:  results/compare/<name>/ (table.csv, the fitted g's, residual maps), metrics/compare/<name>.json
Default: about 1 minute (4 x 4 layers, 32 fits).
"""
from kc.launch import forward

forward()  # run in a process forked from a warm server (kc.launch): torch is already loaded

from kc.stage import run_stage
from kc.studies.compare import KEY, run

run_stage(run, lambda cfg: cfg.studies[KEY], studies=[KEY], kind=KEY)
