"""What λ does: one pair fitted at several λ (kc's own study; Eq. 2).

    python stages/sweep.py vgg_s_conv4_3        # stage sweep@vgg_s_conv4_3

params ``sweep.<name>: {nets: <population>, layer, lam: [0.01, 0.1, 1.0, 8.0]}``: g from the first to
the second seed net of the population at each λ. λ penalises the gates p^(k) of the non-linear
branches (Eq. 2), so it moves energy from the higher orders to x^(0) and, as g nears the best linear
map with its receptive field (``linear R²``), to the residual.
"""
from __future__ import annotations

from kc.config import Config, ConfigError, population_layer
from kc.studies.common import Context, Figure, StudyReport, entries, fmt, table, write_metrics

KEY = "sweep"
TITLE = "A λ sweep (Eq. 2): how λ moves energy between orders"


def parse(value, cfg: Config) -> dict:
    out = {}
    for name, e in entries(value, KEY):
        e.done(("nets", "layer", "lam"))
        pop, layer = population_layer(cfg, e)
        if len(pop.seed_nets) < 2:
            raise ConfigError(f"{e.key('nets')}: nets.{pop.name} needs two seed nets")
        lams = e.numbers("lam", minimum=0, at_least=2)
        out[name] = {"nets": pop.name, "layer": layer, "lam": sorted(set(lams))}
    return out


def run(cfg: Config, name: str, root=".") -> dict:
    """Stage sweep@<name>."""
    from dataclasses import replace

    from kc.io import atomic_dir
    from kc.paths import Paths
    from kc.pipeline.pairs import Pair, fit_pairs

    e = cfg.studies[KEY][name]
    pop = cfg.nets[e["nets"]]
    a, b = pop.seed_nets[0], pop.seed_nets[1]
    base = Pair(a, b, e["layer"], e["layer"], 0.0, cfg.K)
    paths = Paths(root)
    out = {}
    with atomic_dir(paths.results(KEY, name)) as tmp:
        for lam in e["lam"]:
            folder = tmp / f"lam{lam:g}"
            folder.mkdir()
            out[f"{lam:g}"] = fit_pairs(cfg, [replace(base, lam=lam)], folder, cfg.reading, root,
                                        stage=f"sweep@{name}")[base.name]
        write_metrics(root, KEY, name, out, tmp)
    return out


def report(ctx: Context) -> StudyReport | None:
    spec = ctx.cfg.studies.get(KEY) or {}
    if not spec:
        return None
    rows, figures, points = [], [], []
    for name, e in spec.items():
        m = ctx.metrics(KEY, name)
        K = ctx.cfg.K
        entry_points = []
        for lam, pm in m.items():
            p = {"entry": name, "lam": float(lam), "delta_ratio": pm["delta_ratio"],
                 **{f"var_x{k}": pm[f"var_x{k}"] for k in range(K + 1)},
                 **{f"p{k}": pm.get(f"p{k}") for k in range(1, K + 1)}, "linear_predictivity": pm["linear_predictivity"]}
            entry_points.append(p)
            rows.append({"entry": name, "λ": f"{float(lam):g}", **{f"Var(x^({k}))": fmt(pm[f"var_x{k}"], 4) for k in range(K + 1)},
                         "Var(x^Δ)/Var(x*)": fmt(pm["delta_ratio"]), "1 − linear R²": fmt(1 - pm["linear_predictivity"]),
                         "gates": ", ".join(fmt(pm.get(f"p{k}"), 3) for k in range(1, K + 1))})
        points += entry_points
        figures.append(Figure(f"sweep_{name}", "curve", f"λ sweep, {e['layer']} @ {e['nets']}",
                              {"points": entry_points, "x": "lam", "y": ["delta_ratio"] + [f"var_x{k}" for k in range(K + 1)],
                               "xlabel": "λ", "ylabel": "variance (normalised space)", "logx": True}))
    text = ("g from the population's first to its second seed net at each λ (test images). `1 − linear R²` is what the "
            "best linear map with g's receptive field leaves unexplained: the residual's ceiling as λ grows.\n\n" + table(rows))
    return StudyReport(KEY, TITLE, text, [], figures, {}, {"sweep": points})
