"""Information discarded by network compression (Section 4.4, Fig. 4 left; claim 6).

    python stages/compression.py prune vgg_s_conv4_3     # stage prune@vgg_s_conv4_3: the pruned nets
    python stages/compression.py pairs vgg_s_conv4_3     # stage compression@vgg_s_conv4_3: g per level

params ``compression.<name>: {nets: <population>, layer, thresholds: [...], retrain: {...}}``. The
population's first seed net is pruned by magnitude (Han et al. 2016: in each conv/linear layer the
weights below threshold x std(w) are removed) at each threshold, and the survivors retrained with the
mask held (``retrain`` overrides the population's training recipe). The pruned net's feature
reconstructs the original's; x^Δ is the knowledge discarded by compression.

Claim 6: statistic = min(Spearman(pruned fraction, Var(x^Δ)/Var(x*)), Spearman(pruned fraction,
accuracy drop)) over the levels (mean over entries); holds when its 95% interval lies above 0.
Intervals: the same resampled test images at every level.
"""
from __future__ import annotations

import numpy as np

from kc import stats
from kc.config import Config, ConfigError, NetSpec, population_layer, recipe_with
from kc.studies.common import Claim, Context, Figure, StudyReport, entries, fmt, not_run, pct, table, write_metrics

KEY = "compression"
TITLE = "Information discarded by network compression (Section 4.4, Fig. 4 left)"


def parse(value, cfg: Config) -> dict:
    out = {}
    for name, e in entries(value, KEY):
        e.done(("nets", "layer", "thresholds", "retrain"))
        pop, layer = population_layer(cfg, e)
        thresholds = e.numbers("thresholds", minimum=0, at_least=2)
        if thresholds != sorted(thresholds) or len(set(thresholds)) != len(thresholds):
            raise ConfigError(f"{e.key('thresholds')}: must increase (each level prunes more), got {thresholds}")
        out[name] = {"nets": pop.name, "layer": layer, "thresholds": thresholds,
                     "retrain": recipe_with(pop.recipe, e.sub("retrain", {}))}
    return out


def net_set(name: str) -> str:
    return f"{KEY}_{name}"


def pruned_nets(cfg: Config, name: str) -> list[NetSpec]:
    from kc.pipeline.nets import pruned

    e = cfg.studies[KEY][name]
    parent = cfg.nets[e["nets"]].primary
    return [pruned(parent, t, e["retrain"], net_set(name)) for t in e["thresholds"]]


def run_prune(cfg: Config, name: str, root=".") -> dict:
    """Stage prune@<name>: the pruned nets and their feature stores."""
    from kc.pipeline.extract import extract_nets, needed_readings, taps
    from kc.pipeline.nets import make_nets, prune

    e = cfg.studies[KEY][name]
    nets = pruned_nets(cfg, name)
    metrics = make_nets(cfg, net_set(name), nets, lambda net, path: prune(cfg, net, path, root), root, f"prune@{name}")
    arch = cfg.nets[e["nets"]].arch
    extract_nets(cfg, net_set(name), nets, taps(cfg, arch, [e["layer"]], needed_readings(cfg, "")), root)
    return metrics


def run_pairs(cfg: Config, name: str, root=".") -> dict:
    """Stage compression@<name>: g from each pruned net's feature to the original's."""
    from kc.io import atomic_dir
    from kc.paths import Paths
    from kc.pipeline.pairs import Pair, fit_pairs

    e = cfg.studies[KEY][name]
    parent = cfg.nets[e["nets"]].primary
    nets = pruned_nets(cfg, name)
    lam = cfg.lam_for(parent.arch, parent.arch)
    pairs = [Pair(n, parent, e["layer"], e["layer"], lam, cfg.K, figure=i == len(nets) - 1) for i, n in enumerate(nets)]
    paths = Paths(root)
    with atomic_dir(paths.results(KEY, name)) as tmp:
        results = fit_pairs(cfg, pairs, tmp, cfg.reading, root, stage=f"compression@{name}")
        write_metrics(root, KEY, name, {"pairs": {n.name: results[p.name] for n, p in zip(nets, pairs)},
                                        "pair_names": {n.name: p.name for n, p in zip(nets, pairs)}}, tmp)
    return results


# ------------------------------------------------------------------------------------------------
def _levels(ctx: Context, name: str):
    e = ctx.cfg.studies[KEY][name]
    parent = ctx.cfg.nets[e["nets"]].primary
    nets_m = ctx.net_metrics(net_set(name))
    m = ctx.metrics(KEY, name)
    moments = ctx.results(KEY, name, "moments.npz")
    correct = ctx.net_correct(net_set(name))
    parent_correct = ctx.net_correct(e["nets"])[parent.name]
    names = list(m["pair_names"])
    return e, parent, nets_m, m, moments, correct, parent_correct, names


def _trend(ctx: Context, name: str) -> stats.Interval:
    e, parent, nets_m, m, moments, correct, parent_correct, names = _levels(ctx, name)
    x = np.array([nets_m[n]["pruned_fraction"] for n in names])
    mom = np.stack([moments[m["pair_names"][n]] for n in names])          # (L, N, q, 3)
    acc = np.stack([correct[n] for n in names]).astype(np.float64)        # (L, M)
    base = parent_correct.astype(np.float64)

    def var_trend(w, v):
        var = stats.pooled_variance(np.moveaxis(mom, 1, 2), w)               # (d, L, q)
        return _spearman_rows(x, var[..., -3] / var[..., -2])

    def drop_trend(w, v):
        drop = (w @ base)[:, None] / base.size - (w @ acc.T) / base.size      # (d, L)
        return _spearman_rows(x, drop)

    seed, draws = ctx.cfg.seed, ctx.draws
    a = stats.bootstrap(var_trend, mom.shape[1], 1, draws=draws, seed=seed)
    b = stats.bootstrap(drop_trend, len(base), 1, draws=draws, seed=seed + 1)
    est = min(stats.full_data(var_trend, mom.shape[1]), stats.full_data(drop_trend, len(base)))
    return stats.percentile_interval(np.minimum(a, b), est, n={"images": int(mom.shape[1]), "levels": len(names)})


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from kc.stats import _average_ranks, _pearson_rows

    return _pearson_rows(_average_ranks(x), _average_ranks(y))


def report(ctx: Context) -> StudyReport | None:
    spec = ctx.cfg.studies.get(KEY) or {}
    if not spec:
        return StudyReport(KEY, TITLE, "Not run: `compression` has no entries.\n", [not_run(6, "no compression entry")])
    rows, curve, figures, intervals, summary = [], [], [], [], {}
    for name in spec:
        e, parent, nets_m, m, moments, correct, parent_correct, names = _levels(ctx, name)
        parent_acc = float(parent_correct.mean())
        for n in names:
            nm, pm = nets_m[n], m["pairs"][n]
            point = {"entry": name, "net": n, "threshold": nm["threshold"], "pruned_fraction": nm["pruned_fraction"],
                     "accuracy": nm["test_accuracy"], "accuracy_drop": parent_acc - nm["test_accuracy"],
                     "var_delta": pm["var_delta"], "delta_ratio": pm["delta_ratio"]}
            curve.append(point)
            rows.append({"pruned net": n, "threshold (× std)": fmt(nm["threshold"], 2),
                         "weights removed": f"{100 * nm['pruned_fraction']:.1f} %", "accuracy": pct(nm["test_accuracy"]),
                         "drop (points)": pct(point["accuracy_drop"]), "Var(x^Δ)": fmt(pm["var_delta"], 4),
                         "Var(x^Δ)/Var(x*)": fmt(pm["delta_ratio"])})
        intervals.append(_trend(ctx, name))
        last = m["pair_names"][names[-1]]
        figures.append(Figure(f"components_{KEY}_{name}", "components", f"Most-pruned {names[-1]} → {parent.name}: "
                              "discarded knowledge", {"npz": str(ctx.paths.results(KEY, name) / f"{last}.figure.npz"),
                                                      "channel": ctx.cfg.report["channel"]}))
    iv = intervals[0] if len(intervals) == 1 else stats.Interval(float(np.mean([i.estimate for i in intervals])),
                                                                 float(np.mean([i.low for i in intervals])),
                                                                 float(np.mean([i.high for i in intervals])),
                                                                 {"entries": len(intervals)})
    claim = Claim(6, "min(Spearman(pruned fraction, Var(x^Δ)/Var(x*)), Spearman(pruned fraction, accuracy drop))",
                  "holds if the 95% interval is above 0; does not hold if below", iv,
                  detail="; ".join(f"{p['net']}: {100 * p['pruned_fraction']:.0f} % removed, ratio {fmt(p['delta_ratio'])}, "
                                   f"drop {pct(p['accuracy_drop'])} points" for p in curve))
    figures.append(Figure("compression", "curve", "Compression (Fig. 4 left)",
                          {"points": curve, "x": "delta_ratio", "y": ["accuracy_drop"], "xlabel": "Var(x^Δ)/Var(x*) (discarded)",
                           "ylabel": "accuracy drop", "annotate": "pruned_fraction"}))
    summary["compression_trend"] = claim.interval.estimate
    text = ("The pruned net's feature reconstructs the original's; Var(x^Δ) is the knowledge discarded. Accuracy "
            "drop: the original net's test accuracy minus the pruned and retrained net's.\n\n" + table(rows))
    return StudyReport(KEY, TITLE, text, [claim], figures, summary,
                       {"compression": [{k: p[k] for k in ("net", "pruned_fraction", "delta_ratio", "var_delta", "accuracy_drop")}
                                        for p in curve]})
