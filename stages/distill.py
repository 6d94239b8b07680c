"""Stage distill@<net>: train a born-again generation against its teacher (CE + 0.5 KD, tau = 1).

Command: python stages/distill.py vgg_s_gen1
Reads:   params.yaml (seed, train, distill.alpha, distill.tau, distill.nets.<net>); data/prepared/,
         data/nets/<teacher>.pt
Writes:  data/nets/<net>.pt, metrics/nets/<net>.json (accuracy, generation)
Default: about 15 s per generation.
"""
from kc.cli import stage
from kc.pipeline import distill_net

stage(distill_net, lambda cfg: {k: v for k, v in cfg.nets.items() if v.kind == "distilled"}, distributed=True)
