"""Consistent and inconsistent features between tasks (Section 4.6, Fig. 5; claim 8).

    python stages/cross_task.py vgg_s_conv4_3        # stage cross_task@vgg_s_conv4_3

params ``cross_task.<name>: {fine: <population>, binary: <population>, layer}``: the first seed net of
a population trained for the fine-grained task and of one trained for a coarse (binary) task on the
same images, compared in both directions. The paper: "DNN A encoded more knowledge than DNN B,
thereby x_A reconstructing more features than x_B".

Claim 8: statistic = Var(x^Δ)/Var(x*) of fine -> binary minus that of binary -> fine (mean over
entries); holds when its 95% interval lies below 0.
"""
from __future__ import annotations

import numpy as np

from kc import stats
from kc.config import Config, ConfigError, population_layer, same_images
from kc.studies.common import (Claim, Context, Figure, StudyReport, ci, combined_interval, entries, fmt, not_run,
                               ratio_draws, table, write_metrics)

KEY = "cross_task"
TITLE = "Consistent and inconsistent features between tasks (Section 4.6)"


def parse(value, cfg: Config) -> dict:
    out = {}
    for name, e in entries(value, KEY):
        e.done(("fine", "binary", "layer"))
        fine, layer = population_layer(cfg, e, "fine", "layer")
        binary, _ = population_layer(cfg, e, "binary", "layer")
        if fine.arch != binary.arch:
            raise ConfigError(f"{e.path}: fine and binary nets must share an architecture (the paper: two VGG-16s)")
        same_images(cfg, fine, binary, e.path)
        out[name] = {"fine": fine.name, "binary": binary.name, "layer": layer}
    return out


def run(cfg: Config, name: str, root=".") -> dict:
    """Stage cross_task@<name>: fine -> binary and binary -> fine."""
    from kc.io import atomic_dir
    from kc.paths import Paths
    from kc.pipeline.pairs import Pair, fit_pairs

    e = cfg.studies[KEY][name]
    fine, binary = cfg.nets[e["fine"]].primary, cfg.nets[e["binary"]].primary
    lam = cfg.lam_for(fine.arch, binary.arch)
    pairs = {"fine_to_binary": Pair(fine, binary, e["layer"], e["layer"], lam, cfg.K, figure=True),
             "binary_to_fine": Pair(binary, fine, e["layer"], e["layer"], lam, cfg.K, figure=True)}
    paths = Paths(root)
    with atomic_dir(paths.results(KEY, name)) as tmp:
        results = fit_pairs(cfg, list(pairs.values()), tmp, cfg.reading, root, stage=f"cross_task@{name}")
        write_metrics(root, KEY, name, {k: {**results[p.name], "pair": p.name} for k, p in pairs.items()}, tmp)
    return results


def report(ctx: Context) -> StudyReport | None:
    spec = ctx.cfg.studies.get(KEY) or {}
    if not spec:
        return StudyReport(KEY, TITLE, "Not run: `cross_task` has no entries.\n", [not_run(8, "no cross_task entry")])
    rows, parts, figures, summary = [], [], [], {}
    for name, e in spec.items():
        m = ctx.metrics(KEY, name)
        mom = ctx.results(KEY, name, "moments.npz")
        fb, bf = mom[m["fine_to_binary"]["pair"]][None], mom[m["binary_to_fine"]["pair"]][None]
        parts.append((fb.shape[1], 1, lambda w, v, fb=fb, bf=bf: ratio_draws(fb, w, v) - ratio_draws(bf, w, v)))
        one = stats.bootstrap_interval(parts[-1][2], fb.shape[1], 1, draws=ctx.draws, seed=ctx.cfg.seed)
        for direction in ("fine_to_binary", "binary_to_fine"):
            d = m[direction]
            rows.append({"entry": name, "direction": direction.replace("_", " "), "source → target": f"{d['source']} → {d['target']}",
                         "Var(x^Δ)/Var(x*)": fmt(d["delta_ratio"]), "linear R²": fmt(d["linear_predictivity"]),
                         "CKA": fmt(d["cka"])})
            figures.append(Figure(f"components_{KEY}_{name}_{direction}", "components",
                                  f"{d['source']} → {d['target']} ({direction.replace('_', ' ')})",
                                  {"npz": str(ctx.paths.results(KEY, name) / f"{d['pair']}.figure.npz"),
                                   "channel": ctx.cfg.report["channel"]}))
        rows.append({"entry": name, "direction": "difference", "source → target": "fine→binary − binary→fine",
                     "Var(x^Δ)/Var(x*)": ci(one), "linear R²": "", "CKA": ""})
        summary[f"cross_task_{name}_fine_to_binary"] = m["fine_to_binary"]["delta_ratio"]
        summary[f"cross_task_{name}_binary_to_fine"] = m["binary_to_fine"]["delta_ratio"]
    iv = combined_interval(parts, np.mean, ctx.draws, ctx.cfg.seed, {"images": parts[0][0], "entries": len(parts)})
    claim = Claim(8, "Var(x^Δ)/Var(x*) of fine -> binary minus that of binary -> fine",
                  "holds if the 95% interval is below 0; does not hold if above", iv, side="<",
                  detail="; ".join(f"{r['entry']} {r['direction']}: {r['Var(x^Δ)/Var(x*)']}" for r in rows))
    text = ("The fine-grained net and the binary net reconstruct each other's feature; the share the other net "
            "cannot explain, Var(x^Δ)/Var(x*), with the difference's 95% interval.\n\n" + table(rows))
    return StudyReport(KEY, TITLE, text, [claim], figures, summary)
