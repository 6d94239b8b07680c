"""Training, pruning, born-again distillation and checkpoints."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import synthetic_images
from kc.models import build
from kc.train import (TrainConfig, apply_masks, evaluate, kd_loss, load_checkpoint, prunable, prune_masks, pruned_fraction,
                      save_checkpoint, train)


def _cfg(**kw):
    base = dict(epochs=1, batch_size=32, lr=0.05, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_training_learns_and_records_history():
    data = synthetic_images()
    torch.manual_seed(0)
    model = build("vgg_s", 4)
    result = train(model, data, data, _cfg(epochs=2), progress=False)
    assert [r["epoch"] for r in result["history"]] == [1, 2]
    assert {"loss", "train_accuracy", "lr", "seconds"} <= set(result["history"][0])
    assert "test_accuracy" not in result["history"][0]           # by default the test set is scored once, at the end
    assert "test_accuracy" in result["history"][1]
    assert result["test_accuracy"] > 0.9                         # an easy planted task
    every = train(build("vgg_s", 4), data, data, _cfg(epochs=2, eval_every=1), progress=False)
    assert all("test_accuracy" in r for r in every["history"])


def test_per_image_evaluation_matches_the_accuracy():
    data = synthetic_images(n=64)
    torch.manual_seed(0)
    model = build("vgg_s", 4)
    train(model, data, None, _cfg(epochs=1), progress=False)
    ev = evaluate(model, data, per_image=True)
    assert ev["correct"].shape == (64,) and ev["correct"].dtype == bool
    assert ev["correct"].mean() == pytest.approx(ev["accuracy"])


def test_same_seed_same_weights():
    """Same seed, same weights: batch order and dropout (vgg_s has it) do not depend on the RNG state."""
    data = synthetic_images(n=96)
    states = []
    for arch in ("resnet_s", "vgg_s"):
        runs = []
        for junk in (0, 5):
            torch.manual_seed(3)
            model = build(arch, 4)
            torch.rand(junk)                       # the global generator moved on differently
            train(model, data, None, _cfg(seed=3), progress=False)
            runs.append(model.state_dict())
        for key in runs[0]:
            assert torch.equal(runs[0][key], runs[1][key]), (arch, key)
        states += runs
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    torch.manual_seed(4)
    other = build("resnet_s", 4)
    assert not torch.equal(other.state_dict()["conv1.weight"], states[0]["conv1.weight"])


def test_pruning_fraction_and_mask_held_through_retraining():
    data = synthetic_images(n=128)
    torch.manual_seed(0)
    model = build("vgg_s", 4)
    train(model, data, None, _cfg(), progress=False)
    weights = {k: w.detach().clone() for k, w in prunable(model).items()}
    masks = prune_masks(model, 1.0)
    expected = sum(int((w.abs() < w.std()).sum()) for w in weights.values()) / sum(w.numel() for w in weights.values())
    apply_masks(model, masks)
    assert pruned_fraction(model) == pytest.approx(expected)
    assert 0.5 < expected < 0.8                                   # about 68 % for bell-shaped weights
    train(model, data, None, _cfg(), masks=masks, progress=False)
    for name, w in prunable(model).items():
        assert torch.equal(w[~masks[name]], torch.zeros_like(w[~masks[name]])), name
        assert not torch.equal(w[masks[name]], weights[name][masks[name]]), name   # survivors retrained
    assert pruned_fraction(model) == pytest.approx(expected)
    with pytest.raises(ValueError, match="threshold"):
        prune_masks(model, -1)


def test_kd_loss_matches_hand_calculation():
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[0.5, 1.5, 1.0], [2.0, 0.0, 1.0]])
    for tau in (1.0, 2.0):
        ps, pt = np.exp(s.numpy() / tau), np.exp(t.numpy() / tau)
        ps, pt = ps / ps.sum(1, keepdims=True), pt / pt.sum(1, keepdims=True)
        expected = (pt * (np.log(pt) - np.log(ps))).sum(1).mean() * tau ** 2
        assert kd_loss(s, t, tau).item() == pytest.approx(expected, rel=1e-6)
    assert kd_loss(s, s).item() == pytest.approx(0.0, abs=1e-7)


def test_distillation_pulls_student_towards_teacher():
    data = synthetic_images(n=128)
    torch.manual_seed(0)
    teacher = build("alexnet_s", 4)
    train(teacher, data, None, _cfg(epochs=2), progress=False)
    x, _ = data.batch(np.arange(64))
    gaps = {}
    for alpha in (0.0, 5.0):
        torch.manual_seed(1)
        student = build("alexnet_s", 4)
        train(student, data, None, _cfg(epochs=2), teacher=teacher, kd_alpha=alpha, progress=False)
        with torch.no_grad():
            gaps[alpha] = kd_loss(student.eval()(x), teacher.eval()(x)).item()
    assert gaps[5.0] < gaps[0.0]


def test_checkpoint_roundtrip_and_errors(tmp_path):
    torch.manual_seed(0)
    model = build("vgg_s", 3).eval()
    path = tmp_path / "net.pt"
    save_checkpoint(path, model, arch="vgg_s", num_classes=3, in_channels=1, config={"task": {"name": "t"}},
                    history=[{"epoch": 1, "loss": 0.5}], test_accuracy=0.5)
    assert not [p for p in tmp_path.iterdir() if p.name != "net.pt"]       # no temporary left behind
    blob = torch.load(path, weights_only=True)
    assert blob["arch"] == "vgg_s" and blob["config"]["task"]["name"] == "t"
    again, meta = load_checkpoint(path)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    assert meta["test_accuracy"] == 0.5
    (tmp_path / "bad.pt").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="bad.pt is not a readable kc checkpoint .*damaged") as err:
        load_checkpoint(tmp_path / "bad.pt")
    assert "weights_only=False" not in str(err.value)          # no advice to load a file of unknown origin unsafely
    blob["arch"] = "resnet_s"
    torch.save(blob, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="does not match architecture 'resnet_s'"):
        load_checkpoint(tmp_path / "mismatch.pt")
    with pytest.raises(FileNotFoundError, match="run the stage"):
        load_checkpoint(tmp_path / "missing.pt")


def test_bad_train_config():
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="unknown key"):
        TrainConfig.from_dict({"epochz": 3})


def test_ddp_two_processes_gloo(tmp_path):
    """torchrun with 2 CPU processes (gloo): both ranks end with the same trained weights."""
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(worker), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    initial = torch.load(tmp_path / "initial.pt", weights_only=True)
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    assert not torch.equal(states[0]["features.block1.conv1.weight"], initial["features.block1.conv1.weight"])
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world_size"] == 2 and 0 <= result["test_accuracy"] <= 1
