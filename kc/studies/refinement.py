"""Feature refinement (Section 4.3, Appendix A; Tables 3 and 4; claims 3 and 4).

    python stages/refinement.py components vgg_s_conv4_3     # stage refine_components@vgg_s_conv4_3
    python stages/refinement.py subset vgg_s_conv4_3         # stage refine_subset@vgg_s_conv4_3

params ``refinement``: ``components`` (Table 3, Exp. 1) and ``subset`` (Table 4, Exp. 2) entries,
each ``{nets: <population>, layer: <layer>}`` (subset: also ``classes``), and ``margin``. A and B are
the population's first two seed nets; g reconstructs x_B from x_A (fitted on the fit images, for
``subset`` on the subset's images only). Every row is a copy of a net's upper layers fine-tuned on
the nets' own training images with the one ``classifier`` recipe, once per classifier seed, while
A, B and g stay frozen (Appendix A); all rows are scored on the same test images.

Claim 3: statistic = mean over the Table 3 columns of acc(B's upper layers on x^(0)+...+x^(K), the
reconstructed feature) - acc(the better baseline, A on x_A or B on x_B); the refined feature
"matches or beats" the baselines when the interval lies above -margin (margin fixed in params before
the run), and does not when it lies below. Claim 4: the same difference for Table 4's g(x_A) row;
holds when the interval lies above 0. Intervals: bootstrap over test images and classifier seeds.
"""
from __future__ import annotations

import contextlib
import copy

import numpy as np

from kc import paper, stats
from kc.config import Config, ConfigError, Section, check_classes, class_names, population_layer
from kc.studies.common import (Claim, Context, StudyReport, accuracy_draws, ci, combined_interval, not_run, pct, table,
                               write_metrics)

KEY = "refinement"
TITLE = "Feature refinement (Section 4.3, Tables 3 and 4)"


def parse(value, cfg: Config) -> dict:
    s = Section(value, KEY)
    s.done(("margin", "components", "subset"))
    out = {"margin": s.number("margin", 0.01, minimum=0), "components": {}, "subset": {}}
    for kind in ("components", "subset"):
        for name in s.entries(kind, {}):
            e = s.sub(kind).sub(name)
            e.done(("nets", "layer", "paper") + (("classes",) if kind == "subset" else ()))
            pop, layer = population_layer(cfg, e)
            table_ = paper.TABLE3 if kind == "components" else paper.TABLE4
            ref = e.str("paper", None) if e.get("paper", None) is not None else None
            if ref is not None and ref not in table_:
                raise ConfigError(f"{e.key('paper')}: unknown column of the paper's Table {3 if kind == 'components' else 4}; "
                                  f"one of: {', '.join(table_)}")
            if len(pop.seed_nets) < 2:
                raise ConfigError(f"{e.key('nets')}: nets.{pop.name} needs two seed nets (A and B)")
            entry = {"nets": pop.name, "layer": layer, "paper": ref}
            if kind == "subset":
                task = cfg.tasks[pop.task]
                if task.groups is not None or task.classes is not None:
                    raise ConfigError(f"{e.key('nets')}: Exp. 2 needs nets trained on all classes of their datasets "
                                      f"(task {task.name!r} selects or groups classes)")
                entry["classes"] = check_classes(e.get("classes"), e.key("classes"),
                                                 class_names(cfg.datasets, task.datasets), list(task.datasets))
            out[kind][name] = entry
    return out


# ------------------------------------------------------------------------------------------------
# Stages
# ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _setup(cfg: Config, entry: dict, classes, root):
    """(population, pair A -> B, g fitted on it, features on the nets' training images, on every test image)."""
    from kc.pipeline.pairs import Pair, classifier_data, fit_pair

    pop = cfg.nets[entry["nets"]]
    a, b = pop.seed_nets[0], pop.seed_nets[1]
    pair = Pair(a, b, entry["layer"], entry["layer"], cfg.lam_for(pop.arch, pop.arch), cfg.K,
                classes=tuple(classes) if classes is not None else None)
    g, _ = fit_pair(cfg, pair, cfg.reading, root)
    with classifier_data(cfg, [pair], cfg.reading, root) as data:
        yield (pop, pair, g) + data[pair.name]


def _task_labels(cfg: Config, pop, base_labels, root) -> np.ndarray:
    from kc.pipeline.tasks import task_object

    return task_object(cfg, pop.task, root).task_labels(base_labels)


def _write(cfg: Config, kind: str, name: str, correct: dict, extra: dict, root) -> dict:
    from kc.io import atomic_dir, write_npz
    from kc.paths import Paths
    from kc.pipeline.env import log

    paths = Paths(root)
    metrics = {**extra, "seeds": list(cfg.classifier.seeds),
               "rows": {row: {"accuracy": float(c.mean()), "per_seed": c.mean(axis=1).tolist()} for row, c in correct.items()}}
    with atomic_dir(paths.results(KEY, f"{kind}_{name}")) as tmp:
        write_npz(tmp / "correct.npz", **correct)
        write_metrics(root, KEY, f"{kind}_{name}", metrics, tmp)
    log(f"refine {kind} {name}: " + ", ".join(f"{row} {c.mean():.4f}" for row, c in correct.items()))
    return metrics


def run_components(cfg: Config, name: str, root=".") -> dict:
    """Stage refine_components@<name>: Table 3's rows on the entry's layer."""
    from kc.classifiers import Row, component_inputs, raw_inputs, run_rows
    from kc.archs import tap_for
    from kc.pipeline.env import device
    from kc.pipeline.nets import upper_layers

    entry = cfg.studies[KEY]["components"][name]
    with _setup(cfg, entry, None, root) as (pop, pair, g, train, test):
        tap = tap_for(pop.arch, entry["layer"], cfg.reading)
        upper_a, upper_b = upper_layers(root, pair.source, tap), upper_layers(root, pair.target, tap)
        y_train, y_test = _task_labels(cfg, pop, train.labels, root), _task_labels(cfg, pop, test.labels, root)
        keep = np.flatnonzero(y_test >= 0)
        dev = device()
        rows = {"a": lambda: Row(copy.deepcopy(upper_a), raw_inputs(train.source_raw), raw_inputs(test.source_raw.subset(keep))),
                "b": lambda: Row(copy.deepcopy(upper_b), raw_inputs(train.target_raw), raw_inputs(test.target_raw.subset(keep)))}
        for k in range(g.K + 1):
            rows["+".join(f"x{j}" for j in range(k + 1))] = lambda k=k: Row(
                copy.deepcopy(upper_b), component_inputs(g, train.source, train.target, k + 1, dev),
                component_inputs(g, test.source.subset(keep), test.target.subset(keep), k + 1, dev))
        correct = run_rows(rows, y_train, y_test[keep], cfg.classifier, cfg.classifier.seeds, device=dev)
    return _write(cfg, "components", name, correct, {"a": pair.source.name, "b": pair.target.name,
                                                     "layer": entry["layer"], "test_images": int(len(keep))}, root)


def run_subset(cfg: Config, name: str, root=".") -> dict:
    """Stage refine_subset@<name>: Table 4's rows, a classifier for the entry's classes."""
    from kc.archs import tap_for
    from kc.classifiers import RestrictLogits, Row, component_inputs, raw_inputs, run_rows
    from kc.pipeline.env import device
    from kc.pipeline.nets import upper_layers
    from kc.pipeline.pairs import class_labels, stores

    entry = cfg.studies[KEY]["subset"][name]
    with _setup(cfg, entry, entry["classes"], root) as (pop, pair, g, train, test):
        subset = class_labels(stores(root, pair)[0], entry["classes"], root)
        lut = np.full(max(subset) + 1, -1)
        lut[subset] = np.arange(len(subset))
        y_train, y_test = lut[train.labels], lut[test.labels]
        tap = tap_for(pop.arch, entry["layer"], cfg.reading)
        upper_a, upper_b = upper_layers(root, pair.source, tap), upper_layers(root, pair.target, tap)
        dev = device()
        rows = {"a": lambda: Row(RestrictLogits(copy.deepcopy(upper_a), subset), raw_inputs(train.source_raw),
                                 raw_inputs(test.source_raw)),
                "b": lambda: Row(RestrictLogits(copy.deepcopy(upper_b), subset), raw_inputs(train.target_raw),
                                 raw_inputs(test.target_raw)),
                "g": lambda: Row(RestrictLogits(copy.deepcopy(upper_b), subset),
                                 component_inputs(g, train.source, train.target, None, dev),
                                 component_inputs(g, test.source, test.target, None, dev))}
        correct = run_rows(rows, y_train, y_test, cfg.classifier, cfg.classifier.seeds, device=dev)
    return _write(cfg, "subset", name, correct, {"a": pair.source.name, "b": pair.target.name, "layer": entry["layer"],
                                                 "classes": len(subset), "test_images": int(len(y_test))}, root)


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def gain(best: np.ndarray, a: np.ndarray, b: np.ndarray):
    """acc(best) - max(acc(a), acc(b)) per draw."""
    fa, fb, fg = accuracy_draws(a), accuracy_draws(b), accuracy_draws(best)
    return lambda w, v: fg(w, v) - np.maximum(fa(w, v), fb(w, v))


def _column(ctx: Context, kind: str, name: str, refined: str) -> tuple[dict, dict, stats.Interval]:
    m = ctx.metrics(KEY, f"{kind}_{name}")
    c = ctx.results(KEY, f"{kind}_{name}", "correct.npz")
    S, N = c["a"].shape
    iv = stats.bootstrap_interval(gain(c[refined], c["a"], c["b"]), N, S, draws=ctx.draws, seed=ctx.cfg.seed)
    return m, c, iv


def _claim(ctx: Context, number: int, kind: str, refined_of, boundary: float, rule: str, statistic: str) -> Claim:
    entries = ctx.cfg.studies[KEY][kind]
    if not entries:
        return not_run(number, f"no refinement.{kind} entry in params")
    parts, detail = [], []
    for name in entries:
        c = ctx.results(KEY, f"{kind}_{name}", "correct.npz")
        refined = refined_of(c)
        S, N = c["a"].shape
        parts.append((N, S, gain(c[refined], c["a"], c["b"])))
        detail.append(f"{name}: {refined} {pct(c[refined].mean())} vs A {pct(c['a'].mean())}, B {pct(c['b'].mean())}")
    iv = combined_interval(parts, np.mean, ctx.draws, ctx.cfg.seed,
                           {"images": parts[0][0], "seeds": parts[0][1], "columns": len(parts)})
    return Claim(number, statistic, rule, iv, boundary=boundary, detail="; ".join(detail))


def _all_orders(c: dict) -> str:
    return max((k for k in c if k.startswith("x0")), key=len)


def report(ctx: Context) -> StudyReport | None:
    spec = ctx.cfg.studies.get(KEY)
    margin = spec["margin"]
    rows3, rows4, summary = [], [], {}
    for name, e in spec["components"].items():
        m, c, iv = _column(ctx, "components", name, _all_orders(ctx.results(KEY, f"components_{name}", "correct.npz")))
        arch = ctx.cfg.nets[e["nets"]].arch
        ref_key = e["paper"] or paper.column(paper.TABLE3_COLUMNS, arch, e["layer"])
        ref = paper.TABLE3.get(ref_key) if ref_key else None
        row = {"column": f"{e['layer']} @ {e['nets']}", "A on x_A": pct(c["a"].mean()), "B on x_B": pct(c["b"].mean())}
        for k in c:
            if k.startswith("x0"):
                row[k.replace("+", " + ")] = pct(c[k].mean())
        row["x0+…+xK − better baseline (points)"] = ci(iv, 2, 100)
        row["paper (A, B, x0, x0+x1, x0+x1+x2)"] = (f"{ref_key}: " + ", ".join("–" if v is None else f"{v:.2f}" for v in ref)) if ref else "–"
        rows3.append(row)
        summary[f"table3_{name}_gain"] = iv.estimate
    for name, e in spec["subset"].items():
        m, c, iv = _column(ctx, "subset", name, "g")
        ref = paper.TABLE4.get(e["paper"]) if e["paper"] else None
        rows4.append({"column": f"{e['layer']} @ {e['nets']}", "classes": str(m["classes"]), "x_A": pct(c["a"].mean()),
                      "x_B": pct(c["b"].mean()), "g(x_A)": pct(c["g"].mean()), "g − better baseline (points)": ci(iv, 2, 100),
                      "paper (x_A, x_B, g)": f"{e['paper']}: " + ", ".join(f"{v:.2f}" for v in ref) if ref else "–"})
        summary[f"table4_{name}_gain"] = iv.estimate
    claims = [
        _claim(ctx, 3, "components", _all_orders, -margin,
               f"holds if the 95% interval is above -{100 * margin:g} points (a match, margin fixed in params); "
               f"does not hold if below", "mean over Table 3 columns of acc(x^(0)+...+x^(K)) - max(acc A, acc B)"),
        _claim(ctx, 4, "subset", lambda c: "g", 0.0, "holds if the 95% interval is above 0; does not hold if below",
               "mean over Table 4 columns of acc(g(x_A)) - max(acc x_A, acc x_B)")]
    rc = ctx.cfg.classifier
    text = (f"Top-1 test accuracy (%), mean over {len(rc.seeds)} classifier seeds. A, B and g are frozen; each row "
            f"fine-tunes a copy of a net's upper layers on the nets' own training images with one recipe "
            f"({rc.epochs} epochs, lr {rc.lr:g}, batch {rc.batch_size}); components are mapped back to B's feature "
            "scale. Differences with 95% intervals (bootstrap over test images and seeds).\n\n")
    if rows3:
        text += "### Table 3 (Exp. 1): B's upper layers on consistent components\n\n" + table(rows3) + "\n"
    if rows4:
        text += "### Table 4 (Exp. 2): a class-subset classifier from g fitted on that subset only\n\n" + table(rows4)
    if not rows3 and not rows4:
        text = "Not run: `refinement` has no entries.\n"
    return StudyReport(KEY, TITLE, text, claims, [], summary)
