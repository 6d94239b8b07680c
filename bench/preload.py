"""Fitting g from float16 stores on disk: streamed every epoch vs held in memory (``fit(preload=...)``).

Command: .venv/bin/python bench/preload.py [--n 5400] [--channels 128] [--size 28] [--keep-cache]

Writes a source and a target store, (N, C, H, W) float16 each through numpy's open_memmap (the
default: 2 x 5400 x 128 x 28 x 28 x 2 bytes = 2.2 GB), under .bench-tmp/ in the repository (deleted
afterwards), and reads the source through kc.features.FeatureArray (normalised per batch) as the
pipeline does. Then, for streaming (preload=False) and for preload=True, in that order:

* the data alone: one epoch of the batches fit draws (seeded shuffle, batch 64), twice; on the
  CPU, preloading holds the normalised float32 values when twice the float16 size fits (it does
  here), so a batch is one row gather;
* fit itself: two epochs of a light g (K = 1, 1x1 convolutions, so that reading shows) with the
  time of each epoch (the preloaded fit's first epoch includes reading the stores into memory).

The page cache: a store read once stays in the kernel's page cache while memory allows, so a
second streamed epoch reads from memory too (no disk), paying only the per-batch copying and
conversion. Before each cold measurement the script asks the kernel to drop the stores' cached
pages (posix_fadvise DONTNEED on the files, which needs no privileges and works for clean pages)
and prints how much of the stores is still cached (mincore through mmap is not available from
numpy, so it times a read right after the drop and a re-read: see the "cold?" line). ``--keep-cache`` skips the drop.
Not a test; the figures go into the report.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kc.consistency import ConsistencyNet, _Pairs, fit
from kc.features import FeatureArray

parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int, default=5400)
parser.add_argument("--channels", type=int, default=128)
parser.add_argument("--size", type=int, default=28)
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--keep-cache", action="store_true")
args = parser.parse_args()

root = Path(__file__).resolve().parent.parent / ".bench-tmp"
root.mkdir(exist_ok=True)
tmp = Path(tempfile.mkdtemp(prefix="preload.", dir=root))


def drop_cache(*paths):
    if args.keep_cache or not hasattr(os, "posix_fadvise"):
        return
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def write_store(path, seed):
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16,
                                    shape=(args.n, args.channels, args.size, args.size))
    rng = np.random.default_rng(seed)
    for start in range(0, args.n, 256):
        stop = min(args.n, start + 256)
        arr[start:stop] = (rng.standard_normal((stop - start, args.channels, args.size, args.size),
                                               dtype=np.float32) * 2 + 0.5).astype(np.float16)
    arr.flush()
    del arr


def timed(f):
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


try:
    src_path, tgt_path = tmp / "source.npy", tmp / "target.npy"
    t_write, _ = timed(lambda: (write_store(src_path, 0), write_store(tgt_path, 1)))
    size = src_path.stat().st_size + tgt_path.stat().st_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; stores {size / 2**30:.2f} GiB on disk "
          f"({args.n} x {args.channels}x{args.size}x{args.size} float16, two arrays), written in {t_write:.1f} s")
    source = FeatureArray(src_path, mean=0.5, std=2.0)
    target = FeatureArray(tgt_path, mean=0.0, std=1.0)
    cpu = torch.device("cpu")

    def data_epoch(pairs, seed):
        rng = np.random.default_rng(seed)
        n = 0
        for src, tgt in pairs.batches(args.batch, shuffle=True, generator=rng):
            n += src.shape[0] + 0 * tgt.shape[0]
        return n

    def read_bytes(path, nbytes=512 << 20):
        with open(path, "rb", buffering=0) as f:
            while nbytes > 0 and f.read(min(nbytes, 16 << 20)):
                nbytes -= 16 << 20

    drop_cache(src_path, tgt_path)
    cold, _ = timed(lambda: read_bytes(src_path))
    warm, _ = timed(lambda: read_bytes(src_path))
    mb = min(512 << 20, src_path.stat().st_size) / 2**20
    print(f"cold? reading the first {mb:.0f} MiB of the source after dropping its cached pages: {cold:.2f} s "
          f"({mb / cold:,.0f} MiB/s); again (cached): {warm:.2f} s ({mb / warm:,.0f} MiB/s)")

    results = {}
    for mode in (False, True):
        drop_cache(src_path, tgt_path)
        t_setup, pairs = timed(lambda: _Pairs(source, target, device=cpu, preload=mode))
        times = [timed(lambda: data_epoch(pairs, e))[0] for e in range(2)]
        label = "preloaded" if mode else "streamed"
        extra = f" (+ {t_setup:.1f} s reading the stores into memory first)" if mode else ""
        held = {k: f"{str(v.data.dtype)[6:]} {tuple(v.data.shape)}{' + per-batch transform' if v.transform else ''}"
                for k, v in pairs.resident.items()}
        print(f"data only, {label}: epoch 1 {times[0]:.1f} s, epoch 2 {times[1]:.1f} s{extra}; "
              f"held in memory: {held or 'nothing'}")
        del pairs
        drop_cache(src_path, tgt_path)
        torch.manual_seed(0)
        net = ConsistencyNet(args.channels, args.channels, K=1, kernel_size=1)
        t_fit, history = timed(lambda: fit(net, source, target, epochs=2, batch_size=args.batch, preload=mode,
                                           calibrate=False, progress=False))
        secs = [h["seconds"] for h in history]
        results[label] = (times, secs, t_fit, [h["loss"] for h in history])
        print(f"fit (K=1, 1x1), {label}: epoch 1 {secs[0]:.1f} s, epoch 2 {secs[1]:.1f} s, whole call {t_fit:.1f} s "
              f"(loading and setup {t_fit - sum(secs):.1f} s); losses {history[0]['loss']:.6f} {history[1]['loss']:.6f}")
    same = results["streamed"][3] == results["preloaded"][3]
    print(f"identical losses streamed vs preloaded: {same}")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        root.rmdir()
    except OSError:
        pass
    print(f"removed {tmp}", file=sys.stderr)
