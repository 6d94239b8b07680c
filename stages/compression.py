"""Stages prune@<name> (the pruned nets) and compression@<name> (g per pruning level) of Section 4.4.

Commands: python stages/compression.py prune vgg_s_conv4_3
          python stages/compression.py pairs vgg_s_conv4_3
Reads:    params.yaml (seed, reading, compression.<name>, the population; pairs: lam, lam_by_arch, K, fit, features);
          prune: data/nets/<population>/; pairs: data/features/<population>/, data/features/compression_<name>/
Writes:   prune: data/nets/compression_<name>/, data/features/compression_<name>/, metrics/nets/compression_<name>.json,
          results/nets/compression_<name>.npz; pairs: results/compression/<name>/, metrics/compression/<name>.json
Default:  prune 10-20 s, pairs about 5 s.
"""
from kc.launch import forward

forward()  # run in a process forked from a warm server (kc.launch): torch is already loaded

import sys

from kc.stage import fail, run_stage
from kc.studies.compression import KEY, run_pairs, run_prune

KINDS = {"prune": run_prune, "pairs": run_pairs}
if len(sys.argv) < 2 or sys.argv[1] not in KINDS:
    fail(f"usage: python stages/compression.py {{{'|'.join(KINDS)}}} [NAME]", 2)
run_stage(KINDS[sys.argv[1]], lambda cfg: cfg.studies[KEY], studies=[KEY], argv=sys.argv[2:], kind=KEY,
          distributed=sys.argv[1] == "prune")
