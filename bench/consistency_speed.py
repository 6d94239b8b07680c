"""Throughput of g_θ: fitting (images/s) and the exact decomposition (vs a plain forward pass).

Command: .venv/bin/python bench/consistency_speed.py [--device cuda]
Prints one line per feature shape: the default's 32x7x7 maps and the paper's VGG-16 conv4_3 map
(512x28x28). On CUDA it also times mixed precision. Not a test; the figures go into README.md.
"""
import argparse
import time

import torch

from kc.consistency import ConsistencyNet, decompose, fit

parser = argparse.ArgumentParser()
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
args = parser.parse_args()
device = torch.device(args.device)
shapes = [(3000, 32, 7, 7, 64), (256, 512, 28, 28, 16)] if device.type == "cpu" else \
    [(3000, 32, 7, 7, 64), (2048, 512, 28, 28, 64), (2048, 256, 14, 14, 64)]
print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
for n, c, h, w, bs in shapes:
    x, y = torch.randn(n, c, h, w), torch.randn(n, c, h, w)
    if device.type == "cuda":
        x, y = x.to(device), y.to(device)
    for amp in ([False, True] if device.type == "cuda" else [False]):
        net = ConsistencyNet(c, c, K=2)
        fit(net, x[:bs * 2], y[:bs * 2], epochs=1, batch_size=bs, device=device, amp=amp, progress=False)  # warm-up
        t = time.perf_counter()
        fit(net, x, y, epochs=1, batch_size=bs, device=device, amp=amp, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        fit_rate = n / (time.perf_counter() - t)
        net.eval()
        with torch.no_grad():
            t = time.perf_counter()
            for i in range(0, n, bs):
                net(x[i:i + bs].to(device))
            if device.type == "cuda":
                torch.cuda.synchronize()
            fwd = time.perf_counter() - t
        t = time.perf_counter()
        decompose(net, x, y, batch_size=bs, device=device, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dec = time.perf_counter() - t
        print(f"{c}x{h}x{w} N={n} batch={bs} amp={amp}: fit {fit_rate:,.0f} images/s; "
              f"forward {n / fwd:,.0f} images/s; decompose {n / dec:,.0f} images/s ({dec / fwd:.1f}x a forward pass)")
