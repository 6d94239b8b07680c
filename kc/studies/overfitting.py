"""Does over-fitting drive the effects? (kc's own study, beyond the paper.)

    python stages/overfitting.py vgg_s_n100      # stage overfitting@vgg_s_n100

The paper explains its findings by over-fitting (Table 1's caption; Table 4: consistent features
"significantly alleviated the over-fitting problem") but trains on one data size. params
``overfitting.<population>: {layer}``: populations of one architecture trained on different numbers
of images per class (their tasks' ``images_per_class``). For each: the Case-1 instability at the
layer (claim 2's measure, every ordered pair of seed nets) and the Table 3 refinement gain
(acc(B's upper layers on g(x_A)) - the better baseline, claim 3's measure), each with its 95%
interval, against the nets' generalisation gap (training minus test accuracy, mean over seed nets).
The report gives the rank correlation of each with the gap across populations.
"""
from __future__ import annotations

import copy

import numpy as np

from kc import stats
from kc.config import Config, ConfigError, population_layer
from kc.studies.common import Context, Figure, StudyReport, ci, entries, pct, ratio_draws, table, write_metrics
from kc.studies.refinement import gain

KEY = "overfitting"
TITLE = "Over-fitting against instability and refinement (ours)"


def parse(value, cfg: Config) -> dict:
    out = {}
    for name, e in entries(value, KEY):
        e.done(("layer",))
        if name not in cfg.nets:
            raise ConfigError(f"{e.path}: entries are populations of nets; unknown population {name!r}")
        from kc.config import Section
        pop, layer = population_layer(cfg, Section({"nets": name, "layer": e.get("layer")}, e.path))
        if len(pop.seed_nets) < 2:
            raise ConfigError(f"{e.path}: nets.{name} needs at least two seed nets")
        out[name] = {"layer": layer}
    archs = {cfg.nets[n].arch for n in out}
    if len(archs) > 1:
        raise ConfigError(f"{KEY}: the populations must share one architecture (only the data size varies), got {sorted(archs)}")
    return out


def run(cfg: Config, name: str, root=".") -> dict:
    """Stage overfitting@<population>: Case-1 pairs and the Table 3 rows at the layer."""
    from kc.consistency import load
    from kc.io import atomic_dir, write_npz
    from kc.paths import Paths
    from kc.pipeline.pairs import Pair, classifier_data, fit_pairs
    from kc.pipeline.tasks import task_object

    pop = cfg.nets[name]
    layer = cfg.studies[KEY][name]["layer"]
    lam = cfg.lam_for(pop.arch, pop.arch)
    nets = pop.seed_nets
    pairs = [Pair(a, b, layer, layer, lam, cfg.K) for a in nets for b in nets if a is not b]
    paths = Paths(root)
    task = task_object(cfg, pop.task, root)
    with atomic_dir(paths.results(KEY, name)) as tmp:
        results = fit_pairs(cfg, pairs, tmp, cfg.reading, root, stage=f"overfitting@{name}")
        first = pairs[0]
        g, _ = load(tmp / f"{first.name}.pt")
        with classifier_data(cfg, [first], cfg.reading, root) as data:
            train, test = data[first.name]
            correct = _classifiers(cfg, pop, layer, first, g, train, test, task, root)
        write_npz(tmp / "correct.npz", **correct)
        write_metrics(root, KEY, name, {"layer": layer, "pairs": results,
                                        "rows": {r: float(c.mean()) for r, c in correct.items()}}, tmp)
    return results


def _classifiers(cfg: Config, pop, layer: str, first, g, train, test, task, root) -> dict:
    """Table 3's rows for the first pair: A on x_A, B on x_B, B on g(x_A)."""
    from kc.archs import tap_for
    from kc.classifiers import Row, component_inputs, raw_inputs, run_rows
    from kc.pipeline.env import device
    from kc.pipeline.nets import upper_layers

    dev = device()
    y_train, y_test = task.task_labels(train.labels), task.task_labels(test.labels)
    keep = np.flatnonzero(y_test >= 0)
    tap = tap_for(pop.arch, layer, cfg.reading)
    upper_a, upper_b = upper_layers(root, first.source, tap), upper_layers(root, first.target, tap)
    rows = {"a": lambda: Row(copy.deepcopy(upper_a), raw_inputs(train.source_raw), raw_inputs(test.source_raw.subset(keep))),
            "b": lambda: Row(copy.deepcopy(upper_b), raw_inputs(train.target_raw), raw_inputs(test.target_raw.subset(keep))),
            "g": lambda: Row(copy.deepcopy(upper_b), component_inputs(g, train.source, train.target, None, dev),
                             component_inputs(g, test.source.subset(keep), test.target.subset(keep), None, dev))}
    return run_rows(rows, y_train, y_test[keep], cfg.classifier, cfg.classifier.seeds, device=dev)


def report(ctx: Context) -> StudyReport | None:
    spec = ctx.cfg.studies.get(KEY) or {}
    if not spec:
        return StudyReport(KEY, TITLE, "Not part of this run (it trains populations at several data sizes): its "
                           "profile `configs/overfitting.yaml` has its own committed report, "
                           "[profiles/overfitting](../profiles/overfitting/README.md) "
                           "(`python scripts/run_profile.py configs/overfitting.yaml profiles/overfitting`).\n")
    points, rows = [], []
    for name, e in spec.items():
        pop = ctx.cfg.nets[name]
        net_m = ctx.net_metrics(name)
        gap = float(np.mean([net_m[n.name]["gap"] for n in pop.seed_nets]))
        train_acc = float(np.mean([net_m[n.name]["train_accuracy"] for n in pop.seed_nets]))
        test_acc = float(np.mean([net_m[n.name]["test_accuracy"] for n in pop.seed_nets]))
        m = ctx.metrics(KEY, name)
        mom = ctx.results(KEY, name, "moments.npz")
        stacked = np.stack([mom[p] for p in m["pairs"]])
        inst = stats.bootstrap_interval(lambda w, v: ratio_draws(stacked, w, v), stacked.shape[1], stacked.shape[0],
                                        draws=ctx.draws, seed=ctx.cfg.seed)
        c = ctx.results(KEY, name, "correct.npz")
        S, N = c["a"].shape
        refine = stats.bootstrap_interval(gain(c["g"], c["a"], c["b"]), N, S, draws=ctx.draws, seed=ctx.cfg.seed)
        per_class = ctx.cfg.tasks[pop.task].images_per_class
        points.append({"population": name, "images_per_class": per_class, "gap": gap, "instability": inst.estimate,
                       "instability_low": inst.low, "instability_high": inst.high, "refinement_gain": refine.estimate,
                       "refinement_low": refine.low, "refinement_high": refine.high})
        rows.append({"nets": name, "images per class": str(per_class), "train accuracy": pct(train_acc),
                     "test accuracy": pct(test_acc), "gap (points)": pct(gap), f"instability ({e['layer']}, Case 1)": ci(inst),
                     "refinement gain (points)": ci(refine, 2, 100)})
    points.sort(key=lambda p: p["gap"])
    rho_i = stats.spearman([p["gap"] for p in points], [p["instability"] for p in points])
    rho_r = stats.spearman([p["gap"] for p in points], [p["refinement_gain"] for p in points])
    text = ("Populations of one architecture trained on different numbers of images per class. If over-fitting drives "
            "the paper's effects, instability and the refinement gain should rise with the generalisation gap. "
            f"Across the {len(points)} populations, Spearman(gap, instability) = {rho_i:.2f} and Spearman(gap, "
            f"refinement gain) = {rho_r:.2f} (each point carries its own interval below).\n\n" + table(rows))
    figure = Figure("overfitting", "errorbars", "Over-fitting against instability and refinement gain",
                    {"points": points, "x": "gap", "panels": [("instability", "instability_low", "instability_high"),
                                                              ("refinement_gain", "refinement_low", "refinement_high")],
                     "xlabel": "generalisation gap (train − test accuracy)", "label": "images_per_class"})
    return StudyReport(KEY, TITLE, text, [], [figure], {"overfitting_spearman_gap_instability": rho_i,
                                                        "overfitting_spearman_gap_refinement": rho_r},
                       {"overfitting": points})
