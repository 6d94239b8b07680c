"""The pipeline's shared work: what several studies' stages do (stage functions; config in, files out).

    tasks      stage `tasks`: which prepared images each task trains on (data/tasks/<task>/)
    nets       stage train@<population>; training, pruning and distilling nets; checkpoints; per-image accuracy
    extract    stage features@<population>: feature stores of every net of a set (fit, train, test images)
    pairs      fit g and decompose, for a list of pairs (the studies' stages call it)
    journal    finished work items of an interrupted stage, reused when it reruns
    env        the device (KC_DEVICE) and one log line per result

A study's own stages live in kc.studies.<study>; stages/*.py are thin wrappers.
"""
