"""Stage features@<population>: feature stores of every net of a population (fit, train, test images).

Command: python stages/features.py vgg_s
Reads:   params.yaml (seed, reading, features, nets.<population>, readings); data/nets/<population>/
Writes:  data/features/<population>/<net>/ (float16 memmaps of each layer tap, normalisation statistics)
Default: 5-10 s per population.
"""
from kc.launch import forward

forward()  # run in a process forked from a warm server (kc.launch): torch is already loaded

from kc.stage import run_stage
from kc.pipeline.extract import extract_population

run_stage(extract_population, lambda cfg: cfg.nets, kind="nets")
