"""Stage prepare@<dataset>: decode, crop and resize a dataset into uint8 memory-mapped arrays.

Command: python stages/prepare.py fmnist
Reads:   params.yaml (seed, datasets.<dataset>); the raw files under datasets.<dataset>.root
Writes:  data/prepared/<dataset>/{train,test}_{images,labels}.npy, meta.json
Default: Fashion-MNIST, 12000 + 2000 images, about 1 s.
"""
from kc.cli import stage
from kc.pipeline import prepare

stage(prepare, lambda cfg: cfg.datasets)
