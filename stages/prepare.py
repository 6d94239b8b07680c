"""Stage prepare@<dataset>: decode, crop and resize a dataset into uint8 memory-mapped arrays.

Command: python stages/prepare.py fmnist       (under DVC the name comes from DVC_STAGE)
Reads:   params.yaml (seed, datasets.<dataset>); the raw files under datasets.<dataset>.root
Writes:  data/prepared/<dataset>/{train,test}_{images,labels}.npy, meta.json (with content fingerprints)
Default: Fashion-MNIST, 12000 + 10000 images, about 2 s.
"""
from kc.launch import forward

forward()  # run in a process forked from a warm server (kc.launch): torch is already loaded

from kc.stage import run_stage
from kc.pipeline.prepare import prepare

run_stage(prepare, lambda cfg: cfg.datasets, kind="datasets")
