"""The studies of the paper's Section 4 (and kc's own), one module each.

A study module owns its params section (``parse``), the work of its DVC stages (stage functions
called by ``stages/<study>.py``), and its part of the report (``report(ctx)``: tables, figures and
the verdict on the claims it decides). kc.config.STUDIES lists them in report order; the report is
a loop over them. Adding a study = a module here, its params section, its stage in dvc.yaml.

    stability     Tables 1-2, claims 1-2 (Section 4.2)
    readings      the stability pairs under the other reading (the authors' code vs the paper)
    refinement    Tables 3-4, claims 3-4 (Section 4.3)
    diagnosis     blind spots and unreliable features, claim 5 (Section 4.1)
    compression   pruning, claim 6 (Section 4.4)
    born_again    born-again generations, claim 7 (Section 4.5)
    cross_task    fine-grained vs binary nets, claim 8 (Section 4.6)
    overfitting   instability and refinement gain against the generalisation gap (ours)
    sweep         λ against the energy of each order (ours)
    compare       layer-by-layer consistency maps of two nets (kc.compare)
"""
