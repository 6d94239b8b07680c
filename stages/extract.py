"""Stage extract@<net>: store the net's listed layers over the fixed train/test images (float16 memmaps).

Command: python stages/extract.py vgg_s_seed0
Reads:   params.yaml (seed, features.train_images, features.test_images, features.dtype, features.nets.<net>);
         data/prepared/, data/nets/<net>.pt
Writes:  data/features/<net>/ (meta.json with per-channel mean/std, <layer>/{train,test}.npy, labels, index)
Default: about 2 s per net (3000 + 2000 images).
"""
from kc.cli import stage
from kc.pipeline import extract_net

stage(extract_net, lambda cfg: cfg.feature_layers)
