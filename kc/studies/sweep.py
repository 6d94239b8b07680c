"""One pair fitted at several λ (Eq. 2) or for several numbers of epochs (kc's own study).

    python stages/sweep.py vgg_s_conv4_3_lam       # stage sweep@vgg_s_conv4_3_lam

params ``sweep.<name>: {nets: <population>, layer, lam: [0.01, 0.1, 1.0, 8.0]}`` or ``{..., epochs:
[4, 8, 32]}``: g from the first to the second seed net of the population at each value. λ penalises
the gates p^(k) of the non-linear branches, so it moves energy from the higher orders to x^(0) and,
as g nears the best linear map with its receptive field (``linear R²``), to the residual. The
epochs sweep shows how far from converged g is at the run's ``fit.epochs`` (the authors trained
g for 800 epochs): how much the measured shares would move with more training.
"""
from __future__ import annotations

from kc.config import Config, ConfigError, population_layer
from kc.studies.common import Context, Figure, StudyReport, entries, fmt, table, write_metrics

KEY = "sweep"
TITLE = "Sweeps of λ (Eq. 2) and of g's training"


def parse(value, cfg: Config) -> dict:
    out = {}
    for name, e in entries(value, KEY):
        e.done(("nets", "layer", "lam", "epochs"))
        pop, layer = population_layer(cfg, e)
        if len(pop.seed_nets) < 2:
            raise ConfigError(f"{e.key('nets')}: nets.{pop.name} needs two seed nets")
        if e.has("lam") == e.has("epochs"):
            raise ConfigError(f"{e.path}: give lam (a list of λ) or epochs (a list of epoch counts), one of them")
        if e.has("lam"):
            out[name] = {"nets": pop.name, "layer": layer, "vary": "lam",
                         "values": sorted(set(e.numbers("lam", minimum=0, at_least=2)))}
        else:
            out[name] = {"nets": pop.name, "layer": layer, "vary": "epochs",
                         "values": sorted(set(e.ints("epochs", minimum=1, at_least=2)))}
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
    base = Pair(a, b, e["layer"], e["layer"], cfg.lam_for(pop.arch, pop.arch), cfg.K)
    paths = Paths(root)
    out = {}
    with atomic_dir(paths.results(KEY, name)) as tmp:
        for value in e["values"]:
            folder = tmp / f"{e['vary']}{value:g}"
            folder.mkdir()
            if e["vary"] == "lam":
                run_cfg, pair = cfg, replace(base, lam=value)
            else:
                run_cfg, pair = replace(cfg, fit=replace(cfg.fit, epochs=int(value))), base
            out[f"{value:g}"] = fit_pairs(run_cfg, [pair], folder, cfg.reading, root, stage=f"sweep@{name}")[base.name]
        write_metrics(root, KEY, name, {"vary": e["vary"], "points": out}, tmp)
    return out


def report(ctx: Context) -> StudyReport | None:
    spec = ctx.cfg.studies.get(KEY) or {}
    if not spec:
        return None
    figures, points, text = [], [], ""
    K = ctx.cfg.K
    for name, e in spec.items():
        m = ctx.metrics(KEY, name)
        vary = m["vary"]
        label = {"lam": "λ", "epochs": "epochs of g"}[vary]
        rows, entry_points = [], []
        for value, pm in m["points"].items():
            p = {"entry": name, "vary": vary, "value": float(value), "delta_ratio": pm["delta_ratio"],
                 **{f"var_x{k}": pm[f"var_x{k}"] for k in range(K + 1)},
                 **{f"p{k}": pm.get(f"p{k}") for k in range(1, K + 1)}, "fit_loss": pm["fit_loss"],
                 "linear_predictivity": pm["linear_predictivity"]}
            entry_points.append(p)
            rows.append({label: f"{float(value):g}", **{f"Var(x^({k}))": fmt(pm[f"var_x{k}"], 4) for k in range(K + 1)},
                         "Var(x^Δ)/Var(x*)": fmt(pm["delta_ratio"]), "fit loss": fmt(pm["fit_loss"], 4),
                         "1 − linear R²": fmt(1 - pm["linear_predictivity"]),
                         "gates": ", ".join(fmt(pm.get(f"p{k}"), 3) for k in range(1, K + 1))})
        points += entry_points
        figures.append(Figure(f"sweep_{name}", "curve", f"{label} sweep, {e['layer']} @ {e['nets']}",
                              {"points": entry_points, "x": "value", "y": ["delta_ratio"] + [f"var_x{k}" for k in range(K + 1)],
                               "xlabel": label, "ylabel": "variance (normalised space)", "logx": vary == "lam"}))
        text += (f"`{name}`: g from {ctx.cfg.nets[e['nets']].seed_nets[0].name} to {ctx.cfg.nets[e['nets']].seed_nets[1].name} "
                 f"at {e['layer']}, varying {label} (test images). `1 − linear R²` is what the best linear map with g's "
                 "receptive field leaves unexplained: the residual's ceiling as λ grows.\n\n" + table(rows) + "\n")
    return StudyReport(KEY, TITLE, text, [], figures, {}, {"sweep": points})
