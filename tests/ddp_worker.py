"""Run by test_train.test_ddp_two_processes_gloo under torchrun: train one epoch with DDP on CPU."""
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from helpers import synthetic_images
from kc.models import build
from kc.train import TrainConfig, init_distributed, is_main_process, train

out = Path(sys.argv[1])
rank, world = init_distributed()
torch.manual_seed(0)
model = build("vgg_s", 4)
if is_main_process():
    torch.save(model.state_dict(), out / "initial.pt")
data = synthetic_images(n=128)
result = train(model, data, data, TrainConfig(epochs=1, batch_size=16, lr=0.05, device="cpu"), progress=False)
torch.save(model.state_dict(), out / f"rank{rank}.pt")
if is_main_process():
    (out / "result.json").write_text(json.dumps({"world_size": result["world_size"],
                                                 "test_accuracy": result["test_accuracy"]}))
dist.destroy_process_group()
