"""Supervised training from scratch, magnitude pruning, born-again distillation, checkpoints.

These make every network the paper compares (Section 4): nets from different seeds (Case 1) and
half splits (Case 2), pruned nets (4.4, Han et al. 2016), born-again generations (4.5, Furlanello
et al. 2018, with footnote 3's loss: CE + 0.5 KD at τ = 1), and cross-task nets (4.6)::

    torch.manual_seed(0); model = build("vgg_s", 10)
    result = train(model, task.load("train"), task.load("test"), TrainConfig(epochs=3))
    result["test_accuracy"]                       # ~0.88 on Fashion-MNIST (12k images, 3 epochs)
    masks = prune_masks(model, threshold=1.0)     # |w| < 1.0 * std(w) of each conv/linear layer removed
    train(model, ..., masks=masks)                # retrain the survivors, pruned weights held at zero

On CUDA: mixed precision (bf16 where supported, else fp16 with a gradient scaler) and channels-last.
Started by ``torchrun`` (WORLD_SIZE > 1), training runs under DistributedDataParallel (NCCL on CUDA,
gloo on CPU), each rank on a disjoint shard of the same seeded permutation.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from kc.io import atomic_torch_save
from kc.util import autocast, resolve_device
from kc.util import progress_bar as _tqdm
from kc.util import show_progress as _progress

SCHEDULES = ("cosine", "step", "constant")
CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    """The recipe: SGD with momentum and a learning-rate schedule (per step), no augmentation."""
    epochs: int = 3
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"          # cosine | step (x0.1 at 50 % and 75 %) | constant
    seed: int = 0                     # order of the training batches and dropout masks
    eval_batch_size: int = 512
    eval_every: int = 0               # test accuracy every N epochs (0: after the last epoch only)
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    amp: bool = True                  # mixed precision on CUDA
    channels_last: bool = True        # on CUDA

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(f"eval_every must be an integer >= 0, got {self.eval_every!r}")
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")

    @classmethod
    def from_dict(cls, data: dict, where: str = "train") -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(known))}")
        return cls(**data)


# ------------------------------------------------------------------------------------------------
# Distributed helpers
# ------------------------------------------------------------------------------------------------
def init_distributed() -> tuple[int, int]:
    """(rank, world_size); starts the process group when launched by torchrun with WORLD_SIZE > 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def _device(cfg: TrainConfig) -> torch.device:
    device = resolve_device(cfg.device)
    if device.type == "cuda" and dist.is_initialized():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def _all_sum(values: list[float], device: torch.device) -> list[float]:
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# ------------------------------------------------------------------------------------------------
# Losses
# ------------------------------------------------------------------------------------------------
def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Hinton et al.'s soft-target loss: τ² · KL(softmax(t/τ) || softmax(s/τ)), averaged over the batch."""
    log_p_student = F.log_softmax(student_logits.float() / tau, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / tau, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * tau * tau


# ------------------------------------------------------------------------------------------------
# Pruning (Han et al. 2016)
# ------------------------------------------------------------------------------------------------
def prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weights magnitude pruning acts on: every convolution's and linear layer's weight."""
    return {f"{name}.weight": m.weight for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))}


def prune_masks(model: nn.Module, threshold: float) -> dict[str, torch.Tensor]:
    """Keep-masks: in each layer, weights with |w| < threshold · std(w of that layer) are removed."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold >= 0:
        raise ValueError(f"threshold must be a number >= 0 (a multiple of each layer's weight std), got {threshold!r}")
    return {name: (w.detach().abs() >= threshold * w.detach().std()) for name, w in prunable(model).items()}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].device, params[name].dtype))


def pruned_fraction(model: nn.Module) -> float:
    """The fraction of prunable weights that are exactly zero."""
    weights = prunable(model).values()
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / total


# ------------------------------------------------------------------------------------------------
# Training and evaluation
# ------------------------------------------------------------------------------------------------
def _lr_factor(schedule: str, step: int, total: int) -> float:
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / total))
    if schedule == "step":
        return 0.01 if step >= 0.75 * total else 0.1 if step >= 0.5 * total else 1.0
    return 1.0


@torch.no_grad()
def evaluate(model: nn.Module, data, batch_size: int = 512, device: str | torch.device = "cpu",
             amp: bool = True, per_image: bool = False) -> dict:
    """Top-1 accuracy and mean cross-entropy of ``model`` on an ImageSet (sharded under DDP).

    ``per_image``: also ``"correct"``, a bool array with one entry per image in the set's order
    (single process only), for paired comparisons of classifiers on the same test images.
    """
    device = torch.device(device)
    sharded = dist.is_initialized() and dist.get_world_size() > 1
    if per_image and sharded:
        raise ValueError("per_image evaluation runs in one process (call it on rank 0 outside DDP)")
    if sharded:
        data = data.subset(np.arange(dist.get_rank(), len(data), dist.get_world_size()))
    was = model.training
    model.eval()
    correct = loss = count = 0.0
    hits = []
    for x, y in data.batches(batch_size):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x)
        loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        hit = logits.argmax(1) == y
        correct += float(hit.sum())
        count += len(y)
        if per_image:
            hits.append(hit.cpu().numpy())
    model.train(was)
    correct, loss, count = _all_sum([correct, loss, count], device)
    out = {"accuracy": correct / count, "loss": loss / count}
    if per_image:
        out["correct"] = np.concatenate(hits) if hits else np.zeros(0, dtype=bool)
    return out


def train(model: nn.Module, train_set, test_set=None, cfg: TrainConfig | None = None, *,
          teacher: nn.Module | None = None, kd_alpha: float = 0.5, kd_tau: float = 1.0,
          masks: dict[str, torch.Tensor] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Train ``model`` in place on an ImageSet; returns {"history": [per-epoch rows], "test_accuracy", ...}.

    ``teacher``: born-again distillation, loss = CE + kd_alpha · kd_loss(τ = kd_tau) (footnote 3).
    ``masks``: pruned retraining; after every step the removed weights are set back to zero.
    Rows: epoch, lr, loss, train_accuracy, seconds, and test_accuracy/test_loss with a test set.
    """
    cfg = cfg or TrainConfig()
    rank, world = init_distributed()
    # Dropout draws from torch's global generator, whose start seed differs per process: seed it so
    # that a run is reproducible (a different stream per rank under DDP).
    torch.manual_seed(cfg.seed + 1_000_003 * rank)
    device = _device(cfg)
    use_amp = cfg.amp and device.type == "cuda"
    memory_format = torch.channels_last if device.type == "cuda" and cfg.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format).train()
    if teacher is not None:
        teacher.to(device, memory_format=memory_format).eval()
    if masks is not None:
        masks = {k: m.to(device) for k, m in masks.items()}
        apply_masks(model, masks)
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on biases and norm scales
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, momentum=cfg.momentum)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported()) \
        if device.type == "cuda" else None
    steps_per_epoch = -(-len(train_set) // (cfg.batch_size * world))
    total = max(1, cfg.epochs * steps_per_epoch)
    show = _progress(progress) and rank == 0
    history, step = [], 0
    for epoch in _tqdm(range(1, cfg.epochs + 1), show, desc="epochs"):
        t0 = time.perf_counter()
        sums = [0.0, 0.0, 0.0]  # loss * n, correct, n
        batches = train_set.batches(cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch,
                                    rank=rank, world_size=world)
        for x, y in _tqdm(batches, show, desc=f"epoch {epoch}", total=steps_per_epoch, leave=False):
            for group in opt.param_groups:
                group["lr"] = cfg.lr * _lr_factor(cfg.schedule, step, total)
            x = x.to(device, non_blocking=True, memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            with autocast(device, bool(use_amp)):
                logits = net(x)
                loss = F.cross_entropy(logits.float(), y)
                if teacher is not None:
                    with torch.no_grad():
                        soft = teacher(x)
                    loss = loss + kd_alpha * kd_loss(logits, soft, kd_tau)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}, step {step}: "
                                         f"lower lr (now {cfg.lr})")
            opt.zero_grad(set_to_none=True)
            if scaler is not None and scaler.is_enabled():
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            if masks is not None:
                apply_masks(model, masks)
            n = len(y)
            sums[0] += float(loss.detach()) * n
            sums[1] += float((logits.argmax(1) == y).sum())
            sums[2] += n
            step += 1
        loss_sum, correct, count = _all_sum(sums, device)
        row = {"epoch": epoch, "lr": cfg.lr * _lr_factor(cfg.schedule, step, total),
               "loss": loss_sum / count, "train_accuracy": correct / count}
        if test_set is not None and (epoch == cfg.epochs or (cfg.eval_every and epoch % cfg.eval_every == 0)):
            ev = evaluate(model, test_set, cfg.eval_batch_size, device, use_amp)
            row.update(test_accuracy=ev["accuracy"], test_loss=ev["loss"])
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
    if world > 1:  # running statistics (batch norm) are per rank: take rank 0's, as its checkpoint does
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
    model.eval()
    result: dict[str, Any] = {"history": history, "config": asdict(cfg), "world_size": world}
    if test_set is not None:
        result["test_accuracy"] = history[-1]["test_accuracy"]
        result["test_loss"] = history[-1]["test_loss"]
    return result


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------
def save_checkpoint(path, model: nn.Module, *, arch: str, num_classes: int, in_channels: int,
                    config: dict | None = None, **extra) -> None:
    """Weights + architecture + number of classes + the training config, written atomically.

    Everything is plain tensors, numbers, strings, lists and dicts: loads with weights_only=True.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if "history" in extra:  # wall-clock seconds would make the same weights hash differently
        extra["history"] = [{k: v for k, v in row.items() if k != "seconds"} for row in extra["history"]]
    blob = {"kc_checkpoint": CHECKPOINT_VERSION, "arch": arch, "num_classes": int(num_classes),
            "in_channels": int(in_channels), "state_dict": state, "config": config or {}, **extra}
    atomic_torch_save(blob, path)


def load_checkpoint(path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode, the checkpoint's other fields); clear errors for bad or mismatched files."""
    from kc.models import build

    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint {path} does not exist (run the stage that trains it)") from None
    except Exception as exc:  # truncated, not a torch file, or content weights_only refuses
        # torch's own message may advise weights_only=False (unsafe on a file of unknown origin): not passed on
        raise ValueError(f"checkpoint {path} is not a readable kc checkpoint ({type(exc).__name__}); it is damaged "
                         "or not kc's: `dvc repro` rebuilds a pipeline output (or delete it and rerun its stage)") from None
    required = ("kc_checkpoint", "arch", "num_classes", "in_channels", "state_dict")
    if not isinstance(blob, dict) or any(k not in blob for k in required):
        raise ValueError(f"checkpoint {path} is not a kc checkpoint (needs keys {', '.join(required)})")
    model = build(blob["arch"], blob["num_classes"], blob["in_channels"])
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path} does not match architecture {blob['arch']!r} with "
                         f"{blob['num_classes']} classes: {str(exc).splitlines()[0]}") from None
    model.eval()
    return model, {k: v for k, v in blob.items() if k != "state_dict"}
