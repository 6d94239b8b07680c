"""Stages refine_components@<name> (Table 3) and refine_subset@<name> (Table 4): classifiers on frozen features.

Commands: python stages/refinement.py components vgg_s_conv4_3
          python stages/refinement.py subset vgg_s_conv4_3
Reads:    params.yaml (seed, reading, lam, lam_by_arch, K, fit, features, classifier, refinement, the population);
          data/features/<population>/, data/nets/<population>/
Writes:   results/refinement/<kind>_<name>/correct.npz (per seed and test image), metrics/refinement/<kind>_<name>.json
Default:  10-30 s each (rows x 3 classifier seeds).
"""
from kc.launch import forward

forward()  # run in a process forked from a warm server (kc.launch): torch is already loaded

import sys

from kc.stage import fail, run_stage
from kc.studies.refinement import KEY, run_components, run_subset

KINDS = {"components": run_components, "subset": run_subset}
if len(sys.argv) < 2 or sys.argv[1] not in KINDS:
    fail(f"usage: python stages/refinement.py {{{'|'.join(KINDS)}}} [NAME]", 2)
kind = sys.argv[1]
run_stage(KINDS[kind], lambda cfg: cfg.studies[KEY][kind], studies=[KEY], argv=sys.argv[2:], kind=f"{KEY}.{kind}")
