"""Stage prune@<net>: magnitude-prune the parent net (Han et al. 2016), retrain the survivors.

Command: python stages/prune.py vgg_s_prune100
Reads:   params.yaml (seed, train, prune.retrain, prune.nets.<net>); data/prepared/, data/nets/<parent>.pt
Writes:  data/nets/<net>.pt, metrics/nets/<net>.json (pruned fraction, accuracy before/after retraining)
Default: about 5 s per net (1 retraining epoch).
"""
from kc.cli import stage
from kc.pipeline import prune_net

stage(prune_net, lambda cfg: {k: v for k, v in cfg.nets.items() if v.kind == "pruned"}, distributed=True)
