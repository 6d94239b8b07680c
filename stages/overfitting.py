"""Stage overfitting@<population>: instability and refinement gain at one data size (ours).

Command: python stages/overfitting.py vgg_s_n100
Reads:   params.yaml (seed, reading, lam, lam_by_arch, K, fit, features, classifier, overfitting.<population>,
         nets.<population>); data/features/<population>/, data/nets/<population>/
Writes:  results/overfitting/<population>/, metrics/overfitting/<population>.json
Default: 10-20 s per population.
"""
from kc.launch import forward

forward()  # run in a process forked from a warm server (kc.launch): torch is already loaded

from kc.stage import run_stage
from kc.studies.overfitting import KEY, run

run_stage(run, lambda cfg: cfg.studies[KEY], studies=[KEY], kind=KEY)
