"""One short check of kc's CUDA paths (mixed precision, channels-last, NCCL DDP); prints and writes JSON.

Commands:
    make gpu-check                                    # PYTHONPATH=. python bench/gpu_check.py --json gpu_check.json
    python bench/gpu_check.py --device cpu --quick    # every part on the CPU at tiny sizes: checks the script

Needs torch, torchvision and numpy only (no dvc, no installed kc: it imports kc from the repository
root). Without a CUDA device (and without ``--device cpu``) it says so and exits 0. Parts (each runs
even when an earlier one failed; the JSON is rewritten after each, so a cut-off run keeps what it had):

env          GPU name, capability, memory, torch / CUDA / cuDNN versions, GPU count.
sum_check    ConsistencyNet(C, C, K=2, kernel 3) on random maps (N, C, H, W) of the paper's shapes
             (512x28x28, 256x13x13), eval mode with Σ calibrated on the same maps: the components of
             ``net.components(x)`` run under ``torch.autocast`` must sum to ``net(x)`` run under the same
             autocast. Error: ||Σ_k x^(k) - g(x)||_F / ||g(x)||_F (the components summed in float32);
             the max abs error and its ratio to max|g(x)| are printed too. Tolerance: 4u on the
             relative error, u the unit roundoff of the precision in which the convolutions run
             (bf16 2^-8, fp16 2^-11, TF32 2^-11): each convolution's input and output are rounded
             once per path (a few roundings of at most u each, on components whose norms add up to
             ~1.4 ||g(x)||); measured errors are ~0.8u. float32 (TF32 off): 1e-5 (measured ~3e-7).
             "tf32" is float32 with cuDNN's default TF32 convolutions (what amp=False runs on CUDA).
             On the CPU: float32 and bf16 autocast; fp16 autocast is skipped (a CUDA path; very slow
             on CPUs).
train        kc.train.train (TrainConfig(device=..., amp=True, channels_last=True), SGD momentum,
             cosine lr per step) against a plain PyTorch loop with the same model architecture
             (torchvision resnet18 via kc.models.build("resnet18", 200)), batch size, optimiser
             (same parameter groups, lr set every step), autocast dtype, channels-last and
             cross-entropy, both reading the same shuffled batches of the same in-memory ImageSet
             (random uint8 224 px images: the same data-pipeline cost). Warm-up steps are run and
             excluded; a fixed number of timed steps (40 of 128 images); best of 3 interleaved
             repeats (the ratio of the medians is recorded too). Also timed, to tell what bounds the
             loop: the reference with a host sync per step (loss.item(), as kc logs), the data
             pipeline alone (ImageSet batches + host-to-device copies) and the model alone (one batch
             resident on the device). Goal: kc >= 0.9x the reference (a warning, not a failure).
consistency  fit (Eq. 2, one epoch after a warm-up) and decompose / variances (Eq. 4) throughput in
             images/s of kc.consistency on in-memory tensors on the device, K=2, kernel 3, on
             512x28x28 (VGG-16 conv4_3) and 256x13x13 (AlexNet conv5), with a forward pass for scale.
ddp          two processes (torch.multiprocessing spawn) train one epoch with kc.train under DDP:
             NCCL through kc's own init_distributed on 2 GPUs (skipped, with the reason, when one
             GPU is visible), gloo on the CPU; checks that both ranks end with identical weights.

Each part records its peak memory: torch.cuda.max_memory_allocated on CUDA (including the part's
inputs held on the GPU), the process's peak RSS on the CPU. Exit status 1 when a part raised or a
correctness check failed, else 0.
Expected time on one H100: under a minute (measured with torch 2.11 / CUDA 13.0: 38 s for the
script, 46 s for `make gpu-check` with python's start; train 24 s, consistency 7 s, the rest ~8 s);
``--device cpu --quick`` takes ~15-25 s on 2 CPU cores (one thread).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# Sizes: the full check on CUDA, and --quick (tiny, for verifying the script on a CPU).
FULL = {
    "sum_shapes": [(8, 512, 28, 28), (16, 256, 13, 13)],
    "train": dict(arch="resnet18", classes=200, in_channels=3, size=224, batch=128, warmup=5, steps=40,
                  repeats=3, pool=512),
    "consistency": dict(shapes=[(512, 28, 28, 2048), (256, 13, 13, 8192)], fit_batch=64, eval_batch=256,
                        decompose_n=256),
    "ddp": dict(arch="resnet18", classes=10, in_channels=3, size=64, batch=16, steps=4, timeout=240),
}
QUICK = {
    "sum_shapes": [(4, 16, 8, 8), (4, 8, 5, 5)],
    "train": dict(arch="resnet_s", classes=10, in_channels=3, size=32, batch=8, warmup=1, steps=3,
                  repeats=1, pool=32),
    "consistency": dict(shapes=[(16, 8, 8, 64), (8, 5, 5, 64)], fit_batch=16, eval_batch=32, decompose_n=32),
    "ddp": dict(arch="resnet_s", classes=4, in_channels=3, size=16, batch=8, steps=2, timeout=150),
}
PARTS = ("env", "sum_check", "train", "consistency", "ddp")
TRAIN_GOAL = 0.9
UNIT_ROUNDOFF = {"bfloat16": 2.0 ** -8, "float16": 2.0 ** -11, "tf32": 2.0 ** -11}
FLOAT32_TOL = 1e-5


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device: torch.device) -> float:
    """Peak GPU memory allocated since the last reset_peak; on the CPU the process's peak RSS so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype kc's train and fit choose on this device (None: no autocast, as kc on CPU)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class tf32_convolutions:
    """Context: cuDNN convolutions (and matmuls) in TF32 or in true float32."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __enter__(self):
        self.saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = self.enabled

    def __exit__(self, *exc):
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self.saved


def image_set(n: int, pool: int, size: int, channels: int, classes: int, seed: int = 0):
    """An in-memory ImageSet of ``n`` random uint8 images (rows of a pool of ``pool`` distinct ones)."""
    from kc.data.images import ImageSet

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(min(pool, n), channels, size, size), dtype=np.uint8)
    labels = rng.integers(0, classes, size=n)
    return ImageSet(images, labels, [0.5] * channels, [0.25] * channels, [f"c{i}" for i in range(classes)],
                    rows=np.arange(n) % len(images))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fmt_rate(x: float) -> str:
    return f"{x:,.0f} images/s"


# ------------------------------------------------------------------------------------------------
# parts
# ------------------------------------------------------------------------------------------------
def part_env(device: torch.device, sizes: dict, report: dict) -> dict:
    import torchvision

    import kc

    out = {"device": str(device), "torch": torch.__version__, "torchvision": torchvision.__version__,
           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
           "python": platform.python_version(), "numpy": np.__version__,
           "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
           "kc_path": str(Path(kc.__file__).resolve().parent), "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(gpu=torch.cuda.get_device_name(device), capability=f"{props.major}.{props.minor}",
                   gpu_memory_gb=props.total_memory / 2 ** 30, bf16_supported=torch.cuda.is_bf16_supported())
        print(f"  GPU {out['gpu']} (sm {out['capability']}, {out['gpu_memory_gb']:.0f} GiB), "
              f"{out['gpu_count']} visible; bf16 {'yes' if out['bf16_supported'] else 'no'}")
    else:
        out["gpu"] = None
        print(f"  CPU ({platform.processor() or platform.machine()}), {out['cpu_threads']} threads")
    print(f"  torch {out['torch']}, torchvision {out['torchvision']}, CUDA {out['cuda']}, cuDNN {out['cudnn']}, "
          f"python {out['python']}; kc from {out['kc_path']}")
    return out


def part_sum_check(device: torch.device, sizes: dict, report: dict) -> dict:
    from kc.consistency import ConsistencyNet, calibrate_norm

    precisions = ["float32"]
    if device.type == "cuda":
        precisions += ["tf32", "bfloat16", "float16"]
    else:
        precisions += ["bfloat16", "float16"]
    out: dict = {"tolerance_rule": "rel_err = ||sum_k x^(k) - g(x)||_F / ||g(x)||_F <= 4u "
                                   "(u: unit roundoff of the convolutions' precision); float32: 1e-5"}
    failures = []
    for n, c, h, w in sizes["sum_shapes"]:
        torch.manual_seed(0)
        key = f"{c}x{h}x{w}"
        net = ConsistencyNet(c, c, K=2, kernel_size=3).to(device)
        x = torch.randn(n, c, h, w, device=device)
        with tf32_convolutions(False):
            calibrate_norm(net, x, batch_size=n, device=device, amp=False)
        net.eval()
        reset_peak(device)
        rows = {}
        with torch.no_grad(), tf32_convolutions(False):
            reference = net(x).float()  # true float32, to show how far each precision is from it
        for precision in precisions:
            if precision == "float16" and device.type != "cuda":
                rows[precision] = {"skipped": "fp16 autocast is a CUDA path (kc uses it on GPUs without bf16); "
                                              "very slow on CPUs"}
                print(f"  {key} float16: skipped ({rows[precision]['skipped']})")
                continue
            dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision)
            with torch.no_grad(), tf32_convolutions(precision == "tf32"):
                if dtype is None:
                    comps, g = net.components(x), net(x)
                else:
                    with torch.autocast(device.type, dtype=dtype):
                        comps, g = net.components(x), net(x)
                sync(device)
            total, g = comps.float().sum(0), g.float()
            err = (total - g)
            rel = float(err.norm() / g.norm())
            max_abs = float(err.abs().max())
            tol = FLOAT32_TOL if precision == "float32" else 4 * UNIT_ROUNDOFF[precision]
            ok = math.isfinite(rel) and rel <= tol and bool(torch.isfinite(comps).all())
            rows[precision] = {"max_abs_err": max_abs, "max_abs_over_max_out": max_abs / float(g.abs().max()),
                               "rel_err": rel, "tolerance": tol, "ok": ok,
                               "components_dtype": str(comps.dtype).replace("torch.", ""),
                               "output_dtype_in_autocast": precision,
                               "rel_diff_vs_float32": float((g - reference).norm() / reference.norm())}
            share = rows[precision]["max_abs_over_max_out"]
            print(f"  {key} N={n} {precision:8s}: max abs err {max_abs:.2e} ({share:.1e}"
                  f" of max|g(x)|), rel err {rel:.2e} (tol {tol:.1e}) {'ok' if ok else 'FAIL'}; "
                  f"g(x) vs float32 {rows[precision]['rel_diff_vs_float32']:.1e}")
            if not ok:
                failures.append(f"sum_check {key} {precision}: rel err {rel:.3g} > tol {tol:.3g}")
        rows["peak_memory_mb"] = peak_mb(device)
        out[key] = rows
        del net, x, comps, g, total, err, reference
    out["failures"] = failures
    return out


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def reference_train(model, data, cfg, device: torch.device, *, sync_every_step: bool = False,
                    resident: bool = False) -> dict:
    """A plain PyTorch loop doing what kc's train does per step, without kc: returns images/s.

    ``sync_every_step``: read the loss on the host every step (as kc logs it). ``resident``: train
    on one batch already on the device, every step (the model's own speed, no data pipeline)."""
    dtype = amp_dtype(device) if cfg.amp else None
    memory_format = torch.channels_last if device.type == "cuda" and cfg.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format).train()
    opt = torch.optim.SGD(_param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16) if device.type == "cuda" else None
    total = data.num_batches(cfg.batch_size)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    sync(device)
    t0 = time.perf_counter()
    n = 0
    batches = data.batches(cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=1)
    if resident:
        x, y = next(iter(data.batches(cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=1)))
        x, y = x.to(device, memory_format=memory_format), y.to(device)
        batches = [(x, y)] * total
        sync(device)
        t0 = time.perf_counter()
    for step, (x, y) in enumerate(batches):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / total))
        x = x.to(device, non_blocking=True, memory_format=memory_format)
        y = y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        if sync_every_step:
            float(loss.detach())
        n += len(y)
    sync(device)
    seconds = time.perf_counter() - t0
    return {"images_per_s": n / seconds, "seconds": seconds, "loss": float(loss_sum) / n}


def data_only(data, cfg, device: torch.device) -> dict:
    memory_format = torch.channels_last if device.type == "cuda" and cfg.channels_last else torch.contiguous_format
    sync(device)
    t0 = time.perf_counter()
    n = 0
    for x, y in data.batches(cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=1):
        x = x.to(device, non_blocking=True, memory_format=memory_format)
        y = y.to(device, non_blocking=True)
        n += len(y)
    sync(device)
    seconds = time.perf_counter() - t0
    return {"images_per_s": n / seconds, "seconds": seconds}


def part_train(device: torch.device, sizes: dict, report: dict) -> dict:
    from kc.models import build
    from kc.train import TrainConfig, train

    s = sizes["train"]
    bs = s["batch"]
    cfg = TrainConfig(epochs=1, batch_size=bs, lr=0.05, device=str(device), amp=True, channels_last=True,
                      seed=0, schedule="cosine")
    warm = image_set(bs * s["warmup"], s["pool"], s["size"], s["in_channels"], s["classes"], seed=1)
    data = image_set(bs * s["steps"], s["pool"], s["size"], s["in_channels"], s["classes"], seed=2)

    def fresh():
        torch.manual_seed(0)
        return build(s["arch"], s["classes"], s["in_channels"])

    kc_model, ref_model = fresh(), fresh()
    # warm-up (excluded): cuDNN algorithm choice, allocator, first-call costs, for both loops
    train(kc_model, warm, None, cfg, progress=False)
    reference_train(ref_model, warm, cfg, device)
    runs: dict[str, list] = {"kc": [], "reference": [], "reference_sync": [], "data_only": [], "model_only": []}
    peaks: dict[str, float] = {}
    for _ in range(s["repeats"]):
        reset_peak(device)
        t0 = time.perf_counter()
        result = train(kc_model, data, None, cfg, progress=False)
        wall = time.perf_counter() - t0
        seconds = result["history"][0]["seconds"]
        runs["kc"].append({"images_per_s": len(data) / seconds, "seconds": seconds, "wall_seconds": wall,
                           "loss": result["history"][0]["loss"]})
        peaks["kc"] = max(peaks.get("kc", 0.0), peak_mb(device))
        reset_peak(device)
        runs["reference"].append(reference_train(ref_model, data, cfg, device))
        peaks["reference"] = max(peaks.get("reference", 0.0), peak_mb(device))
        runs["reference_sync"].append(reference_train(ref_model, data, cfg, device, sync_every_step=True))
        runs["data_only"].append(data_only(data, cfg, device))
        runs["model_only"].append(reference_train(ref_model, data, cfg, device, resident=True))
    best = {k: max(v, key=lambda r: r["images_per_s"]) for k, v in runs.items()}
    median = {k: float(np.median([r["images_per_s"] for r in v])) for k, v in runs.items()}
    ratio = best["kc"]["images_per_s"] / best["reference"]["images_per_s"]
    dtype = amp_dtype(device)
    out = {"arch": s["arch"], "num_classes": s["classes"], "image_size": s["size"], "batch_size": bs,
           "timed_steps": s["steps"], "warmup_steps": s["warmup"], "repeats": s["repeats"],
           "autocast": None if dtype is None else str(dtype).replace("torch.", ""),
           "channels_last": device.type == "cuda",
           "kc_images_per_s": best["kc"]["images_per_s"],
           "reference_images_per_s": best["reference"]["images_per_s"],
           "reference_sync_images_per_s": best["reference_sync"]["images_per_s"],
           "data_only_images_per_s": best["data_only"]["images_per_s"],
           "model_only_images_per_s": best["model_only"]["images_per_s"],
           "ratio_kc_over_reference": ratio,
           "ratio_of_medians": median["kc"] / median["reference"], "median_images_per_s": median,
           "goal": TRAIN_GOAL, "goal_met": ratio >= TRAIN_GOAL,
           "kc_peak_memory_mb": peaks["kc"], "reference_peak_memory_mb": peaks["reference"],
           "peak_memory_mb": max(peaks.values()), "runs": runs}
    finite = all(math.isfinite(r["loss"]) for k in ("kc", "reference") for r in runs[k])
    out["failures"] = [] if finite else ["train: a loss is not finite"]
    out["warnings"] = [] if out["goal_met"] else [
        f"train: kc runs at {ratio:.2f}x the reference loop (goal >= {TRAIN_GOAL}x)"]
    print(f"  {s['arch']} {s['size']} px, batch {bs}, {s['steps']} timed steps (+{s['warmup']} warm-up), "
          f"autocast {out['autocast']}, channels_last {out['channels_last']}")
    print(f"  kc.train {fmt_rate(out['kc_images_per_s'])} | reference {fmt_rate(out['reference_images_per_s'])}"
          f" | ratio {ratio:.2f}x (goal >= {TRAIN_GOAL}) {'ok' if out['goal_met'] else 'BELOW GOAL'}")
    print(f"  (best of {s['repeats']}; ratio of the medians {out['ratio_of_medians']:.2f}x)")
    print(f"  reference with a per-step host sync {fmt_rate(out['reference_sync_images_per_s'])}; "
          f"data pipeline alone (ImageSet batches + copies) {fmt_rate(out['data_only_images_per_s'])}; "
          f"model alone (one batch resident on the device) {fmt_rate(out['model_only_images_per_s'])}")
    print(f"  peak memory: kc {peaks['kc']:,.0f} MB, reference {peaks['reference']:,.0f} MB")
    return out


def part_consistency(device: torch.device, sizes: dict, report: dict) -> dict:
    from kc.consistency import ConsistencyNet, decompose, fit, variances

    s = sizes["consistency"]
    bs, ebs = s["fit_batch"], s["eval_batch"]
    out: dict = {"K": 2, "kernel_size": 3, "fit_batch_size": bs, "eval_batch_size": ebs,
                 "autocast": None if amp_dtype(device) is None else str(amp_dtype(device)).replace("torch.", "")}
    failures = []
    for c, h, w, n in s["shapes"]:
        key = f"{c}x{h}x{w}"
        torch.manual_seed(0)
        x = torch.randn(n, c, h, w, device=device)
        y = 0.7 * torch.roll(x, 1, dims=1) + 0.3 * torch.randn_like(x)
        net = ConsistencyNet(c, c, K=2, kernel_size=3)
        fit(net, x[:2 * bs], y[:2 * bs], epochs=1, batch_size=bs, device=device, progress=False)  # warm-up
        decompose(net, x[:ebs], y[:ebs], batch_size=ebs, device=device, progress=False)
        reset_peak(device)
        t0 = time.perf_counter()
        history = fit(net, x, y, epochs=1, batch_size=bs, device=device, progress=False)
        sync(device)
        fit_wall = time.perf_counter() - t0
        fit_peak = peak_mb(device)
        reset_peak(device)
        nd = min(n, s["decompose_n"])
        t0 = time.perf_counter()
        dec = decompose(net, x[:nd], y[:nd], batch_size=ebs, device=device, progress=False)
        dec_seconds = time.perf_counter() - t0
        dec_peak = peak_mb(device)
        reset_peak(device)
        t0 = time.perf_counter()
        var = variances(net, x, y, batch_size=ebs, device=device, progress=False)
        var_seconds = time.perf_counter() - t0
        var_peak = peak_mb(device)
        dtype = amp_dtype(device)
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            net(x[:ebs])
            sync(device)
            t0 = time.perf_counter()
            for i in range(0, n, ebs):
                net(x[i:i + ebs])
            sync(device)
            fwd_seconds = time.perf_counter() - t0
        row = {"n": n, "fit_images_per_s": n / history[0]["seconds"], "fit_with_calibration_images_per_s": n / fit_wall,
               "fit_loss": history[0]["loss"], "decompose_n": nd, "decompose_images_per_s": nd / dec_seconds,
               "variances_images_per_s": n / var_seconds, "forward_images_per_s": n / fwd_seconds,
               "delta_ratio": var["delta_ratio"], "fit_peak_memory_mb": fit_peak,
               "decompose_peak_memory_mb": dec_peak, "variances_peak_memory_mb": var_peak,
               "peak_memory_mb": max(fit_peak, dec_peak, var_peak)}
        ok = all(math.isfinite(v) for v in (row["fit_loss"], row["delta_ratio"])) and \
            bool(torch.isfinite(dec.components).all())
        if not ok:
            failures.append(f"consistency {key}: non-finite loss, variance or components")
        out[key] = row
        with_calibration = fmt_rate(row["fit_with_calibration_images_per_s"])
        print(f"  {key} N={n}: fit {fmt_rate(row['fit_images_per_s'])} ({with_calibration}"
              f" with the Σ calibration pass), decompose {fmt_rate(row['decompose_images_per_s'])} (N={nd}, "
              f"components to host memory), variances {fmt_rate(row['variances_images_per_s'])}, forward "
              f"{fmt_rate(row['forward_images_per_s'])}; peak memory fit {fit_peak:,.0f} MB, decompose "
              f"{dec_peak:,.0f} MB, variances {var_peak:,.0f} MB")
        del x, y, net, dec
    out["failures"] = failures
    return out


def _ddp_worker(rank: int, world: int, port: int, device_type: str, s: dict, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    import torch.distributed as dist

    from kc.models import build
    from kc.train import TrainConfig, init_distributed, train

    if device_type == "cpu":
        torch.set_num_threads(1)
        dist.init_process_group("gloo", rank=rank, world_size=world)  # kc's init picks nccl when CUDA exists
    r, w = init_distributed()  # on CUDA: kc's own path (nccl, cuda:LOCAL_RANK)
    torch.manual_seed(0)
    model = build(s["arch"], s["classes"], s["in_channels"])
    initial = torch.cat([p.detach().flatten() for p in model.parameters()]).clone()
    data = image_set(s["batch"] * world * s["steps"], 64, s["size"], s["in_channels"], s["classes"], seed=3)
    cfg = TrainConfig(epochs=1, batch_size=s["batch"], lr=0.05, device=device_type, amp=True, channels_last=True)
    t0 = time.perf_counter()
    result = train(model, data, None, cfg, progress=False)
    seconds = time.perf_counter() - t0
    flat = torch.cat([p.detach().float().flatten() for p in model.parameters()] +
                     [b.detach().float().flatten() for b in model.buffers()])
    gathered = [torch.empty_like(flat) for _ in range(w)]
    dist.all_gather(gathered, flat)
    spread = max(float((g - gathered[0]).abs().max()) for g in gathered)
    changed = float((torch.cat([p.detach().flatten() for p in model.parameters()]).cpu() - initial).abs().max())
    info = {"rank": r, "world_size": result["world_size"], "backend": dist.get_backend(),
            "device": str(next(model.parameters()).device), "seconds": seconds,
            "images_per_s_all_ranks": len(data) / seconds, "loss": result["history"][0]["loss"],
            "max_weight_difference_between_ranks": spread, "max_weight_change": changed}
    Path(out_dir, f"rank{r}.json").write_text(json.dumps(info))
    dist.barrier()
    dist.destroy_process_group()


def part_ddp(device: torch.device, sizes: dict, report: dict) -> dict:
    s = sizes["ddp"]
    if device.type == "cuda" and torch.cuda.device_count() < 2:
        reason = f"only {torch.cuda.device_count()} GPU is visible (NCCL DDP needs 2 or more)"
        print(f"  skipped: {reason}")
        return {"skipped": reason, "failures": []}
    import torch.multiprocessing as mp

    world = 2
    with tempfile.TemporaryDirectory(prefix="kc-gpu-check-ddp-") as tmp:
        t0 = time.perf_counter()
        ctx = mp.start_processes(_ddp_worker, args=(world, free_port(), device.type, s, tmp), nprocs=world,
                                 join=False, start_method="spawn")
        deadline = time.monotonic() + s["timeout"]
        try:
            while not ctx.join(timeout=2):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"DDP processes still running after {s['timeout']} s")
        except BaseException:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            raise
        wall = time.perf_counter() - t0
        ranks = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(world)]
    spread = max(r["max_weight_difference_between_ranks"] for r in ranks)
    out = {"world_size": ranks[0]["world_size"], "backend": ranks[0]["backend"],
           "devices": [r["device"] for r in ranks], "arch": s["arch"], "image_size": s["size"],
           "batch_per_rank": s["batch"], "steps": s["steps"], "train_seconds": max(r["seconds"] for r in ranks),
           "images_per_s_all_ranks": min(r["images_per_s_all_ranks"] for r in ranks),
           "wall_seconds_with_spawn": wall, "loss": ranks[0]["loss"],
           "max_weight_difference_between_ranks": spread,
           "max_weight_change": ranks[0]["max_weight_change"]}
    ok = (out["world_size"] == world and spread == 0.0 and out["max_weight_change"] > 0
          and math.isfinite(out["loss"]))
    out["ok"] = ok
    out["failures"] = [] if ok else [f"ddp: world size {out['world_size']}, weight spread {spread}, "
                                     f"change {out['max_weight_change']}, loss {out['loss']}"]
    print(f"  {world} processes, backend {out['backend']} on {', '.join(out['devices'])}: {s['arch']} "
          f"{s['size']} px, {s['steps']} steps of {s['batch']}/rank in {out['train_seconds']:.1f} s "
          f"({wall:.1f} s with spawning); weights identical across ranks: {spread == 0.0}; {'ok' if ok else 'FAIL'}")
    return out


PART_FUNCTIONS = {"env": part_env, "sum_check": part_sum_check, "train": part_train,
                  "consistency": part_consistency, "ddp": part_ddp}
TITLES = {"env": "environment", "sum_check": "components sum to g(x) under autocast",
          "train": "kc.train throughput vs a plain PyTorch loop",
          "consistency": "kc.consistency fit / decompose throughput",
          "ddp": "2-process DDP training step"}


# ------------------------------------------------------------------------------------------------
def write_report(path: Path | None, report: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="auto/cuda: the CUDA check (exits 0 saying so when there is no CUDA device); "
                             "cpu: run every part on the CPU (with --quick: to verify the script)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps")
    parser.add_argument("--json", type=Path, default=None, help="write the results here as JSON")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; valid: {', '.join(PARTS)}")
    start = time.perf_counter()
    report: dict = {"device": args.device, "quick": args.quick, "parts": parts}
    if args.device in ("auto", "cuda") and not torch.cuda.is_available():
        message = ("no CUDA device is available: nothing to check (torch "
                   f"{torch.__version__}, built for CUDA {torch.version.cuda}); "
                   "run with --device cpu --quick to verify the script on the CPU")
        print(message)
        report.update(cuda_available=False, skipped=message, ok=True, failures=[], warnings=[])
        write_report(args.json, report)
        return 0
    device = torch.device("cuda" if args.device in ("auto", "cuda") else "cpu")
    sizes = QUICK if args.quick else FULL
    if device.type == "cpu" and args.quick:
        # one thread: on a shared or busy machine OpenMP's spinning threads can slow steps 100-fold
        torch.set_num_threads(1)
    report.update(device=str(device), cuda_available=torch.cuda.is_available())
    failures: list[str] = []
    warnings: list[str] = []
    print(f"kc GPU check on {device}{' (quick sizes)' if args.quick else ''}: {', '.join(parts)}")
    for name in parts:
        print(f"== {name}: {TITLES[name]}")
        t0 = time.perf_counter()
        try:
            result = PART_FUNCTIONS[name](device, sizes, report)
        except Exception as exc:  # keep going: the other parts still tell something
            tb = traceback.format_exc()
            print(tb, end="")
            result = {"error": f"{type(exc).__name__}: {exc}", "traceback": tb,
                      "failures": [f"{name}: {type(exc).__name__}: {exc}"]}
            if device.type == "cuda":
                torch.cuda.empty_cache()
        result["seconds"] = time.perf_counter() - t0
        failures += result.get("failures", [])
        warnings += result.get("warnings", [])
        report[name] = result
        report.update(failures=failures, warnings=warnings, ok=not failures,
                      total_seconds=time.perf_counter() - start)
        write_report(args.json, report)
        print(f"   ({result['seconds']:.1f} s)")
    total = time.perf_counter() - start
    report["total_seconds"] = total
    write_report(args.json, report)
    for w in warnings:
        print(f"WARNING {w}")
    for f in failures:
        print(f"FAILED {f}")
    print(f"{'ok' if not failures else 'FAILED'}: {len(parts)} parts in {total:.1f} s"
          + (f"; results in {args.json}" if args.json else ""))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
