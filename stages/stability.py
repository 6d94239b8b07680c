"""Stage stability@<population>: g for every Case-1 and Case-2 pair at each layer (Tables 1-2).

Command: python stages/stability.py vgg_s
Reads:   params.yaml (seed, reading, lam, lam_by_arch, K, fit, features, nets.<population>, stability);
         data/features/<population>/
Writes:  results/stability/<population>/ (g's, per-image moments, figure data), metrics/stability/<population>.json
Default: 10-20 s per population (2 layers x 10 pairs).
"""
from kc.launch import forward

forward()  # run in a process forked from a warm server (kc.launch): torch is already loaded

from kc.stage import run_stage
from kc.studies.stability import KEY, run

run_stage(run, lambda cfg: cfg.studies[KEY], studies=[KEY], kind=KEY)
