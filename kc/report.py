"""Stage report: every study's part, in order, with a verdict on each of the paper's claims.

    python stages/report.py      # report/README.md, report/claims.json, report/*.png, metrics/summary.json, plots/*.csv

The report is a loop over the studies (kc.config.STUDIES): each returns its tables, figures and the
claims it decides, each claim with its statistic, its 95% interval and the rule fixed before the
run. A verdict is "holds" (the interval lies on the paper's side), "does not hold" (on the other
side), "inconclusive" (it straddles the boundary) or "not run"; a claim that does not hold on a run
is reported so.
"""
from __future__ import annotations

import math

from pathlib import Path

from kc import paper
from kc.config import STUDIES, Config
from kc.studies import (born_again, compare, compression, cross_task, diagnosis, overfitting, readings, refinement,
                        stability, sweep)
from kc.figures import draw
from kc.io import atomic_dir, write_csv, write_json, write_text
from kc.paths import Paths
from kc.readings import DIFFERENCES, READINGS
from kc.studies.common import Context, ci, fmt, not_run, pct, table


# The studies in report order (the same as kc.config.STUDIES, which parses their sections).
MODULES = (stability, readings, refinement, diagnosis, compression, born_again, cross_task, overfitting, sweep, compare)
assert tuple(m.KEY for m in MODULES) == STUDIES

# Curves for `dvc plots` (declared in dvc.yaml, so always written, empty when a study has no entries).
PLOTS = ("compression", "born_again", "sweep", "overfitting")


def networks(ctx: Context) -> str:
    rows = []
    sets = [(name, pop.nets) for name, pop in ctx.cfg.nets.items()]
    for module in (compression, born_again):
        study = module.KEY
        for name in ctx.cfg.studies.get(study) or {}:
            nets = module.pruned_nets(ctx.cfg, name) if study == "compression" else module.generations(ctx.cfg, name)[1:]
            sets.append((module.net_set(name), nets))
    for set_name, nets in sets:
        m = ctx.net_metrics(set_name)
        for net in nets:
            r = m[net.name]
            made = net.kind + (f" from {net.parent.name}" if net.parent else "")
            rows.append({"net": net.name, "arch": net.arch, "made": made, "task": net.task, "data": net.split,
                         "seed": str(net.seed), "training images": str(r["train_images"]),
                         "train acc.": pct(r["train_accuracy"]), "test acc.": pct(r["test_accuracy"]),
                         "gap (points)": pct(r["gap"]),
                         "weights removed": f"{100 * r['pruned_fraction']:.1f} %" if "pruned_fraction" in r else "–"})
    below = [r["net"] for r in rows if float(r["train acc."]) < 99.0]
    note = (f"\n{len(below)} net(s) end below 99 % training accuracy: {', '.join(below)}.\n" if below else
            "\nEvery net reaches at least 99 % accuracy on its own training images.\n")
    return ("## Networks\n\nTrained from scratch without augmentation on their task's training images; training "
            "accuracy is measured in eval mode on those images, test accuracy on the test images.\n\n" + table(rows) + note)


def readings_table(cfg: Config) -> str:
    rows = [{"": what, "paper text": p, "authors' code": a,
             "kc `paper`": _reading_cell("paper", what), "kc `authors`": _reading_cell("authors", what)}
            for what, p, a in DIFFERENCES]
    return table(rows)


def _reading_cell(name: str, what: str) -> str:
    r = READINGS[name]
    return {"layer tapped": f"{r.tap}-activation", "x and x*": "normalised" if r.normalise else "raw, g scales its input",
            "Σ of h^(k)": r.norm, "p^(k)": r.gate, "init of W^(k)": r.init,
            "optimiser": "Adam, fit.lr" if r.lr is None else f"Adam {r.lr:g} -> {r.lr_end:g}, wd {r.weight_decay:g}",
            "λ": "lam (params)", "Var(x)": "scalar mean (per-channel beside)"}.get(what, "")


def write_report(cfg: Config, root: str | Path = ".") -> dict:
    """Stage report."""
    root = Path(root)
    ctx = Context(cfg, root)
    paths = Paths(root)
    parts = []
    for module in MODULES:
        part = module.report(ctx)
        if part is not None:
            parts.append(part)
    claims = {c.number: c for part in parts for c in part.claims}
    for number in paper.CLAIMS:
        claims.setdefault(number, not_run(number, "no study in params decides it"))
    counts = {v: sum(c.verdict == v for c in claims.values()) for v in ("holds", "does not hold", "inconclusive", "not run")}
    with atomic_dir(paths.report()) as out:
        figures_md: dict[str, list[str]] = {}
        for part in parts:
            for fig in part.figures:
                png = draw(fig, out)
                if png is not None:
                    figures_md.setdefault(part.key, []).append(f"![{fig.title}]({png.name})\n\n*{fig.title}.* {fig.caption}\n")
        lines = []
        for n in sorted(claims):
            c = claims[n]
            interval = f" {ci(c.interval, 4)}" if c.interval is not None else ""
            if c.interval is not None and not (math.isfinite(c.interval.low) and math.isfinite(c.interval.high)):
                interval += " (no interval: the statistic is undefined on some resamples, e.g. a constant series)"
            lines.append(f"{n}. {paper.CLAIMS[n]} — **{c.verdict}**.{interval} Statistic: {c.statistic}. Rule: {c.rule}."
                         + (f" ({c.detail})" if c.detail else ""))
        header = (f"# Knowledge consistency report\n\nGenerated by `dvc repro` (stage `report`) from `params.yaml` with "
                  f"the **{cfg.reading}** reading of the method (README, \"Readings of the paper\"): λ = {cfg.lam:g} "
                  + (f"({', '.join(f'{a}: {v:g}' for a, v in cfg.lam_by_arch.items())}) " if cfg.lam_by_arch else "")
                  + f"K = {cfg.K}, g fitted for {cfg.fit.epochs} epochs. Datasets: "
                  + ", ".join(f"{d.name} ({d.source})" for d in cfg.datasets.values())
                  + ". Everything is measured on the test images; intervals are 95 % bootstrap intervals over test "
                  f"images and seeds or pairs ({cfg.report['draws']} draws).\n\n"
                  f"## The paper's claims on this run: {counts['holds']} hold, {counts['does not hold']} do not, "
                  f"{counts['inconclusive']} inconclusive, {counts['not run']} not run\n\n" + "\n".join(lines) + "\n")
        body = [header, networks(ctx)]
        for part in parts:
            body.append(f"## {part.title}\n\n{part.text}\n" + "".join(figures_md.get(part.key, [])))
        body.append("## Readings of the paper\n\n" + readings_table(cfg))
        write_text(out / "README.md", "\n".join(body))
        write_json(out / "claims.json", {str(n): claims[n].to_dict() for n in sorted(claims)})
    summary = {"claims_holding": counts["holds"], "claims_inconclusive": counts["inconclusive"],
               "claims_not_holding": counts["does not hold"], "claims_not_run": counts["not run"],
               **{f"claim{n}_estimate": c.interval.estimate for n, c in claims.items() if c.interval is not None}}
    plots = {name: [] for name in PLOTS}
    for part in parts:
        summary.update(part.summary)
        plots.update(part.plots)
    for name, rows in plots.items():
        write_csv(paths.plots(name), rows or [{"empty": ""}])
    write_json(paths.summary(), summary)
    print(f"[kc] report: {counts['holds']} hold, {counts['does not hold']} do not, {counts['inconclusive']} inconclusive, "
          f"{counts['not run']} not run; report/README.md", flush=True)
    return summary


__all__ = ["write_report", "fmt"]
