"""kc.compare on a 4x4 layer map of two small kc nets vs the same work one pair at a time.

Command: .venv/bin/python bench/compare_speed.py [--images 1000] [--epochs 10] [--device cpu] [--skip-manual]

vgg_s (conv1_2, conv2_2, conv3_3, conv4_3) against resnet_s (layer1..layer4), random init (seed 0), on
1,000 Fashion-MNIST test images when /usr/share/datasets/fashion-mnist exists (else random images),
both directions: 32 fits of g_θ with kc.compare's defaults. The baseline does the same work through
the public functions one (pair, direction) at a time: split both nets, extract the two layers by hand,
normalise (footnote 2, fit part), resize, fit, variances, CKA, linear predictivity — re-extracting
features for every pair and fitting on whole maps. Prints both wall times; not a test.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kc  # noqa: E402
from kc.consistency import ConsistencyNet, fit, variances  # noqa: E402
from kc.models import build, split  # noqa: E402
from kc.similarity import linear_cka, linear_predictivity  # noqa: E402

LAYERS_A = ["conv1_2", "conv2_2", "conv3_3", "conv4_3"]
LAYERS_B = ["layer1", "layer2", "layer3", "layer4"]


def images(n: int):
    root = Path("/usr/share/datasets/fashion-mnist")
    if root.is_dir():
        from kc.data import FashionMNIST
        ds = FashionMNIST(root, "test")
        idx = np.random.default_rng(0).permutation(len(ds))[:n]
        x = torch.from_numpy(ds.get_batch(np.sort(idx))).float() / 255.0
        return (x - 0.2860) / 0.3530, torch.from_numpy(ds.labels[np.sort(idx)]), "Fashion-MNIST test"
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 28, 28, generator=g), None, "random"


def manual(model_a, model_b, x, args) -> float:
    """Today's public functions, one (pair, direction) at a time."""
    t0 = time.perf_counter()
    n = len(x)
    perm = np.random.default_rng(0).permutation(n)
    n_hold = round(0.25 * n)
    held, fit_rows = torch.from_numpy(np.sort(perm[:n_hold])), torch.from_numpy(np.sort(perm[n_hold:]))
    for direction in ("a->b", "b->a"):
        for la in LAYERS_A:
            for lb in LAYERS_B:
                (ms, ls), (mt, lt) = ((model_a, la), (model_b, lb)) if direction == "a->b" else \
                    ((model_b, lb), (model_a, la))
                with torch.no_grad():
                    src, tgt = split(ms, ls)[0].eval()(x), split(mt, lt)[0].eval()(x)
                src = (src - src[fit_rows].mean()) / src[fit_rows].std()
                tgt = (tgt - tgt[fit_rows].mean()) / tgt[fit_rows].std()
                src_r = F.interpolate(src, size=tgt.shape[-2:], mode="bilinear", align_corners=False) \
                    if src.shape[-2:] != tgt.shape[-2:] else src
                torch.manual_seed(0)
                g = ConsistencyNet(src.shape[1], tgt.shape[1], K=2, kernel_size=3)
                fit(g, src_r[fit_rows], tgt[fit_rows], lam=0.1, epochs=args.epochs, batch_size=16, lr=3e-3,
                    progress=False)
                variances(g, src_r[held], tgt[held])
                linear_cka(src[held], tgt[held])
                linear_predictivity(src_r[fit_rows], tgt[fit_rows], src_r[held], tgt[held], kernel_size=3)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--skip-manual", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model_a, model_b = build("vgg_s", 10), build("resnet_s", 10)
    x, y, what = images(args.images)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
          f"{len(x)} {what} images, epochs {args.epochs}, load average {os.getloadavg()[0]:.1f}")
    t0, c0 = time.perf_counter(), time.process_time()
    with kc.compare(model_a, model_b, (x, y) if y is not None else x, LAYERS_A, LAYERS_B, epochs=args.epochs,
                    device=args.device, progress=False) as cmp:
        elapsed = time.perf_counter() - t0
        t = cmp.table
        fits = sum(cmp.timings.values())
        print(f"kc.compare 4x4, both directions ({len(t)} fits): {elapsed:.1f} s wall, "
              f"{time.process_time() - c0:.1f} s CPU (fits and scores {fits:.1f} s, "
              f"extraction and the rest {elapsed - fits:.1f} s)")
        print(t.pivot_table(index="layer_a", columns=["direction", "layer_b"], values="delta_ratio",
                            sort=False).round(2).to_string())
    if not args.skip_manual:
        c0 = time.process_time()
        wall = manual(model_a, model_b, x, args)
        print(f"one pair at a time (split, extract, normalise, resize, fit, variances, CKA, predictivity): "
              f"{wall:.1f} s wall, {time.process_time() - c0:.1f} s CPU, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
