"""Stage train@<net>: train a backbone from scratch on its task (seeded; half splits for Case 2).

Command: python stages/train.py vgg_s_seed0    (KC_NPROC=4: DistributedDataParallel on 4 processes)
Reads:   params.yaml (seed, train, nets.<net>, tasks.<task>); data/prepared/
Writes:  data/nets/<net>.pt (checkpoint), metrics/nets/<net>.json (test accuracy)
Default: 5-25 s per net on 2 cores (3 epochs over 12000 images).
"""
from kc.cli import stage
from kc.pipeline import train_net

stage(train_net, lambda cfg: {k: v for k, v in cfg.nets.items() if v.kind == "scratch"}, distributed=True)
