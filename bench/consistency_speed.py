"""Speed of g_θ: one training step against plain convolutions, fitting (images/s), and the exact
decomposition (against a plain forward pass).

Command: .venv/bin/python bench/consistency_speed.py [--device cuda] [--steps-only] [--repeats 30] [--threads 1]

1. One training step of g (K = 2, 3x3, batch 64: forward, loss of Eq. 2, backward, Adam step; the
   very code ``fit`` runs per batch) against the same three bias-free convolutions chained, with the
   same loss (MSE) and optimiser (kc.util.Adam) but no Σ, ReLU or gates, on 32x7x7 and 128x14x14
   maps. The two are timed interleaved in one process, several repeats, and the minimum of each is
   reported (other jobs share the machine), with the ratio; also the median of the per-repeat ratios.
   With --threads 1 on the CPU the clock is the thread's CPU time (less disturbed by other jobs).
2. Unless --steps-only: fit throughput, forward and decomposition per feature shape: the default's
   32x7x7 maps and the paper's VGG-16 conv4_3 map (512x28x28); on CUDA also mixed precision.
Not a test; the figures go into README.md.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from kc.consistency import ConsistencyNet, _train_step, decompose, fit
from kc.util import Adam, autocast

parser = argparse.ArgumentParser()
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
parser.add_argument("--steps-only", action="store_true", help="only the training-step comparison")
parser.add_argument("--repeats", type=int, default=30)
parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
args = parser.parse_args()
device = torch.device(args.device)
if args.threads:
    torch.set_num_threads(args.threads)
clock = time.thread_time if device.type == "cpu" and torch.get_num_threads() == 1 else time.perf_counter
print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_step(convs, opt, src, tgt):
    h = src
    for conv in convs:
        h = conv(h)
    loss = F.mse_loss(h, tgt)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


# -- 1. one training step ---------------------------------------------------------------------------
for c, hw, steps in ((32, 7, 5), (128, 14, 1)) if device.type == "cpu" else ((32, 7, 50), (128, 14, 50)):
    torch.manual_seed(0)
    x, y = torch.randn(64, c, hw, hw, device=device), torch.randn(64, c, hw, hw, device=device)
    for norm in ("dataset", "instance"):
        net = ConsistencyNet(c, c, K=2, norm=norm).to(device).train()
        opt = Adam(net.parameters(), lr=1e-4)
        convs = nn.Sequential(*(nn.Conv2d(c, c, 3, padding="same", bias=False) for _ in range(3))).to(device)
        opt_plain = Adam(convs.parameters(), lr=1e-4)
        amp = autocast(device, False)
        runs = {"g": lambda: _train_step(net, opt, x, y, 0.1, amp), "plain": lambda: plain_step(convs, opt_plain, x, y)}
        for f in runs.values():  # warm-up
            f()
            f()
        times = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, f in runs.items():
                sync()
                t = clock()
                for _ in range(steps):
                    f()
                sync()
                times[name].append((clock() - t) / steps)
        best = {name: min(v) for name, v in times.items()}
        median = statistics.median(a / b for a, b in zip(times["g"], times["plain"]))
        print(f"train step {c}x{hw}x{hw} batch 64 K=2 norm={norm}: g {best['g'] * 1e3:.2f} ms, three plain convs "
              f"{best['plain'] * 1e3:.2f} ms, ratio {best['g'] / best['plain']:.2f} (min of {args.repeats} interleaved "
              f"repeats of {steps} steps; median ratio {median:.2f}; float32, {torch.get_num_threads()} threads)")

if args.steps_only:
    raise SystemExit

# -- 2. throughput ----------------------------------------------------------------------------------
shapes = [(3000, 32, 7, 7, 64), (256, 512, 28, 28, 16)] if device.type == "cpu" else \
    [(3000, 32, 7, 7, 64), (2048, 512, 28, 28, 64), (2048, 256, 14, 14, 64)]
for n, c, h, w, bs in shapes:
    x, y = torch.randn(n, c, h, w), torch.randn(n, c, h, w)
    if device.type == "cuda":
        x, y = x.to(device), y.to(device)
    for amp in ([False, True] if device.type == "cuda" else [False]):
        net = ConsistencyNet(c, c, K=2)
        fit(net, x[:bs * 2], y[:bs * 2], epochs=1, batch_size=bs, device=device, amp=amp, progress=False)  # warm-up
        t = time.perf_counter()
        fit(net, x, y, epochs=1, batch_size=bs, device=device, amp=amp, progress=False)
        sync()
        fit_rate = n / (time.perf_counter() - t)
        net.eval()
        with torch.no_grad():
            t = time.perf_counter()
            for i in range(0, n, bs):
                net(x[i:i + bs].to(device))
            sync()
            fwd = time.perf_counter() - t
        t = time.perf_counter()
        decompose(net, x, y, batch_size=bs, device=device, progress=False)
        sync()
        dec = time.perf_counter() - t
        print(f"{c}x{h}x{w} N={n} batch={bs} amp={amp}: fit {fit_rate:,.0f} images/s; "
              f"forward {n / fwd:,.0f} images/s; decompose {n / dec:,.0f} images/s ({dec / fwd:.1f}x a forward pass)")
