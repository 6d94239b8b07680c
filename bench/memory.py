"""Peak memory of feature extraction and of fitting g_θ against the size of the data.

Command: .venv/bin/python bench/memory.py
Writes feature stores of growing size (float16 memmaps on disk) and fits g from them in fresh
processes, printing the peak anonymous resident memory (RssAnon, sampled every 5 ms: the process's
own memory, not the page cache of the memory-mapped files, which the kernel can drop) and the peak
total RSS. Anonymous memory should stay flat as the store grows: only one batch is in memory. Also
extracts features with a small net over a growing number of images. Not a test; the figures go
into README.md.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

SAMPLER = r"""
import resource, threading, time
peak = [0]
def _sample():
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak[0] = max(peak[0], int(line.split()[1]))
        time.sleep(0.005)
threading.Thread(target=_sample, daemon=True).start()
def report():
    time.sleep(0.02)
    print(peak[0] / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""

FIT = SAMPLER + r"""
import sys, numpy as np, torch
from kc.consistency import ConsistencyNet, fit
from kc.features import FeatureArray
x = FeatureArray(sys.argv[1], 0.0, 1.0); y = FeatureArray(sys.argv[2], 0.0, 1.0)
fit(ConsistencyNet(x.shape[1], y.shape[1], K=2), x, y, epochs=1, batch_size=64, progress=False)
report()
"""

EXTRACT = SAMPLER + r"""
import sys, numpy as np, torch
from kc.data import ImageSet
from kc.features import extract
from kc.models import build
n = int(sys.argv[2])
images = np.lib.format.open_memmap(sys.argv[1] + "/img.npy", mode="w+", dtype=np.uint8, shape=(n, 1, 28, 28))
for i in range(0, n, 4096):
    images[i:i + 4096] = np.random.default_rng(i).integers(0, 255, size=images[i:i + 4096].shape, dtype=np.uint8)
images.flush(); del images
data = ImageSet(np.load(sys.argv[1] + "/img.npy", mmap_mode="r"), np.zeros(n), [0.5], [0.5], ["c"])
extract(build("vgg_s", 10).eval(), ["conv2_2", "conv4_3"], {"train": (data, data.labels, np.arange(n))},
        sys.argv[1] + "/store", batch_size=256, progress=False)
report()
"""


def peak(code, *args) -> str:
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, check=True)
    anon, total = map(float, out.stdout.strip().splitlines()[-1].split())
    return f"peak anonymous memory {anon:,.0f} MiB (peak RSS with mapped file pages {total:,.0f} MiB)"


with tempfile.TemporaryDirectory() as tmp:
    import numpy as np
    for n in (2_000, 20_000, 80_000):
        for name in ("x", "y"):
            arr = np.lib.format.open_memmap(f"{tmp}/{name}.npy", mode="w+", dtype=np.float16, shape=(n, 64, 14, 14))
            for i in range(0, n, 5000):
                arr[i:i + 5000] = np.random.default_rng(i).normal(size=arr[i:i + 5000].shape)
            arr.flush()
            del arr
        size = 2 * n * 64 * 14 * 14 * 2 / 2**20
        print(f"fit g from two stores of {n} x 64x14x14 float16 ({size:,.0f} MiB on disk): "
              f"{peak(FIT, f'{tmp}/x.npy', f'{tmp}/y.npy')}")
    for n in (5_000, 50_000):
        d = Path(tmp) / f"e{n}"
        d.mkdir()
        print(f"extract vgg_s conv2_2 + conv4_3 over {n} images: {peak(EXTRACT, d, n)}")
