"""The report: the paper's tables and figures from one run, each claim checked as measured.

    write_report(cfg)   # report/README.md + report/*.png, metrics/summary.json, metrics/studies.json, plots/*.csv

Every table sits beside the paper's own figures (kc.paper) for reference, and every claim of
Section 4 gets a one-line verdict with the numbers that decide it. A claim that does not hold on a
run is reported as not holding. Rules used for the verdicts (also printed in the report):

1. Var(x^(0)) > Var(x^(1)) > ... > Var(x^(K)) for every stability column (Case 1 pairs, averaged).
2. For each architecture with several layers, instability grows with depth (entries listed shallow
   first), in Case 1 and in Case 2.
3. For each Table 3 column, the best component row >= the better baseline minus one standard error
   of the accuracy difference on the test set (a "match").
4. For each Table 4 column, g(x_A) > x_A and g(x_A) > x_B.
5. weak + blind spots > weak, and weak without unreliable features > weak.
6. Spearman correlation of the pruned fraction with Var(x^Δ) and with the accuracy drop both >= 0.8
   (a clear monotone trend; with 4 levels that allows one adjacent swap).
7. Spearman correlation of the generation with Var(x^Δ) <= -0.8.
8. Var(x^Δ)/Var(x*) of fine -> binary < that of binary -> fine.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from kc import paper
from kc.config import Config
from kc.io import atomic_path, read_json, write_csv, write_json, write_text


TREND = 0.8  # |Spearman| needed to call a trend monotone (claims 6 and 7)


# ------------------------------------------------------------------------------------------------
class Run:
    """The metrics of one run, read from metrics/."""

    def __init__(self, cfg: Config, root: str | Path = "."):
        self.cfg, self.root = cfg, Path(root)

    def _read(self, *parts) -> dict:
        path = self.root.joinpath("metrics", *parts)
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run the stage that writes it (dvc repro)")
        return read_json(path)

    def net(self, name: str) -> dict:
        return self._read("nets", f"{name}.json")

    def pair(self, name: str) -> dict:
        return {**self._read("fits", f"{name}.json"), **self._read("pairs", f"{name}.json")}

    def refine(self, kind: str, name: str) -> dict:
        return self._read("refine", f"{kind}_{name}.json")


def _num(x) -> float:
    return float("nan") if x is None else float(x)


def _mean(values) -> float:
    values = [_num(v) for v in values]
    return float(np.mean(values)) if values else float("nan")


def spearman(x, y) -> float:
    """Spearman's rank correlation (average ranks for ties); nan for fewer than 2 points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2:
        return float("nan")
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def _pct(x) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.2f}"


def _table(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, disable_numparse=True)


def _verdict(holds: bool | None, text: str) -> dict:
    return {"holds": holds, "text": text}


def _mark(v: dict) -> str:
    return {True: "**holds**", False: "**does not hold**", None: "**not run**"}[v["holds"]]


# ------------------------------------------------------------------------------------------------
# Studies
# ------------------------------------------------------------------------------------------------
def stability(run: Run) -> tuple[dict, str, dict]:
    """Tables 1 and 2, claims 1 and 2."""
    cfg = run.cfg
    entries = cfg.studies["stability"]
    data, rows1, rows2 = {}, [], []
    K = None
    for name, e in entries.items():
        c1 = [run.pair(p) for p in e["case1"]]
        c2 = [run.pair(p) for p in e["case2"]]
        k = min(cfg.pairs[p].K for p in e["case1"])
        K = k if K is None else min(K, k)
        d = {"arch": e["arch"], "layer": e["layer"], "case1": _mean(m["delta_ratio"] for m in c1),
             "case2": _mean(m["delta_ratio"] for m in c2),
             **{f"var_x{j}": _mean(m[f"var_x{j}"] for m in c1) for j in range(k + 1)},
             "var_delta": _mean(m["var_delta"] for m in c1), "var_target": _mean(m["var_target"] for m in c1),
             "cka": _mean(m["cka"] for m in c1 + c2), "linear_predictivity": _mean(m["linear_predictivity"] for m in c1 + c2)}
        data[name] = d
        ref1 = paper.TABLE1.get(e["paper"]) if e["paper"] else None
        rows1.append({"net @ layer": f"{e['layer']} @ {e['arch']}", "Case 1 (seeds)": _fmt(d["case1"]),
                      "Case 2 (halves)": _fmt(d["case2"]), "1 − ratio (Case 1)": _fmt(1 - d["case1"]),
                      "linear R² (0-order)": _fmt(d["linear_predictivity"]), "CKA": _fmt(d["cka"]),
                      "paper column": e["paper"] or "–",
                      "paper Case 1": _fmt(ref1[0]) if ref1 else "–", "paper Case 2": _fmt(ref1[1]) if ref1 else "–"})
        ref2 = paper.TABLE2.get(e["paper"]) if e["paper"] else None
        row2 = {"net @ layer": f"{e['layer']} @ {e['arch']}"}
        row2.update({f"Var(x^({j}))": _fmt(d[f"var_x{j}"], 4) for j in range(k + 1)})
        row2.update({"Var(x^Δ)": _fmt(d["var_delta"], 4), "Var(x*)": _fmt(d["var_target"], 4),
                     "paper (x0, x1, x2, Δ)": ", ".join(f"{v:g}" for v in ref2) if ref2 else "–"})
        rows2.append(row2)
    if not entries:
        return {}, "", {1: _verdict(None, "no stability study in params"), 2: _verdict(None, "no stability study")}
    # Claim 1
    ok, detail = 0, []
    for name, d in data.items():
        vs = [d[f"var_x{j}"] for j in range(K + 1)]
        good = all(vs[j] > vs[j + 1] for j in range(len(vs) - 1))
        ok += good
        detail.append(f"{name}: " + " > ".join(_fmt(v, 4) for v in vs) + ("" if good else " ✗"))
    c1 = _verdict(ok == len(data) if K and K > 0 else None,
                  f"{ok}/{len(data)} columns ordered ({'; '.join(detail)})")
    # Claim 2
    by_arch: dict[str, list] = {}
    for name, d in data.items():
        by_arch.setdefault(d["arch"], []).append((name, d))
    checks, detail = [], []
    for arch, items in by_arch.items():
        for (n1, a), (n2, b) in zip(items, items[1:]):
            for case in ("case1", "case2"):
                good = b[case] > a[case]
                checks.append(good)
                detail.append(f"{arch} {case}: {a['layer']} {_fmt(a[case])} → {b['layer']} {_fmt(b[case])}"
                              + ("" if good else " ✗"))
    c2 = _verdict(all(checks) if checks else None,
                  f"{sum(checks)}/{len(checks)} comparisons show the deeper layer less stable ({'; '.join(detail)})")
    text = ("## Stability of learning (Section 4.2, Tables 1 and 2)\n\n"
            "Instability = Var(x^Δ)/Var(x*) on the test images, averaged over both directions of each pair "
            "(Case 1: nets from two seeds; Case 2: nets on two disjoint halves of the training data). "
            "`1 − ratio` is the share of the target reconstructed by g (K orders); "
            "`linear R²` is the held-out R² of the best linear map with g's receptive field (0-order "
            "consistency), and CKA the minibatch linear CKA of the raw features: what the higher orders "
            "add is the gap between the two.\n\n"
            + _table(pd.DataFrame(rows1)) + "\n\n"
            "Table 2 layout: variances of the components for the Case 1 pairs (normalised feature space, so "
            "Var(x*) ≈ 1; the paper's magnitudes are on raw feature scales and are not comparable).\n\n"
            + _table(pd.DataFrame(rows2)) + "\n")
    return data, text, {1: c1, 2: c2}


def _se(p: float, q: float, n: int) -> float:
    """Standard error of a difference of two accuracies on the same n test images (independent approx.)."""
    return math.sqrt(max(p * (1 - p) + q * (1 - q), 1e-12) / max(n, 1))


def refinement(run: Run) -> tuple[dict, str, dict]:
    """Tables 3 and 4, claims 3 and 4."""
    cfg = run.cfg
    data: dict = {"components": {}, "subset": {}}
    rows3, checks3, detail3 = [], [], []
    for name, e in cfg.refine["components"].items():
        m = run.refine("components", name)
        n = run.pair(e["pair"])["images"]
        comp_rows = [k for k in m if k.startswith("x0") and k.endswith("_accuracy")]
        a, b = m["a_accuracy"], m["b_accuracy"]
        best_row = max(comp_rows, key=lambda k: m[k])
        best = m[best_row]
        good = best >= max(a, b) - _se(best, max(a, b), n)
        checks3.append(good)
        detail3.append(f"{name}: best {best_row[:-9]} {_pct(best)} vs baselines {_pct(a)}/{_pct(b)}" + ("" if good else " ✗"))
        data["components"][name] = m
        ref = paper.TABLE3.get(e["paper"]) if e["paper"] else None
        row = {"column": name, "Network A (x_A)": _pct(a), "Network B (x_B)": _pct(b)}
        for k in comp_rows:
            row[k[:-9].replace("+", " + ")] = _pct(m[k])
        row["paper (A, B, x0, x0+x1, x0+x1+x2)"] = (f"{e['paper']}: " + ", ".join("–" if v is None else f"{v:.2f}" for v in ref)) if ref else "–"
        rows3.append(row)
    rows4, checks4, detail4 = [], [], []
    for name, e in cfg.refine["subset"].items():
        m = run.refine("subset", name)
        good = m["g_accuracy"] > m["a_accuracy"] and m["g_accuracy"] > m["b_accuracy"]
        checks4.append(good)
        detail4.append(f"{name}: g(x_A) {_pct(m['g_accuracy'])} vs {_pct(m['a_accuracy'])}/{_pct(m['b_accuracy'])}" + ("" if good else " ✗"))
        data["subset"][name] = m
        ref = paper.TABLE4.get(e["paper"]) if e["paper"] else None
        rows4.append({"column": name, "classes": str(len(cfg.pairs[e["pair"]].classes)),
                      "x_A": _pct(m["a_accuracy"]), "x_B": _pct(m["b_accuracy"]), "g(x_A) = x0+…+xK": _pct(m["g_accuracy"]),
                      "paper (x_A, x_B, g)": (f"{e['paper']}: " + ", ".join(f"{v:.2f}" for v in ref)) if ref else "–"})
    claims = {3: _verdict(all(checks3) if checks3 else None,
                          f"{sum(checks3)}/{len(checks3)} columns: {'; '.join(detail3)}" if checks3 else "no Table 3 experiment"),
              4: _verdict(all(checks4) if checks4 else None,
                          f"{sum(checks4)}/{len(checks4)} columns: {'; '.join(detail4)}" if checks4 else "no Table 4 experiment")}
    recipe = cfg.refine["recipe"]
    text = ("## Feature refinement (Section 4.3, Tables 3 and 4)\n\n"
            f"Top-1 test accuracy (%). g, A and B are frozen; each row fine-tunes a copy of a net's upper layers "
            f"with the same recipe ({recipe['epochs']} epochs, lr {recipe['lr']}, batch {recipe['batch_size']}). "
            "Components are mapped back to B's feature scale.\n\n")
    text += ("### Table 3 (Exp. 1): B's upper layers on consistent components\n\n" + _table(pd.DataFrame(rows3)) + "\n\n"
             if rows3 else "")
    text += ("### Table 4 (Exp. 2): a class-subset classifier from g fitted on that subset only\n\n"
             + _table(pd.DataFrame(rows4)) + "\n" if rows4 else "")
    return data, text, claims


def diagnosis(run: Run) -> tuple[dict, str, dict]:
    cfg = run.cfg
    rows, checks, detail, data = [], [], [], {}
    for name, e in cfg.refine["diagnosis"].items():
        m = run.refine("diagnosis", name)
        data[name] = m
        blind = m["weak_plus_blind_spots_accuracy"] > m["weak_accuracy"]
        unrel = m["weak_without_unreliable_accuracy"] > m["weak_accuracy"]
        checks += [blind, unrel]
        detail.append(f"{name}: x_A {_pct(m['weak_accuracy'])} → +blind spots {_pct(m['weak_plus_blind_spots_accuracy'])}"
                      f"{'' if blind else ' ✗'}, → without unreliable {_pct(m['weak_without_unreliable_accuracy'])}"
                      f"{'' if unrel else ' ✗'}")
        rb, ru = run.pair(e["blind_spots"]), run.pair(e["unreliable"])
        rows.append({"weak / strong": f"{e['weak']} / {e['strong']}",
                     "weak net": _pct(run.net(e["weak"])["test_accuracy"]),
                     "strong net": _pct(run.net(e["strong"])["test_accuracy"]),
                     "x_A (fine-tuned)": _pct(m["weak_accuracy"]),
                     "x_A + blind spots": _pct(m["weak_plus_blind_spots_accuracy"]),
                     "g'(x_strong) (unreliable removed)": _pct(m["weak_without_unreliable_accuracy"]),
                     "strong x_B (fine-tuned)": _pct(m["strong_accuracy"]),
                     "blind spots Var(x^Δ)/Var(x*)": _fmt(rb["delta_ratio"]),
                     "unreliable Var(x^Δ)/Var(x*)": _fmt(ru["delta_ratio"])})
    claim = _verdict(all(checks) if checks else None, "; ".join(detail) if detail else "no diagnosis experiment")
    ref = paper.DIAGNOSIS
    text = ("## Diagnosis of a weak net by a strong one (Section 4.1)\n\n"
            "Blind spots: x^Δ of the strong net's feature reconstructed from the weak one. Unreliable "
            "features: x^Δ of the weak net's feature reconstructed from the strong one. Classifiers have the "
            "weak net's upper-layer architecture (top-1 %). (a) adds the blind spots to the weak feature through "
            "a zero-initialised 1x1 convolution; (b) replaces the weak feature by its reconstruction from the "
            f"strong one. The paper: AlexNet {ref['weak_net']} % vs ResNet-34 {ref['strong_net']} %; x_A {ref['weak']} %, "
            f"unreliable removed {ref['weak_without_unreliable']} %, blind spots added +{ref['blind_spots_gain']} %.\n\n"
            + (_table(pd.DataFrame(rows)) + "\n" if rows else "not run\n"))
    return data, text, {5: claim}


def compression(run: Run) -> tuple[list, str, dict]:
    cfg = run.cfg
    pairs = cfg.studies["compression"]
    rows, curve = [], []
    for p in pairs:
        m, net = run.pair(p), run.net(cfg.pairs[p].source)
        point = {"net": cfg.pairs[p].source, "threshold": net["threshold"], "pruned_fraction": net["pruned_fraction"],
                 "accuracy": net["test_accuracy"], "parent_accuracy": net["parent_accuracy"],
                 "accuracy_drop": net["accuracy_drop"], "var_delta": m["var_delta"], "delta_ratio": m["delta_ratio"]}
        curve.append(point)
        rows.append({"pruned net": point["net"], "threshold (× std)": _fmt(point["threshold"], 2),
                     "weights removed": f"{100 * point['pruned_fraction']:.1f} %",
                     "accuracy": _pct(point["accuracy"]), "accuracy drop": _pct(point["accuracy_drop"]),
                     "Var(x^Δ)": _fmt(point["var_delta"], 4), "Var(x^Δ)/Var(x*)": _fmt(point["delta_ratio"])})
    if not curve:
        return [], "", {6: _verdict(None, "no compression study")}
    rho_var = spearman([c["pruned_fraction"] for c in curve], [c["var_delta"] for c in curve])
    rho_acc = spearman([c["pruned_fraction"] for c in curve], [c["accuracy_drop"] for c in curve])
    claim = _verdict(rho_var >= TREND and rho_acc >= TREND if math.isfinite(rho_var) and math.isfinite(rho_acc) else False,
                     f"Spearman(pruned fraction, Var(x^Δ)) = {_fmt(rho_var, 2)}, "
                     f"Spearman(pruned fraction, accuracy drop) = {_fmt(rho_acc, 2)} (a trend needs >= {TREND})")
    text = ("## Information discarded by compression (Section 4.4, Fig. 4 left)\n\n"
            "Each magnitude-pruned net reconstructs the original; x^Δ is the knowledge it lost.\n\n"
            + _table(pd.DataFrame(rows)) + "\n\n![compression](compression.png)\n")
    return curve, text, {6: claim}


def born_again(run: Run) -> tuple[list, str, dict]:
    cfg = run.cfg
    pairs = cfg.studies["born_again"]
    curve = []
    for p in pairs:
        m = run.pair(p)
        src = run.net(cfg.pairs[p].source)
        curve.append({"net": cfg.pairs[p].source, "generation": src.get("generation", 0),
                      "accuracy": src["test_accuracy"], "var_delta": m["var_delta"], "delta_ratio": m["delta_ratio"]})
    if not curve:
        return [], "", {7: _verdict(None, "no born-again study")}
    newest = cfg.pairs[pairs[0]].target
    rho = spearman([c["generation"] for c in curve], [c["var_delta"] for c in curve])
    claim = _verdict(rho <= -TREND if math.isfinite(rho) else False,
                     f"Spearman(generation, Var(x^Δ)) = {_fmt(rho, 2)}, a trend needs <= -{TREND} ("
                     + ", ".join(f"gen {c['generation']}: {_fmt(c['var_delta'], 4)}" for c in curve) + ")")
    rows = [{"generation": str(c["generation"]), "net": c["net"], "accuracy": _pct(c["accuracy"]),
             "Var(x^Δ) (blind spots w.r.t. newest)": _fmt(c["var_delta"], 4), "Var(x^Δ)/Var(x*)": _fmt(c["delta_ratio"])}
            for c in curve]
    newest_acc = run.net(newest)["test_accuracy"]
    text = ("## Born-again generations (Section 4.5, Fig. 4 right)\n\n"
            f"The newest generation ({newest}, accuracy {_pct(newest_acc)} %) reconstructed from each earlier "
            "generation: x^Δ are the earlier net's blind spots.\n\n"
            + _table(pd.DataFrame(rows)) + "\n\n![born-again](born_again.png)\n")
    return curve, text, {7: claim}


def cross_task(run: Run) -> tuple[dict, str, dict]:
    ct = run.cfg.studies["cross_task"]
    if not ct:
        return {}, "", {8: _verdict(None, "no cross-task study")}
    f2b, b2f = run.pair(ct["fine_to_binary"]), run.pair(ct["binary_to_fine"])
    claim = _verdict(f2b["delta_ratio"] < b2f["delta_ratio"],
                     f"Var(x^Δ)/Var(x*): fine → binary {_fmt(f2b['delta_ratio'])}, binary → fine {_fmt(b2f['delta_ratio'])}")
    rows = []
    for label, key, m in (("fine-grained → binary", "fine_to_binary", f2b), ("binary → fine-grained", "binary_to_fine", b2f)):
        p = run.cfg.pairs[ct[key]]
        rows.append({"direction": label, "pair": p.name, "Var(x^Δ)/Var(x*)": _fmt(m["delta_ratio"]),
                     "linear R²": _fmt(m["linear_predictivity"]), "CKA": _fmt(m["cka"])})
    text = ("## Consistency between tasks (Section 4.6)\n\n"
            "A net for the fine-grained task and a net for a binary task over the same images.\n\n"
            + _table(pd.DataFrame(rows)) + "\n")
    return {"fine_to_binary": f2b["delta_ratio"], "binary_to_fine": b2f["delta_ratio"]}, text, {8: claim}


def sweep(run: Run) -> tuple[list, str]:
    pairs = run.cfg.studies["sweep"]
    points = []
    for p in pairs:
        spec, m = run.cfg.pairs[p], run.pair(p)
        points.append({"pair": p, "lam": spec.lam, "K": spec.K, "delta_ratio": m["delta_ratio"],
                       **{k: m[k] for k in m if k.startswith("var_x")},
                       **{k: m[k] for k in m if k.startswith("p") and k[1:].isdigit()}})
    if not points:
        return [], ""
    rows = [{k: (_fmt(v, 4) if isinstance(v, float) else str(v)) for k, v in pt.items()} for pt in points]
    return points, ("## Sweep\n\n" + _table(pd.DataFrame(rows)) + "\n\n![sweep](sweep.png)\n")


def all_pairs(run: Run) -> str:
    rows = []
    for name, p in run.cfg.pairs.items():
        m = run.pair(name)
        rows.append({"pair": name, "source → target": f"{p.source}.{p.source_layer} → {p.target}.{p.target_layer}",
                     "λ": f"{p.lam:g}", "K": str(p.K),
                     "gates": ", ".join(_fmt(m.get(f"p{k}"), 3) for k in range(1, p.K + 1)) or "–",
                     **{f"Var(x^({k}))": _fmt(m.get(f"var_x{k}"), 4) for k in range(max(q.K for q in run.cfg.pairs.values()) + 1)},
                     "Var(x^Δ)/Var(x*)": _fmt(m["delta_ratio"]), "linear R²": _fmt(m["linear_predictivity"]),
                     "CKA": _fmt(m["cka"]), "fit MSE": _fmt(m["mse"], 4)})
    return ("## Every pair\n\nKnowledge consistency beside the 0-order measures (test images; normalised features).\n\n"
            + _table(pd.DataFrame(rows)) + "\n")


def nets_table(run: Run) -> str:
    rows = []
    for name, net in run.cfg.nets.items():
        m = run.net(name)
        rows.append({"net": name, "arch": net.arch, "made by": net.kind + (f" from {net.parent}" if net.parent else ""),
                     "task": net.task, "data": net.split, "seed": str(net.seed), "test accuracy": _pct(m["test_accuracy"]),
                     "weights removed": f"{100 * m['pruned_fraction']:.1f} %" if "pruned_fraction" in m else "–"})
    return "## Networks\n\n" + _table(pd.DataFrame(rows)) + "\n"


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _savefig(fig, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)


def component_grid(npz_path: Path, out: Path, title: str, channel: int = -1) -> int:
    """Fig. 1/3/5 style: per test image, the input and one channel of x*, x^(0..K), x^Δ over it."""
    import torch
    import torch.nn.functional as F

    plt = _plt()
    d = np.load(npz_path)
    images, target, comps, residual = d["images"], d["target"].astype(np.float32), d["components"].astype(np.float32), d["residual"].astype(np.float32)
    n = len(target)
    if n == 0:
        return -1
    if channel < 0:
        channel = int(target.reshape(n, target.shape[1], -1).var(axis=(0, 2)).argmax())
    maps = [("x* (target)", target)] + [(f"x^({k})", comps[k]) for k in range(len(comps))] + [("x^Δ", residual)]
    size = images.shape[-1]
    fig, axes = plt.subplots(n, len(maps) + 1, figsize=(1.7 * (len(maps) + 1), 1.8 * n), squeeze=False)
    for i in range(n):
        img = images[i].transpose(1, 2, 0)
        grey = img[..., 0] if img.shape[-1] == 1 else img.mean(-1)
        axes[i, 0].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
        axes[i, 0].set_title("input" if i == 0 else "", fontsize=8)
        vmax = max(float(np.abs(m[i, channel]).max()) for _, m in maps) or 1.0
        for j, (label, m) in enumerate(maps, start=1):
            up = F.interpolate(torch.from_numpy(m[i:i + 1, channel:channel + 1]), size=(size, size),
                               mode="bilinear", align_corners=False)[0, 0].numpy()
            axes[i, j].imshow(grey, cmap="gray", alpha=0.5)
            axes[i, j].imshow(up, cmap="RdBu_r", vmin=-vmax, vmax=vmax, alpha=0.75)
            axes[i, j].set_title(label if i == 0 else "", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title} (channel {channel})", fontsize=9)
    _savefig(fig, out)
    return channel


def _curve(points, x, y, xlabel, ylabel, out: Path, title: str, annotate=None, logx=False) -> None:
    """One line per key in ``y`` (a key or a list of keys) against ``x``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    points = sorted(points, key=lambda p: p[x])
    keys = [y] if isinstance(y, str) else list(y)
    for key in keys:
        ax.plot([p[x] for p in points], [p[key] for p in points], "o-", label=key)
    if len(keys) > 1:
        ax.legend(fontsize=7)
    if annotate:
        for p in points:
            ax.annotate(annotate(p), (p[x], p[keys[0]]), fontsize=7, textcoords="offset points", xytext=(4, 4))
    if logx:
        ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    _savefig(fig, out)


def _figure_pairs(cfg: Config) -> list[tuple[str, str]]:
    """Which pairs get a component grid: diagnosis, cross-task, compression extremes, a stability pair."""
    out: list[tuple[str, str]] = []
    for name, e in cfg.refine["diagnosis"].items():
        out += [(e["blind_spots"], f"Blind spots of {e['weak']} (strong {e['strong']} reconstructed)"),
                (e["unreliable"], f"Unreliable features of {e['weak']} (reconstructed from {e['strong']})")]
    if cfg.studies["cross_task"]:
        out += [(cfg.studies["cross_task"]["fine_to_binary"], "Fine-grained net → binary net"),
                (cfg.studies["cross_task"]["binary_to_fine"], "Binary net → fine-grained net")]
    if cfg.studies["compression"]:
        out.append((cfg.studies["compression"][-1], "Most-pruned net → original (discarded knowledge)"))
    for name, e in cfg.studies["stability"].items():
        out.append((e["case1"][0], f"Two seeds, {e['layer']} @ {e['arch']}"))
    seen, unique = set(), []
    for p, t in out:
        if p not in seen:
            seen.add(p)
            unique.append((p, t))
    return unique[:cfg.report["max_figure_pairs"]]


# ------------------------------------------------------------------------------------------------
def write_report(cfg: Config, root: str | Path = ".") -> dict:
    """Stage report: write report/README.md and figures, summary metrics and the study curves."""
    root = Path(root)
    run = Run(cfg, root)
    out_dir = root / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    claims: dict[int, dict] = {}
    stab, stab_text, c = stability(run)
    claims.update(c)
    ref, ref_text, c = refinement(run)
    claims.update(c)
    diag, diag_text, c = diagnosis(run)
    claims.update(c)
    comp, comp_text, c = compression(run)
    claims.update(c)
    born, born_text, c = born_again(run)
    claims.update(c)
    xt, xt_text, c = cross_task(run)
    claims.update(c)
    sw, sw_text = sweep(run)

    write_csv(root / "plots" / "compression.csv",
              comp or [{"net": "", "pruned_fraction": "", "delta_ratio": "", "var_delta": "", "accuracy_drop": ""}])
    write_csv(root / "plots" / "born_again.csv", born or [{"generation": "", "var_delta": ""}])
    write_csv(root / "plots" / "sweep.csv", sw or [{"pair": "", "lam": "", "K": "", "delta_ratio": ""}])
    if comp:
        _curve(comp, "var_delta", "accuracy_drop", "Var(x^Δ) (knowledge discarded)", "accuracy drop",
               out_dir / "compression.png", "Compression (Fig. 4 left)",
               annotate=lambda p: f"{100 * p['pruned_fraction']:.0f}%")
    if born:
        _curve(born, "generation", "var_delta", "generation of the reconstructing net",
               "Var(x^Δ) (blind spots)", out_dir / "born_again.png", "Born-again generations (Fig. 4 right)")
    if sw:
        varies = "lam" if len({p["lam"] for p in sw}) > 1 else "K"
        orders = sorted(k for k in sw[0] if k.startswith("var_x"))
        _curve(sw, varies, ["delta_ratio", *orders], "λ" if varies == "lam" else "K", "variance (normalised space)",
               out_dir / "sweep.png", f"Sweep over {varies}", logx=varies == "lam")
    figures = []
    for pair, title in _figure_pairs(cfg):
        npz = root / "data" / "decomp" / f"{pair}.npz"
        png = out_dir / f"components_{pair}.png"
        channel = component_grid(npz, png, f"{title}: {pair}", cfg.report["channel"])
        if channel >= 0:
            figures.append(f"### {title}\n\n`{pair}`, channel {channel}: the input, the target feature x*, "
                           f"its consistent components x^(k) and the residual x^Δ, upsampled over the image "
                           f"(red positive, blue negative, one colour scale per row).\n\n![{pair}](components_{pair}.png)\n")

    holding = [k for k, v in claims.items() if v["holds"]]
    tested = [k for k, v in claims.items() if v["holds"] is not None]
    verdicts = "\n".join(f"{k}. {paper.CLAIMS[k]} — {_mark(claims[k])}: {claims[k]['text']}" for k in sorted(claims))
    header = (f"# Knowledge consistency report\n\nGenerated by `dvc repro` (stage `report`) from `params.yaml`: "
              f"λ = {cfg.lam:g}, K = {cfg.K} (per-pair overrides in the pair table), g fitted for {cfg.fit.epochs} epochs "
              f"(norm {cfg.fit.norm}, gate {cfg.fit.gate}, kernel {cfg.fit.kernel_size}). "
              f"Datasets: {', '.join(f'{d.name} ({d.source})' for d in cfg.datasets.values())}. "
              "All variances are measured on the test images in the normalised feature space (footnote 2).\n\n"
              f"## The paper's claims on this run: {len(holding)} of {len(tested)} hold\n\n{verdicts}\n")
    body = "\n".join(t for t in (header, nets_table(run), stab_text, ref_text, diag_text, comp_text, born_text,
                                 xt_text, sw_text, "## Figures\n\n" + "\n".join(figures) if figures else "",
                                 all_pairs(run)) if t)
    write_text(out_dir / "README.md", body)

    summary = {"claims_holding": len(holding), "claims_tested": len(tested),
               **{f"claim{k}": int(v["holds"]) for k, v in claims.items() if v["holds"] is not None}}
    for name, d in stab.items():
        summary[f"instability_case1_{name}"] = d["case1"]
        summary[f"instability_case2_{name}"] = d["case2"]
    for name, m in ref["components"].items():
        best = max(v for k, v in m.items() if k.startswith("x0"))
        summary[f"table3_{name}_gain"] = best - max(m["a_accuracy"], m["b_accuracy"])
    for name, m in ref["subset"].items():
        summary[f"table4_{name}_gain"] = m["g_accuracy"] - max(m["a_accuracy"], m["b_accuracy"])
    for name, m in diag.items():
        summary[f"diagnosis_{name}_blind_spots_gain"] = m["weak_plus_blind_spots_accuracy"] - m["weak_accuracy"]
        summary[f"diagnosis_{name}_unreliable_removed_gain"] = m["weak_without_unreliable_accuracy"] - m["weak_accuracy"]
    if xt:
        summary["cross_task_fine_to_binary"] = xt["fine_to_binary"]
        summary["cross_task_binary_to_fine"] = xt["binary_to_fine"]
    write_json(root / "metrics" / "summary.json", summary)
    numeric = lambda d: {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    write_json(root / "metrics" / "studies.json",  # per-study numbers (Table 1-2 layout), for dvc metrics diff
               {"stability": {name: numeric(d) for name, d in stab.items()},
                "compression": {c["net"]: numeric(c) for c in comp},
                "born_again": {f"gen{c['generation']}": numeric(c) for c in born},
                "cross_task": xt, "sweep": {p["pair"]: numeric(p) for p in sw}})
    write_json(out_dir / "claims.json", claims)
    print(f"[kc] report: {len(holding)} of {len(tested)} claims hold; report/README.md", flush=True)
    return summary
