"""Stages distill@<name> (the born-again generations) and born_again@<name> (their blind spots), Section 4.5.

Commands: python stages/born_again.py nets vgg_s_conv4_3
          python stages/born_again.py pairs vgg_s_conv4_3
Reads:    params.yaml (seed, reading, born_again.<name>, the population; pairs: lam, lam_by_arch, K, fit, features);
          nets: data/nets/<population>/; pairs: data/features/<population>/, data/features/born_again_<name>/
Writes:   nets: data/nets/born_again_<name>/, data/features/born_again_<name>/, metrics/nets/born_again_<name>.json,
          results/nets/born_again_<name>.npz; pairs: results/born_again/<name>/, metrics/born_again/<name>.json
Default:  nets 20-40 s, pairs about 5 s.
"""
from kc.launch import forward

forward()  # run in a process forked from a warm server (kc.launch): torch is already loaded

import sys

from kc.stage import fail, run_stage
from kc.studies.born_again import KEY, run_nets, run_pairs

KINDS = {"nets": run_nets, "pairs": run_pairs}
if len(sys.argv) < 2 or sys.argv[1] not in KINDS:
    fail(f"usage: python stages/born_again.py {{{'|'.join(KINDS)}}} [NAME]", 2)
run_stage(KINDS[sys.argv[1]], lambda cfg: cfg.studies[KEY], studies=[KEY], argv=sys.argv[2:], kind=KEY,
          distributed=sys.argv[1] == "nets")
