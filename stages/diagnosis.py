"""Stage diagnose@<name>: blind spots and unreliable features of a weak net (Section 4.1).

Command: python stages/diagnosis.py alexnet_s_vs_resnet_s
Reads:   params.yaml (seed, reading, lam, lam_by_arch, K, fit, features, classifier, diagnosis.<name>, the populations);
         data/features/<weak>/, data/features/<strong>/, data/nets/<weak>/, data/nets/<strong>/
Writes:  results/diagnosis/<name>/, metrics/diagnosis/<name>.json
Default: about 30 s.
"""
from kc.launch import forward

forward()  # run in a process forked from a warm server (kc.launch): torch is already loaded

from kc.stage import run_stage
from kc.studies.diagnosis import KEY, run

run_stage(run, lambda cfg: cfg.studies[KEY], studies=[KEY], kind=KEY)
