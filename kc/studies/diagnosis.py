"""Diagnosis of a weak net by a strong one (Section 4.1, Fig. 3; claim 5).

    python stages/diagnosis.py alexnet_s_vs_resnet_s      # stage diagnose@alexnet_s_vs_resnet_s

params ``diagnosis.<name>: {weak: <population>, weak_layer, strong: <population>, strong_layer}``; the
populations' first seed nets are compared. Blind spots: x^Δ of the strong feature reconstructed from
the weak one. Unreliable features: x^Δ of the weak feature reconstructed from the strong one. Two
classifier experiments, each row fine-tuning a copy of the weak net's upper layers (the strong
net's for reference) once per classifier seed, everything else frozen:
(a) blind spots added: the weak upper layers on x_A + P x^Δ_B (P a 1x1 convolution starting at
zero, so the classifier starts as the weak net; the paper's "adding them back to g(x_A)" would
give x_B itself, README), against x_A; (b) unreliable features removed: on g'(x_strong), the weak
feature as reconstructed from the strong one, against x_A.

Claim 5: statistic = the mean over entries of min(gain (a), gain (b)), gains in accuracy over the
weak row on the same test images; holds when its 95% interval lies above 0 (both help).
"""
from __future__ import annotations

import contextlib
import copy

import numpy as np

from kc import paper
from kc.config import Config, ConfigError, population_layer, same_images
from kc.studies.common import (Claim, Context, Figure, StudyReport, accuracy_draws, ci, combined_interval, entries, fmt,
                               not_run, pct, table, write_metrics)

KEY = "diagnosis"
TITLE = "Diagnosis of a weak net by a strong one (Section 4.1)"


def parse(value, cfg: Config) -> dict:
    out = {}
    for name, e in entries(value, KEY):
        e.done(("weak", "weak_layer", "strong", "strong_layer"))
        weak, weak_layer = population_layer(cfg, e, "weak", "weak_layer")
        strong, strong_layer = population_layer(cfg, e, "strong", "strong_layer")
        if weak.task != strong.task:
            raise ConfigError(f"{e.path}: nets.{weak.name} and nets.{strong.name} must be trained on the same task")
        same_images(cfg, weak, strong, e.path)
        out[name] = {"weak": weak.name, "weak_layer": weak_layer, "strong": strong.name, "strong_layer": strong_layer}
    return out


def pairs(cfg: Config, entry: dict):
    from kc.pipeline.pairs import Pair

    weak, strong = cfg.nets[entry["weak"]], cfg.nets[entry["strong"]]
    lam = cfg.lam_for(weak.arch, strong.arch)
    blind = Pair(weak.primary, strong.primary, entry["weak_layer"], entry["strong_layer"], lam, cfg.K, figure=True)
    unreliable = Pair(strong.primary, weak.primary, entry["strong_layer"], entry["weak_layer"], lam, cfg.K, figure=True)
    return blind, unreliable


def run(cfg: Config, name: str, root=".") -> dict:
    """Stage diagnose@<name>: the two pairs, then the classifier rows."""
    from kc.archs import tap_for
    from kc.classifiers import (BlindSpotClassifier, Row, component_inputs, concat_inputs, raw_inputs,
                                residual_inputs, run_rows)
    from kc.consistency import load
    from kc.io import atomic_dir, write_npz
    from kc.paths import Paths
    from kc.pipeline.env import device, log
    from kc.pipeline.nets import upper_layers
    from kc.pipeline.pairs import classifier_data, fit_pairs
    from kc.pipeline.tasks import task_object

    entry = cfg.studies[KEY][name]
    blind, unreliable = pairs(cfg, entry)
    paths = Paths(root)
    weak_pop = cfg.nets[entry["weak"]]
    task = task_object(cfg, weak_pop.task, root)
    dev = device()
    with atomic_dir(paths.results(KEY, name)) as tmp:
        results = fit_pairs(cfg, [blind, unreliable], tmp, cfg.reading, root, stage=f"diagnose@{name}")
        g_blind, _ = load(tmp / f"{blind.name}.pt")
        g_unrel, _ = load(tmp / f"{unreliable.name}.pt")
        trained_on = contextlib.ExitStack()
        data = trained_on.enter_context(classifier_data(cfg, [blind, unreliable], cfg.reading, root))
        (b_train, b_test), (u_train, u_test) = data[blind.name], data[unreliable.name]
        y_train, y_test = task.task_labels(b_train.labels), task.task_labels(b_test.labels)
        keep = np.flatnonzero(y_test >= 0)
        upper_weak = upper_layers(root, blind.source, tap_for(blind.source.arch, blind.source_layer, cfg.reading))
        upper_strong = upper_layers(root, blind.target, tap_for(blind.target.arch, blind.target_layer, cfg.reading))
        weak_shape = b_train.source_raw.shape[1:]
        size = tuple(weak_shape[1:]) if len(weak_shape) == 3 else None

        def with_blind_spots(d, rows=None):
            src, tgt, raw = (d.source, d.target, d.source_raw) if rows is None else \
                (d.source.subset(rows), d.target.subset(rows), d.source_raw.subset(rows))
            return concat_inputs(raw_inputs(raw), residual_inputs(g_blind, src, tgt, size=size, device=dev))

        rows = {
            "weak": lambda: Row(copy.deepcopy(upper_weak), raw_inputs(b_train.source_raw),
                                raw_inputs(b_test.source_raw.subset(keep))),
            "weak_plus_blind_spots": lambda: Row(BlindSpotClassifier(copy.deepcopy(upper_weak), weak_shape[0],
                                                                     b_train.target.shape[1]),
                                                 with_blind_spots(b_train), with_blind_spots(b_test, keep)),
            "weak_without_unreliable": lambda: Row(copy.deepcopy(upper_weak),
                                                   component_inputs(g_unrel, u_train.source, u_train.target, None, dev),
                                                   component_inputs(g_unrel, u_test.source.subset(keep),
                                                                    u_test.target.subset(keep), None, dev)),
            "strong": lambda: Row(copy.deepcopy(upper_strong), raw_inputs(b_train.target_raw),
                                  raw_inputs(b_test.target_raw.subset(keep))),
        }
        with trained_on:
            correct = run_rows(rows, y_train, y_test[keep], cfg.classifier, cfg.classifier.seeds, device=dev)
        write_npz(tmp / "correct.npz", **correct)
        metrics = {"blind_spots": results[blind.name], "unreliable": results[unreliable.name],
                   "blind_spots_pair": blind.name, "unreliable_pair": unreliable.name, "seeds": list(cfg.classifier.seeds),
                   "rows": {row: {"accuracy": float(c.mean()), "per_seed": c.mean(axis=1).tolist()} for row, c in correct.items()}}
        write_metrics(root, KEY, name, metrics, tmp)
    log(f"diagnose {name}: " + ", ".join(f"{row} {c.mean():.4f}" for row, c in correct.items()))
    return metrics


def _gains(c: dict):
    weak, blind, unrel = (accuracy_draws(c[row]) for row in ("weak", "weak_plus_blind_spots", "weak_without_unreliable"))
    return lambda w, v: np.minimum(blind(w, v) - weak(w, v), unrel(w, v) - weak(w, v))


def report(ctx: Context) -> StudyReport | None:
    entries = ctx.cfg.studies.get(KEY) or {}
    if not entries:
        return StudyReport(KEY, TITLE, "Not run: `diagnosis` has no entries.\n", [not_run(5, "no diagnosis entry in params")])
    rows, parts, detail, figures, summary = [], [], [], [], {}
    for name, e in entries.items():
        m = ctx.metrics(KEY, name)
        c = ctx.results(KEY, name, "correct.npz")
        S, N = c["weak"].shape
        parts.append((N, S, _gains(c)))
        weak_m = ctx.net_metrics(e["weak"])[ctx.cfg.nets[e["weak"]].primary.name]
        strong_m = ctx.net_metrics(e["strong"])[ctx.cfg.nets[e["strong"]].primary.name]
        acc = {k: c[k].mean() for k in c}
        rows.append({"weak / strong": f"{e['weak']} {e['weak_layer']} / {e['strong']} {e['strong_layer']}",
                     "weak net": pct(weak_m["test_accuracy"]), "strong net": pct(strong_m["test_accuracy"]),
                     "x_A": pct(acc["weak"]), "x_A + blind spots": pct(acc["weak_plus_blind_spots"]),
                     "unreliable removed": pct(acc["weak_without_unreliable"]), "strong x_B": pct(acc["strong"]),
                     "blind spots Var(x^Δ)/Var(x*)": fmt(m["blind_spots"]["delta_ratio"]),
                     "unreliable Var(x^Δ)/Var(x*)": fmt(m["unreliable"]["delta_ratio"])})
        detail.append(f"{name}: x_A {pct(acc['weak'])} → +blind spots {pct(acc['weak_plus_blind_spots'])}, "
                      f"→ unreliable removed {pct(acc['weak_without_unreliable'])}")
        summary[f"diagnosis_{name}_blind_spots_gain"] = acc["weak_plus_blind_spots"] - acc["weak"]
        summary[f"diagnosis_{name}_unreliable_removed_gain"] = acc["weak_without_unreliable"] - acc["weak"]
        for key, title in (("blind_spots_pair", f"Blind spots of {e['weak']} ({e['strong']} reconstructed from it)"),
                           ("unreliable_pair", f"Unreliable features of {e['weak']} (reconstructed from {e['strong']})")):
            path = ctx.paths.results(KEY, name) / f"{m[key]}.figure.npz"
            figures.append(Figure(f"components_{KEY}_{name}_{key[:-5]}", "components", title,
                                  {"npz": str(path), "channel": ctx.cfg.report["channel"]}))
    iv = combined_interval(parts, np.mean, ctx.draws, ctx.cfg.seed, {"images": parts[0][0], "seeds": parts[0][1],
                                                                   "entries": len(parts)})
    claim = Claim(5, "mean over entries of min(acc(x_A + blind spots) - acc(x_A), acc(unreliable removed) - acc(x_A))",
                  "holds if the 95% interval is above 0 (both help); does not hold if below", iv, detail="; ".join(detail))
    ref = paper.DIAGNOSIS
    text = (f"Top-1 test accuracy (%), mean over {len(ctx.cfg.classifier.seeds)} classifier seeds, of the weak net's "
            "upper layers fine-tuned on: its own feature x_A; x_A plus the blind spots (through a zero-initialised "
            "1x1 convolution); the weak feature reconstructed from the strong net (unreliable components removed). "
            f"The paper (CUB): AlexNet {ref['weak_net']} % vs ResNet-34 {ref['strong_net']} %; x_A {ref['weak']} %, "
            f"unreliable removed {ref['weak_without_unreliable']} %, blind spots added +{ref['blind_spots_gain']} %. "
            f"Claim statistic: {ci(iv, 2, 100)} points.\n\n" + table(rows))
    return StudyReport(KEY, TITLE, text, [claim], figures, summary)
