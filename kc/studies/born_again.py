"""Knowledge distillation explained by knowledge consistency (Section 4.5, Fig. 4 right; claim 7).

    python stages/born_again.py nets vgg_s_conv4_3      # stage distill@vgg_s_conv4_3: the generations
    python stages/born_again.py pairs vgg_s_conv4_3     # stage born_again@vgg_s_conv4_3

params ``born_again.<name>: {nets: <population>, layer, seeds: [...], alpha, tau}``. Generation 0 is
the population's first seed net; generation g+1 is a fresh net (the g-th seed) trained with
CE + alpha * KD(tau) against generation g (footnote 3: alpha 0.5, tau 1). The newest generation's
feature is reconstructed from each earlier generation's; x^Δ = the blind spots of the older net.

Claim 7: statistic = Spearman(generation, Var(x^Δ)/Var(x*)) over the earlier generations; holds when
its 95% interval lies below 0 (blind spots shrink). Intervals: the same resampled test images at
every generation.
"""
from __future__ import annotations

import numpy as np

from kc import stats
from kc.config import Config, NetSpec, population_layer
from kc.studies.common import Claim, Context, Figure, StudyReport, entries, fmt, not_run, pct, table, write_metrics

KEY = "born_again"
TITLE = "Born-again generations (Section 4.5, Fig. 4 right)"


def parse(value, cfg: Config) -> dict:
    out = {}
    for name, e in entries(value, KEY):
        e.done(("nets", "layer", "seeds", "alpha", "tau"))
        pop, layer = population_layer(cfg, e)
        out[name] = {"nets": pop.name, "layer": layer, "seeds": e.ints("seeds", minimum=0, at_least=2),
                     "alpha": e.number("alpha", 0.5, minimum=0), "tau": e.number("tau", 1.0, positive=True)}
    return out


def net_set(name: str) -> str:
    return f"{KEY}_{name}"


def generations(cfg: Config, name: str) -> list[NetSpec]:
    """Generation 0 (the population's first seed net), then each student."""
    from kc.pipeline.nets import generation

    e = cfg.studies[KEY][name]
    nets = [cfg.nets[e["nets"]].primary]
    for seed in e["seeds"]:
        nets.append(generation(nets[-1], seed, net_set(name)))
    return nets


def run_nets(cfg: Config, name: str, root=".") -> dict:
    """Stage distill@<name>: the born-again generations and their feature stores."""
    from kc.pipeline.extract import extract_nets, needed_readings, taps
    from kc.pipeline.nets import distill, make_nets

    e = cfg.studies[KEY][name]
    students = generations(cfg, name)[1:]
    metrics = make_nets(cfg, net_set(name), students,
                        lambda net, path: distill(cfg, net, path, e["alpha"], e["tau"], root), root, f"distill@{name}",
                        sequential=True)                 # each generation learns from the one before
    arch = cfg.nets[e["nets"]].arch
    extract_nets(cfg, net_set(name), students, taps(cfg, arch, [e["layer"]], needed_readings(cfg, "")), root)
    return metrics


def run_pairs(cfg: Config, name: str, root=".") -> dict:
    """Stage born_again@<name>: the newest generation reconstructed from each earlier one."""
    from kc.io import atomic_dir
    from kc.paths import Paths
    from kc.pipeline.pairs import Pair, fit_pairs

    e = cfg.studies[KEY][name]
    gens = generations(cfg, name)
    newest = gens[-1]
    lam = cfg.lam_for(newest.arch, newest.arch)
    pairs = [Pair(g, newest, e["layer"], e["layer"], lam, cfg.K, figure=i == 0) for i, g in enumerate(gens[:-1])]
    paths = Paths(root)
    with atomic_dir(paths.results(KEY, name)) as tmp:
        results = fit_pairs(cfg, pairs, tmp, cfg.reading, root, stage=f"born_again@{name}")
        write_metrics(root, KEY, name, {"pairs": {g.name: results[p.name] for g, p in zip(gens, pairs)},
                                          "pair_names": {g.name: p.name for g, p in zip(gens, pairs)},
                                          "generations": {g.name: g.generation for g in gens}}, tmp)
    return results


def _trend(ctx: Context, name: str) -> tuple[stats.Interval, list[str], dict]:
    m = ctx.metrics(KEY, name)
    moments = ctx.results(KEY, name, "moments.npz")
    names = list(m["pair_names"])
    gens = np.array([m["generations"][n] for n in names], dtype=np.float64)
    mom = np.stack([moments[m["pair_names"][n]] for n in names])
    iv = stats.trend_interval(gens, _ratio_callable(mom), n_images=mom.shape[1],
                              draws=ctx.draws, seed=ctx.cfg.seed)
    return iv, names, m


def _ratio_callable(mom: np.ndarray):
    """weights (d, N) -> (d, L) Var(x^Δ)/Var(x*) of each level."""
    def y(w):
        var = stats.pooled_variance(np.moveaxis(mom, 1, 2), w)
        return var[..., -3] / var[..., -2]
    return y


def report(ctx: Context) -> StudyReport | None:
    spec = ctx.cfg.studies.get(KEY) or {}
    if not spec:
        return StudyReport(KEY, TITLE, "Not run: `born_again` has no entries.\n", [not_run(7, "no born_again entry")])
    rows, curve, figures, intervals, summary = [], [], [], [], {}
    for name in spec:
        iv, names, m = _trend(ctx, name)
        intervals.append(iv)
        nets_m = ctx.net_metrics(net_set(name))
        pop = ctx.cfg.studies[KEY][name]["nets"]
        first = ctx.net_metrics(pop)[names[0]]
        for n in names:
            acc = (nets_m.get(n) or first)["test_accuracy"]
            pm = m["pairs"][n]
            curve.append({"entry": name, "net": n, "generation": m["generations"][n], "var_delta": pm["var_delta"],
                          "delta_ratio": pm["delta_ratio"], "accuracy": acc})
            rows.append({"generation": str(m["generations"][n]), "net": n, "test accuracy": pct(acc),
                         "Var(x^Δ) (blind spots)": fmt(pm["var_delta"], 4), "Var(x^Δ)/Var(x*)": fmt(pm["delta_ratio"])})
        newest = [n for n in m["generations"] if n not in names]
        for newest in newest:
            rows.append({"generation": str(m["generations"][newest]), "net": newest + " (target)",
                         "test accuracy": pct(nets_m[newest]["test_accuracy"]), "Var(x^Δ) (blind spots)": "–",
                         "Var(x^Δ)/Var(x*)": "–"})
        first_pair = m["pair_names"][names[0]]
        figures.append(Figure(f"components_{KEY}_{name}", "components", f"Blind spots of generation 0 ({names[0]})",
                              {"npz": str(ctx.paths.results(KEY, name) / f"{first_pair}.figure.npz"),
                               "channel": ctx.cfg.report["channel"]}))
    iv = intervals[0] if len(intervals) == 1 else stats.Interval(float(np.mean([i.estimate for i in intervals])),
                                                                 float(np.mean([i.low for i in intervals])),
                                                                 float(np.mean([i.high for i in intervals])),
                                                                 {"entries": len(intervals)})
    claim = Claim(7, "Spearman(generation, Var(x^Δ)/Var(x*)) of the newest generation reconstructed from each earlier one",
                  "holds if the 95% interval is below 0 (blind spots shrink); does not hold if above", iv, side="<",
                  detail="; ".join(f"gen {p['generation']}: {fmt(p['delta_ratio'])}" for p in curve))
    figures.append(Figure("born_again", "curve", "Born-again generations (Fig. 4 right)",
                          {"points": curve, "x": "generation", "y": ["delta_ratio"], "xlabel": "generation of the older net",
                           "ylabel": "Var(x^Δ)/Var(x*) (blind spots)"}))
    summary["born_again_trend"] = iv.estimate
    text = ("The newest generation's feature is reconstructed from each earlier generation's; Var(x^Δ) is the earlier "
            "net's blind spots.\n\n" + table(rows))
    return StudyReport(KEY, TITLE, text, [claim], figures, summary,
                       {"born_again": [{k: p[k] for k in ("generation", "var_delta", "delta_ratio", "accuracy")} for p in curve]})
