"""Stage readings@<population>: the stability pairs under the other reading (paper <-> authors).

Command: python stages/readings.py vgg_s
Reads:   params.yaml (seed, reading, lam, lam_by_arch, K, fit, features, nets.<population>, readings, stability);
         data/features/<population>/
Writes:  results/readings/<population>/, metrics/readings/<population>.json
Default: 10-20 s per population.
"""
from kc.launch import forward

forward()  # run in a process forked from a warm server (kc.launch): torch is already loaded

from kc.stage import run_stage
from kc.studies.readings import KEY, run

run_stage(run, lambda cfg: cfg.studies[KEY], studies=[KEY], kind=KEY)
