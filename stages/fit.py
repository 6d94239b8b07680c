"""Stage fit@<pair>: fit g_theta (Eq. 1-2) from the source's to the target's training features.

Command: python stages/fit.py seeds_vgg_s_conv4_3_ab
Reads:   params.yaml (seed, lam, K, fit, pairs.<pair>); data/features/<source>/, data/features/<target>/
Writes:  data/fits/<pair>.pt, metrics/fits/<pair>.json (loss, gates), plots/fits/<pair>.csv (loss per epoch)
Default: about 4 s per pair (20 epochs over 3000 images of 32x7x7 features), plus about 3 s of start-up.
"""
from kc.cli import stage
from kc.pipeline import fit_pair

stage(fit_pair, lambda cfg: cfg.pairs)
