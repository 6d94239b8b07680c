"""Stages refine_components@<name>, refine_subset@<name>, diagnose@<name>: classifiers on fixed features.

Commands: python stages/refine.py components vgg_s_conv4_3   (Table 3, Exp. 1)
          python stages/refine.py subset vgg_s_conv4_3       (Table 4, Exp. 2)
          python stages/refine.py diagnosis alexnet_s_vs_resnet_s   (Section 4.1)
Reads:    params.yaml (seed, refine.recipe, refine.<kind>.<name>, the pairs it names); the pairs' fits,
          the nets' checkpoints (upper layers) and feature stores
Writes:   metrics/refine/<kind>_<name>.json (test accuracy of every row)
Default:  10-20 s each (3 epochs of fine-tuning per row).
"""
import sys

from kc.cli import stage
from kc.pipeline import diagnose, refine_components, refine_subset

KINDS = {"components": refine_components, "subset": refine_subset, "diagnosis": diagnose}

if len(sys.argv) != 3 or sys.argv[1] not in KINDS:
    sys.exit(f"usage: python stages/refine.py {{{'|'.join(KINDS)}}} NAME")
kind = sys.argv[1]
stage(KINDS[kind], lambda cfg: cfg.refine[kind], argv=sys.argv[2:])
