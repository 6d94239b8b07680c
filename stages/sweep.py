"""Stage sweep@<name>: one pair at several λ (Eq. 2).

Command: python stages/sweep.py vgg_s_conv4_3
Reads:   params.yaml (seed, reading, K, fit, features, sweep.<name>, the population); data/features/<population>/
Writes:  results/sweep/<name>/, metrics/sweep/<name>.json
Default: about 5 s.
"""
from kc.launch import forward

forward()  # run in a process forked from a warm server (kc.launch): torch is already loaded

from kc.stage import run_stage
from kc.studies.sweep import KEY, run

run_stage(run, lambda cfg: cfg.studies[KEY], studies=[KEY], kind=KEY)
