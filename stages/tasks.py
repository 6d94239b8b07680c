"""Stage tasks: which prepared images each task trains on (its images per class), and its labels.

Command: python stages/tasks.py
Reads:   params.yaml (seed, tasks); data/prepared/
Writes:  data/tasks/<task>/task.json (the task and the fingerprints of its datasets), train_rows.npy
Default: about 1 s.
"""
from kc.launch import forward

forward()  # run in a process forked from a warm server (kc.launch): torch is already loaded

from kc.stage import run_stage
from kc.pipeline.tasks import materialise

run_stage(materialise, device=False)
