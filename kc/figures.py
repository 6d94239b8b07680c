"""The report's figures, drawn from the data the studies hand over (kc.studies.common.Figure).

    draw(Figure("compression", "curve", "Compression", {"points": [...], "x": ..., "y": [...]}), "report/")

Kinds: ``components`` (Fig. 1/3/5 style: per test image, the input and one channel of x*, x^(0..K),
x^Δ over it), ``curve`` (lines over points), ``errorbars`` (points with 95% intervals, one panel per
quantity), ``heatmap`` (a grid of layer pairs, one panel per quantity). PNGs are written atomically
and carry no timestamp.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kc.io import atomic_path, read_npz


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)


def components(npz_path: str | Path, out: Path, title: str, channel: int = -1) -> int:
    """Per test image: the input and one channel of x*, x^(0..K) and x^Δ upsampled over it; the channel
    drawn (the one of largest variance of x* when -1), or -1 when there is nothing to draw."""
    import torch
    import torch.nn.functional as F

    plt = _plt()
    d = read_npz(npz_path)
    images, target = d["images"], d["target"].astype(np.float32)
    comps, residual = d["components"].astype(np.float32), d["residual"].astype(np.float32)
    n = len(target)
    if n == 0 or target.ndim != 4:
        return -1
    if channel >= target.shape[1]:
        raise ValueError(f"report.channel: {channel} is beyond the {target.shape[1]} channels of the features drawn "
                         f"in {Path(npz_path).name}; use -1 (the channel of largest variance) or 0..{target.shape[1] - 1}")
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
    save(fig, out)
    return channel


def curve(data: dict, out: Path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 3.3))
    groups: dict = {}
    for p in data["points"]:
        groups.setdefault(p.get("entry", ""), []).append(p)
    for entry, points in groups.items():
        points = sorted(points, key=lambda p: p[data["x"]])
        for key in data["y"]:
            label = f"{entry} {key}".strip() if len(groups) > 1 or len(data["y"]) > 1 else None
            ax.plot([p[data["x"]] for p in points], [p[key] for p in points], "o-", label=label)
        if data.get("annotate"):
            for p in points:
                ax.annotate(f"{100 * p[data['annotate']]:.0f}%", (p[data["x"]], p[data["y"][0]]), fontsize=7,
                            textcoords="offset points", xytext=(4, 4))
    if len(data["y"]) > 1 or len(groups) > 1:
        ax.legend(fontsize=7)
    if data.get("logx"):
        ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel(data.get("xlabel", data["x"]))
    ax.set_ylabel(data.get("ylabel", ""))
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    save(fig, out)


def errorbars(data: dict, out: Path, title: str) -> None:
    plt = _plt()
    panels = data["panels"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.3), squeeze=False)
    points = sorted(data["points"], key=lambda p: p[data["x"]])
    x = np.array([p[data["x"]] for p in points])
    for ax, (key, low, high) in zip(axes[0], panels):
        y = np.array([p[key] for p in points])
        err = np.array([[p[key] - p[low] for p in points], [p[high] - p[key] for p in points]])
        ax.errorbar(x, y, yerr=np.maximum(err, 0), fmt="o-", capsize=3)
        for p in points:
            ax.annotate(str(p.get(data.get("label", ""), "")), (p[data["x"]], p[key]), fontsize=7,
                        textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel(data.get("xlabel", data["x"]))
        ax.set_ylabel(key.replace("_", " "))
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    save(fig, out)


def heatmap(data: dict, out: Path, title: str) -> None:
    """``data``: {"rows": [...], "cols": [...], "panels": [(label, matrix rows x cols)], "xlabel", "ylabel"}."""
    plt = _plt()
    panels = data["panels"]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 0.6, 3.0), squeeze=False)
    for ax, (label, matrix) in zip(axes[0], panels):
        m = np.asarray(matrix, dtype=float)
        im = ax.imshow(m, cmap="magma", vmin=0, vmax=1, origin="lower")
        for (i, j), v in np.ndenumerate(m):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
        ax.set_xticks(range(len(data["cols"])), data["cols"], rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(data["rows"])), data["rows"], fontsize=7)
        ax.set_title(label, fontsize=8)
        ax.set_xlabel(data.get("xlabel", ""), fontsize=8)
    axes[0, 0].set_ylabel(data.get("ylabel", ""), fontsize=8)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    fig.suptitle(title, fontsize=9)
    save(fig, out)


def draw(figure, out_dir: Path) -> Path | None:
    """Draw a kc.studies.common.Figure into ``out_dir``/<name>.png; None when there is nothing to draw."""
    path = Path(out_dir) / f"{figure.name}.png"
    if figure.kind == "components":
        if not Path(figure.data["npz"]).exists():
            return None
        return path if components(figure.data["npz"], path, figure.title, figure.data.get("channel", -1)) >= 0 else None
    {"curve": curve, "errorbars": errorbars, "heatmap": heatmap}[figure.kind](figure.data, path, figure.title)
    return path
