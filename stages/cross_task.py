"""Stage cross_task@<name>: the fine-grained and the binary net reconstruct each other (Section 4.6).

Command: python stages/cross_task.py vgg_s_conv4_3
Reads:   params.yaml (seed, reading, lam, lam_by_arch, K, fit, features, cross_task.<name>, the populations);
         data/features/<fine>/, data/features/<binary>/
Writes:  results/cross_task/<name>/, metrics/cross_task/<name>.json
Default: about 5 s.
"""
from kc.launch import forward

forward()  # run in a process forked from a warm server (kc.launch): torch is already loaded

from kc.stage import run_stage
from kc.studies.cross_task import KEY, run

run_stage(run, lambda cfg: cfg.studies[KEY], studies=[KEY], kind=KEY)
