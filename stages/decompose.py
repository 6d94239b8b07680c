"""Stage decompose@<pair>: split g(x) into x^(0..K) and x^Delta on the test images (Eq. 3-4).

Command: python stages/decompose.py seeds_vgg_s_conv4_3_ab
Reads:   params.yaml (seed, fit.kernel_size, decompose, pairs.<pair>); data/fits/<pair>.pt, the two feature stores
Writes:  metrics/pairs/<pair>.json (Var(x^(k)), Var(x^Delta), Var(x^Delta)/Var(x*), CKA, linear predictivity),
         data/decomp/<pair>.npz (components of a few test images, for the report's figures)
Default: about 2 s per pair.
"""
from kc.cli import stage
from kc.pipeline import decompose_pair

stage(decompose_pair, lambda cfg: cfg.pairs)
