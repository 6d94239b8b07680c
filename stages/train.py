"""Stage train@<population>: every net of a population from scratch (seeds: Case 1; halves: Case 2).

Command: python stages/train.py vgg_s      (KC_NPROC=4: DistributedDataParallel on 4 processes)
Reads:   params.yaml (seed, train, nets.<population>, tasks.<task>); data/tasks/<task>, data/prepared/<dataset>
Writes:  data/nets/<population>/<net>.pt, metrics/nets/<population>.json (train and test accuracy, gap),
         results/nets/<population>.npz (per-image test correctness)
Default: 20-60 s per population of 7 nets on 2 cores.
"""
from kc.launch import forward

forward()  # run in a process forked from a warm server (kc.launch): torch is already loaded

from kc.stage import run_stage
from kc.pipeline.nets import train_population

run_stage(train_population, lambda cfg: cfg.nets, distributed=True, kind="nets")
