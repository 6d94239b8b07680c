"""Stability of learning (Section 4.2, Tables 1-2; claims 1 and 2).

    python stages/stability.py vgg_s       # stage stability@vgg_s

params: ``stability: [alexnet_s, vgg_s, resnet_s]``, populations of ``nets``. For each population and
each of its layers (listed shallow first), g is fitted for every ordered pair of its seed nets
(Case 1: different initialisations, same data; the paper averages "over all pairs of neural
networks") and both directions of each random division of the data (Case 2: different halves).
Instability = Var(x^Δ)/Var(x*) on the test images, averaged over the pairs.

Claim 1 (Table 2): statistic = the minimum over columns and orders k of the Case-1 mean of
(Var(x^(k)) - Var(x^(k+1))) / Var(x*); holds when its 95% interval lies above 0.
Claim 2 (Table 1): statistic = the mean over populations, cases and consecutive layers of
instability(deeper) - instability(shallower); holds when its interval lies above 0.
Intervals: bootstrap over test images (paired across pairs, layers and populations) and over pairs.
"""
from __future__ import annotations

import numpy as np

from kc import paper, stats
from kc.config import Config, Population
from kc.studies.common import (Claim, Context, Figure, StudyReport, ci, combined_interval, fmt, list_of_populations,
                               not_run, orders_of, pair_mean, pair_variances, ratio_draws, table, write_metrics)

KEY = "stability"
TITLE = "Stability of learning (Section 4.2, Tables 1 and 2)"


def parse(value, cfg: Config) -> list[str]:
    names = list_of_populations(value, cfg, KEY)
    from kc.config import ConfigError

    for name in names:
        pop = cfg.nets[name]
        if len(pop.seeds) < 2 and not pop.halves:
            raise ConfigError(f"{KEY}: nets.{name} needs at least two seeds (Case 1) or one division into halves "
                              "(Case 2)")
    return names


def pairs(cfg: Config, pop: Population, reading_figures: bool = True) -> list[tuple[str, object]]:
    """(case, Pair) for every Case-1 and Case-2 pair of the population at each of its layers."""
    from kc.pipeline.pairs import Pair

    lam = cfg.lam_for(pop.arch, pop.arch)
    seed_nets = pop.seed_nets
    out = []
    for layer in pop.layers:
        first = True
        for a in seed_nets:
            for b in seed_nets:
                if a is not b:
                    out.append(("case1", Pair(a, b, layer, layer, lam, cfg.K, figure=first and reading_figures)))
                    first = False
        nets = {n.half: n for n in pop.nets if n.half is not None}
        for i in range(len(pop.halves)):
            h0, h1 = nets[(i, 0)], nets[(i, 1)]
            out += [("case2", Pair(h0, h1, layer, layer, lam, cfg.K)), ("case2", Pair(h1, h0, layer, layer, lam, cfg.K))]
    return out


def fit_population(cfg: Config, name: str, study: str, reading: str, root=".") -> dict:
    """Fit and decompose every pair of a population into results/<study>/<name>/, metrics/<study>/<name>.json."""
    from kc.io import atomic_dir
    from kc.paths import Paths
    from kc.pipeline.pairs import fit_pairs

    paths = Paths(root)
    listed = pairs(cfg, cfg.nets[name], reading_figures=study == KEY)
    with atomic_dir(paths.results(study, name)) as tmp:
        results = fit_pairs(cfg, [p for _, p in listed], tmp, reading, root, stage=f"{study}@{name}")
        for case, pair in listed:
            results[pair.name].update(case=case, layer=pair.source_layer)
        write_metrics(root, study, name, {"reading": reading, "pairs": results}, tmp)
    return results


def run(cfg: Config, name: str, root=".") -> dict:
    """Stage stability@<population>."""
    return fit_population(cfg, name, KEY, cfg.reading, root)


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def columns(ctx: Context, study: str, names: list[str]) -> list[dict]:
    """One entry per (population, layer): stacked per-image moments of its Case 1 and Case 2 pairs."""
    out = []
    for name in names:
        pop = ctx.cfg.nets[name]
        m = ctx.metrics(study, name)["pairs"]
        moments = ctx.results(study, name, "moments.npz")
        for layer in pop.layers:
            entry = {"population": name, "arch": pop.arch, "layer": layer, "metrics": {}}
            for case in ("case1", "case2"):
                names_ = [p for p, v in m.items() if v["case"] == case and v["layer"] == layer]
                entry["metrics"][case] = [m[p] for p in names_]
                entry[case] = np.stack([moments[p] for p in names_]) if names_ else None
            out.append(entry)
    return out


def _ratio_part(m):
    return (m.shape[1], m.shape[0], lambda w, v: ratio_draws(m, w, v))


def instability(ctx: Context, col: dict, case: str) -> stats.Interval | None:
    m = col[case]
    if m is None:
        return None
    return stats.ratio_interval(m[:, :, -3], m[:, :, -2], draws=ctx.draws, seed=ctx.cfg.seed)


def claim1(ctx: Context, cols: list[dict]) -> Claim:
    cols = [c for c in cols if c["case1"] is not None]
    if not cols:
        return not_run(1, "no Case-1 pairs")
    K1 = min(orders_of(c["case1"][0]) for c in cols)
    if K1 < 2:
        return not_run(1, "K = 0: g has only the linear order")
    parts = []
    for c in cols:
        m = c["case1"]
        for k in range(K1 - 1):
            def fn(w, v, m=m, k=k):
                var = pair_variances(m, w)
                return pair_mean((var[..., k] - var[..., k + 1]) / var[..., -2], v)
            parts.append((m.shape[1], m.shape[0], fn))
    iv = combined_interval(parts, np.min, ctx.draws, ctx.cfg.seed, {"images": cols[0]["case1"].shape[1],
                                                                   "columns": len(cols), "orders": K1})
    detail = "; ".join(f"{c['layer']} @ {c['population']}: " + " > ".join(
        fmt(np.mean([p[f"var_x{k}"] for p in c["metrics"]["case1"]]), 4) for k in range(K1)) for c in cols)
    return Claim(1, "min over columns and k of mean (Var(x^(k)) - Var(x^(k+1))) / Var(x*), Case-1 pairs",
                 "holds if the 95% interval is above 0; does not hold if below 0", iv, detail=detail)


def claim2(ctx: Context, cols: list[dict]) -> Claim:
    parts, detail = [], []
    by_pop: dict[str, list[dict]] = {}
    for c in cols:
        by_pop.setdefault(c["population"], []).append(c)
    for name, layers in by_pop.items():
        for shallow, deep in zip(layers, layers[1:]):
            for case in ("case1", "case2"):
                a, b = shallow[case], deep[case]
                if a is None or b is None:
                    continue
                parts.append((a.shape[1], a.shape[0], lambda w, v, a=a, b=b: ratio_draws(b, w, v) - ratio_draws(a, w, v)))
                detail.append(f"{name} {case}: {shallow['layer']} {fmt(stats.full_data(lambda w, v, a=a: ratio_draws(a, w, v), a.shape[1], a.shape[0]))}"
                              f" -> {deep['layer']} {fmt(stats.full_data(lambda w, v, b=b: ratio_draws(b, w, v), b.shape[1], b.shape[0]))}")
    if not parts:
        return not_run(2, "no population with two or more layers")
    iv = combined_interval(parts, np.mean, ctx.draws, ctx.cfg.seed, {"images": parts[0][0], "comparisons": len(parts)})
    return Claim(2, "mean over populations, cases and consecutive layers of instability(deeper) - instability(shallower)",
                 "holds if the 95% interval is above 0; does not hold if below 0", iv, detail="; ".join(detail))


def tables(ctx: Context, study: str, cols: list[dict]) -> tuple[str, dict]:
    rows1, rows2, summary = [], [], {}
    for c in cols:
        i1, i2 = instability(ctx, c, "case1"), instability(ctx, c, "case2")
        ref = paper.column(paper.TABLE1_COLUMNS, c["arch"], c["layer"])
        r1 = paper.TABLE1.get(ref) if ref else None
        pairs_ = c["metrics"]["case1"] + c["metrics"]["case2"]
        spread = [p["delta_ratio"] for p in c["metrics"]["case1"]]
        rows1.append({"layer @ nets": f"{c['layer']} @ {c['population']}",
                      "Case 1 (seeds)": ci(i1), "pairs": str(len(c["metrics"]["case1"])),
                      "range over pairs": f"{fmt(min(spread))}–{fmt(max(spread))}" if spread else "–",
                      "Case 2 (halves)": ci(i2), "halves pairs": str(len(c["metrics"]["case2"])),
                      "linear R²": fmt(np.mean([p["linear_predictivity"] for p in pairs_])),
                      "CKA": fmt(np.mean([p["cka"] for p in pairs_])),
                      "per-channel-mean ratio": fmt(np.mean([p.get("delta_ratio_channel_mean", np.nan) for p in pairs_])),
                      "paper (Case 1, Case 2)": f"{ref}: {r1[0]}, {r1[1]}" if r1 else "–"})
        key = f"{c['population']}_{c['layer']}"
        if i1:
            summary[f"{study}_case1_{key}"] = i1.estimate
        if i2:
            summary[f"{study}_case2_{key}"] = i2.estimate
        if c["case1"] is not None:
            K1 = orders_of(c["case1"][0])
            row = {"layer @ nets": f"{c['layer']} @ {c['population']}"}
            row.update({f"Var(x^({k}))": fmt(np.mean([p[f"var_x{k}"] for p in c["metrics"]["case1"]]), 4) for k in range(K1)})
            row.update({"Var(x^Δ)": fmt(np.mean([p["var_delta"] for p in c["metrics"]["case1"]]), 4),
                        "Var(x*)": fmt(np.mean([p["var_target"] for p in c["metrics"]["case1"]]), 4)})
            r2 = paper.TABLE2.get(ref) if ref else None
            row["paper (x0, x1, x2, Δ)"] = ", ".join(f"{v:g}" for v in r2) if r2 else "–"
            rows2.append(row)
    text = ("Instability = Var(x^Δ)/Var(x*) on the test images, mean over the pairs with its 95% interval "
            "(bootstrap over test images and pairs). Case 1: every ordered pair of nets from different seeds; "
            "Case 2: both directions of each division of the training data into halves. `linear R²` is the "
            "held-out R² of the best linear map with g's receptive field (0-order consistency) and CKA the "
            "linear CKA of the raw features: what the higher orders add is the gap. The per-channel-mean ratio "
            "is Var computed around per-channel means, as the authors' code does.\n\n" + table(rows1)
            + "\nTable 2 layout: variances of the components for the Case-1 pairs (mean over pairs). Under the "
            "paper's reading features are normalised (Var(x*) ≈ 1): the paper's raw magnitudes are not "
            "comparable, their ratios are.\n\n" + table(rows2))
    return text, summary


def component_figures(ctx: Context, study: str, cols: list[dict]) -> list[Figure]:
    figs = []
    for c in cols:
        if not c["metrics"]["case1"]:
            continue
        first = c["metrics"]["case1"][0]
        name = f"{c['layer']}__{first['source']}__{first['target']}"
        path = ctx.paths.results(study, c["population"]) / f"{name}.figure.npz"
        if path.exists():
            figs.append(Figure(f"components_{study}_{c['population']}_{c['layer']}", "components",
                               f"Two seeds, {c['layer']} @ {c['population']}: {first['source']} → {first['target']}",
                               {"npz": str(path), "channel": ctx.cfg.report["channel"]}))
    return figs


def report(ctx: Context) -> StudyReport | None:
    names = ctx.cfg.studies.get(KEY) or []
    if not names:
        return StudyReport(KEY, TITLE, "Not run: `stability` lists no populations.\n",
                           [not_run(1, "no stability study in params"), not_run(2, "no stability study in params")])
    cols = columns(ctx, KEY, names)
    text, summary = tables(ctx, KEY, cols)
    return StudyReport(KEY, TITLE, text, [claim1(ctx, cols), claim2(ctx, cols)], component_figures(ctx, KEY, cols),
                       summary)
