"""Layer-by-layer consistency maps of two nets (kc.compare; kc's own study).

    python stages/compare.py vgg_s_vs_resnet_s       # stage compare@vgg_s_vs_resnet_s

params ``compare.<name>: {a: <population>, b: <population>, layers_a: [...], layers_b: [...], images,
epochs}``: the first seed nets of the two populations, every layer of A against every layer of B in
both directions, on ``images`` test images (a quarter held out for scoring). The report draws the
residual share Var(x^Δ)/Var(x*) and the order-0 share Var(x^(0))/Var(x*) as heatmaps, in the style
of CKA heatmaps, with CKA beside them.
"""
from __future__ import annotations

import csv

import numpy as np

from kc.config import Config, ConfigError, check_layer, same_images
from kc.studies.common import Context, Figure, StudyReport, entries, fmt, table, write_metrics

KEY = "compare"
TITLE = "Layer-by-layer consistency of two nets (kc.compare)"


def parse(value, cfg: Config) -> dict:
    out = {}
    for name, e in entries(value, KEY):
        e.done(("a", "b", "layers_a", "layers_b", "images", "epochs"))
        a, b = cfg.nets[e.name("a", cfg.nets, "population of nets")], cfg.nets[e.name("b", cfg.nets, "population of nets")]
        same_images(cfg, a, b, e.path)
        layers = {}
        for side, pop in (("layers_a", a), ("layers_b", b)):
            value_ = e.get(side)
            if not isinstance(value_, list) or not value_:
                raise ConfigError(f"{e.key(side)}: must be a non-empty list of layer names, got {value_!r}")
            for i, layer in enumerate(value_):
                check_layer(pop.arch, layer, f"{e.key(side)}[{i}]")
            layers[side] = list(value_)
        out[name] = {"a": a.name, "b": b.name, **layers, "images": e.int("images", 2000, minimum=16),
                     "epochs": e.int("epochs", 5, minimum=1)}
    return out


def run(cfg: Config, name: str, root=".") -> dict:
    """Stage compare@<name>."""
    from kc.compare import compare
    from kc.data.splits import stratified_subset
    from kc.io import atomic_dir
    from kc.paths import Paths
    from kc.pipeline.env import device, log
    from kc.pipeline.nets import load_net
    from kc.pipeline.tasks import task_object

    e = cfg.studies[KEY][name]
    a, b = cfg.nets[e["a"]].primary, cfg.nets[e["b"]].primary
    model_a, _ = load_net(root, a)
    model_b, _ = load_net(root, b)
    test = task_object(cfg, a.task, root).load("test")
    test = test.subset(stratified_subset(test.labels, e["images"], seed=cfg.seed))
    paths = Paths(root)
    with compare(model_a, model_b, test, e["layers_a"], e["layers_b"], K=cfg.K, lam=cfg.lam_for(a.arch, b.arch),
                 epochs=e["epochs"], lr=cfg.fit.lr, kernel_size=cfg.fit.kernel_size, seed=cfg.seed, device=device(),
                 names=(a.name, b.name), progress=False) as result:
        rows = result.table.to_dict(orient="records")
        with atomic_dir(paths.results(KEY, name)) as tmp:
            result.save(tmp / "comparison", images=False)
            write_metrics(root, KEY, name, {f"{r['layer_a']}|{r['layer_b']}|{r['direction']}":
                                            {k: v for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                                            for r in rows}, tmp)
    log(f"compare {name}: {len(rows)} layer pairs ({a.name} vs {b.name})")
    return {"rows": len(rows)}


def _read_table(ctx: Context, name: str) -> list[dict]:
    with open(ctx.paths.results(KEY, name) / "comparison" / "table.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def report(ctx: Context) -> StudyReport | None:
    spec = ctx.cfg.studies.get(KEY) or {}
    if not spec:
        return None
    figures, text, summary = [], "", {}
    for name, e in spec.items():
        rows = _read_table(ctx, name)
        la, lb = e["layers_a"], e["layers_b"]
        panels = []
        for direction in ("a->b", "b->a"):
            sel = {(r["layer_a"], r["layer_b"]): r for r in rows if r["direction"] == direction}
            if not sel:
                continue
            for key, label in (("delta_ratio", "residual share Var(x^Δ)/Var(x*)"), ("share_x0", "order-0 share")):
                m = np.array([[float(sel[(x, y)][key]) if (x, y) in sel else np.nan for y in lb] for x in la])
                panels.append((f"{direction}: {label}", m.tolist()))
        na, nb = ctx.cfg.nets[e["a"]].primary.name, ctx.cfg.nets[e["b"]].primary.name
        figures.append(Figure(f"compare_{name}", "heatmap", f"{na} (rows) against {nb} (columns)",
                              {"rows": la, "cols": lb, "panels": panels, "xlabel": nb, "ylabel": na},
                              "a->b: A's layer reconstructs B's; b->a: the reverse."))
        best = min(rows, key=lambda r: float(r["delta_ratio"]))
        worst = max(rows, key=lambda r: float(r["delta_ratio"]))
        text += (f"`{name}`: {na} against {nb}, {len(rows)} layer pairs. Best explained: {best['layer_a']} / "
                 f"{best['layer_b']} ({best['direction']}, residual share {fmt(float(best['delta_ratio']))}); worst: "
                 f"{worst['layer_a']} / {worst['layer_b']} ({worst['direction']}, {fmt(float(worst['delta_ratio']))}).\n\n")
        text += table([{"A layer": r["layer_a"], "B layer": r["layer_b"], "direction": r["direction"],
                        "Var(x^Δ)/Var(x*)": fmt(float(r["delta_ratio"])),
                        "95% interval": f"[{fmt(float(r['delta_ratio_low']))}, {fmt(float(r['delta_ratio_high']))}]",
                        "order-0 share": fmt(float(r["share_x0"])), "CKA": fmt(float(r["cka"]))} for r in rows]) + "\n"
        summary[f"compare_{name}_mean_residual_share"] = float(np.mean([float(r["delta_ratio"]) for r in rows]))
    return StudyReport(KEY, TITLE, text, [], figures, summary)
