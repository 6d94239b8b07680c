"""kc.compare on planted models whose answer is known, its figures, saving, splicing and the CLI.

Tiny nets (8 channels, 12 px) and few images: the whole file runs in well under a minute on 2 cores.
"""
import copy
import io
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import kc
from kc.compare import Comparison
from kc.consistency import ConsistencyNet
from kc.models import build, splice

FIT = dict(epochs=30, lr=3e-2, progress=False)   # tiny fits converge in a few hundred steps


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions: one thread is fastest, and on shared cores 2 threads can be 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _base(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 8, 3, padding=1)), ("relu1", nn.ReLU()), ("pool", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(8, 8, 3, padding=1)), ("relu2", nn.ReLU()),
        ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(8, 3))])).eval()


def _permuted(model, seed=1):
    """Footnote 1: shuffle conv1's channels and un-shuffle them in conv2's weights; outputs unchanged."""
    p = copy.deepcopy(model)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(seed))
    assert not torch.equal(perm, torch.arange(8))
    with torch.no_grad():
        p.conv1.weight.copy_(model.conv1.weight[perm])
        p.conv1.bias.copy_(model.conv1.bias[perm])
        p.conv2.weight.copy_(model.conv2.weight[:, perm])
    return p


class Noise(nn.Module):
    def forward(self, x):
        return torch.randn_like(x)


def _mixed(model):
    """model's layers up to relu2, then a fixed random 1x1 conv ("mix": linear in relu2), then noise."""
    torch.manual_seed(5)
    layers = OrderedDict(list(copy.deepcopy(model).named_children())[:5])
    layers["mix"] = nn.Conv2d(8, 8, 1, bias=False)
    layers["noise"] = Noise()
    return nn.Sequential(layers).eval()


def _images(n=96, seed=0):
    return torch.rand(n, 1, 12, 12, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def permuted_comparison():
    a = _base()
    p = _permuted(a)
    x = _images()
    labels = torch.arange(len(x)) % 3
    # a permutation is a 1x1 map: with kernel_size=1 an unrelated net is far from it (control below)
    cmp = kc.compare(a, p, (x, labels), ["relu1", "relu2"], ["relu1", "relu2"], kernel_size=1, **FIT)
    yield a, p, x, cmp
    cmp.close()


def _row(cmp, la, lb, d="a->b"):
    return cmp.row(la, lb, d)


def test_permuted_copy_is_consistent(permuted_comparison):
    a, p, x, cmp = permuted_comparison
    with torch.no_grad():
        assert torch.allclose(a(x), p(x), atol=1e-5)                     # the same function
        assert not torch.allclose(a[:2](x), p[:2](x))                    # different relu1 maps
    for layer in ("relu1", "relu2"):
        for d in ("a->b", "b->a"):
            r = _row(cmp, layer, layer, d)
            assert r["delta_ratio"] < 0.05, (layer, d, r["delta_ratio"])
            assert r["delta_ratio_low"] <= r["delta_ratio"] <= r["delta_ratio_high"]
            assert r["cka"] > 0.99
    assert len(cmp.table) == 8 and set(cmp.table.direction) == {"a->b", "b->a"}
    # control: an unrelated net of the same shape leaves a clear residual on the same layers
    with kc.compare(a, _base(7), x, ["relu1", "relu2"], ["relu1", "relu2"], directions="a->b", kernel_size=1,
                    **FIT) as other:
        for layer in ("relu1", "relu2"):
            assert _row(other, layer, layer)["delta_ratio"] > 0.1
    # the source is resized: relu2 (4x4... 6x6) -> relu1 (12x12)
    r = _row(cmp, "relu2", "relu1")
    assert r["resized"] and r["source_shape"] == "8x6x6" and r["target_shape"] == "8x12x12"


def test_linear_map_is_order_zero_and_noise_is_residual():
    a = _base()
    m = _mixed(a)
    with kc.compare(a, m, _images(), ["relu2"], ["mix", "noise"], directions="a->b", **FIT) as cmp:
        store = Path(cmp._store)
        assert store.is_dir()                     # the temporary feature store, removed on exit
        lin, noise = _row(cmp, "relu2", "mix"), _row(cmp, "relu2", "noise")
        assert lin["delta_ratio"] < 0.05 and lin["var_x0"] > 0.9 * lin["var_target"], lin
        assert lin["linear_predictivity"] > 0.95
        assert noise["delta_ratio"] > 0.8, noise
        assert noise["linear_predictivity"] < 0.2 and abs(noise["cka"]) < 0.3
        assert list(cmp.table.direction.unique()) == ["a->b"]
    assert not store.exists()


def test_heatmap_and_residual_map(permuted_comparison):
    from PIL import Image
    _, _, x, cmp = permuted_comparison
    for fig in (cmp.heatmap(), cmp.heatmap(order="delta", direction="b->a"),
                cmp.residual_map("relu1", "relu2").figure()):
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        data = buf.getvalue()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    fig = cmp.heatmap()
    assert len(fig.axes) == 2 * (cmp.K + 2) * 2  # panels + colour bars, two directions
    rm = cmp.residual_map("relu2", "relu1", top_k=3)
    n_hold = len(cmp.heldout)
    assert rm.energy.shape == (n_hold, 12, 12) and len(rm.top) == 3
    assert set(rm.top) <= set(cmp.heldout.tolist())
    assert rm.per_image[np.searchsorted(cmp.heldout, rm.top[0])] == rm.per_image.max()
    assert torch.equal(cmp.image(int(rm.top[0])), x[int(rm.top[0])].half().float())
    pc = rm.per_class
    assert set(pc["label"]) == {0, 1, 2} and pc["images"].sum() == n_hold
    with pytest.raises(ValueError, match="order"):
        cmp.heatmap(order=7)


def test_wrapped_and_tuple_models_and_pooling():
    class Pair(nn.Module):              # a node whose value is a tuple
        def forward(self, x):
            return x, x.mean()

    class TupleNet(nn.Module):          # the model returns a tuple
        def __init__(self):
            super().__init__()
            self.body = _base(3)
            self.pair = Pair()

        def forward(self, x):
            f, _ = self.pair(self.body[:5](x))
            return self.body[5:](f), f

    a, b = nn.DataParallel(_base()), TupleNet().eval()
    x = _images(40)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(40, dtype=torch.long)),
                                         batch_size=16, shuffle=True)
    with kc.compare(a, b, loader, ["relu2"], ["pair", "body.fc"], epochs=2, progress=False) as cmp:
        t = cmp.table
        assert len(t) == 4 and np.isfinite(t.delta_ratio).all()
        assert set(t[t.layer_b == "pair"].spatial) == {"map"} and set(t[t.layer_b == "body.fc"].spatial) == {"pool"}
        assert _row(cmp, "relu2", "body.fc")["target_shape"] == "3"
        assert cmp.g("relu2", "body.fc").kernel_size == 1
    dataset = torch.utils.data.TensorDataset(x)         # a Dataset of 1-tuples, no labels
    with kc.compare(a, b, dataset, ["relu2"], ["pair"], spatial="pool", directions="b->a", epochs=1,
                    progress=False) as cmp:
        assert cmp.table.spatial.tolist() == ["pool"] and cmp.labels is None


def test_bad_layers_and_too_little_data():
    model = build("vgg_s", 4)
    x = torch.randn(40, 1, 28, 28)
    with pytest.raises(ValueError, match=r"unknown layer 'conv9'.*conv4_3.*features\.block1"):
        kc.compare(model, model, x, ["conv9"], ["conv4_3"])
    with pytest.raises(ValueError, match="layers_a is required.*conv1"):
        kc.compare(_base(), model, x, None, ["conv4_3"])
    with pytest.raises(ValueError, match="too few images.*4 held-out"):
        kc.compare(model, model, x[:9], ["conv3_3"], ["conv4_3"])
    with pytest.raises(ValueError, match="too few images"):   # a loader: known only after the pass
        kc.compare(model, model, torch.utils.data.DataLoader(x[:6], batch_size=4), ["conv3_3"], ["conv4_3"])
    with pytest.raises(ValueError, match="directions"):
        kc.compare(model, model, x, ["conv3_3"], ["conv4_3"], directions="up")


def test_save_load_round_trip(permuted_comparison, tmp_path):
    a, p, x, cmp = permuted_comparison
    cmp.save(tmp_path / "cmp")
    assert {f.name for f in (tmp_path / "cmp").iterdir()} >= {"table.csv", "meta.json", "g", "residual", "images.npy"}
    back = Comparison.load(tmp_path / "cmp")
    text = ["layer_a", "layer_b", "direction", "source_shape", "target_shape", "spatial"]
    assert back.table[text].equals(cmp.table[text])
    numbers = ["delta_ratio", "delta_ratio_low", "delta_ratio_high", "cka", "linear_predictivity", "share_x0", "p1"]
    assert np.allclose(back.table[numbers].to_numpy(float), cmp.table[numbers].to_numpy(float), rtol=1e-12)
    for key in [("relu1", "relu1", "a->b"), ("relu2", "relu1", "b->a")]:
        g0, g1 = cmp.g(*key), back.g(*key)
        assert all(torch.equal(u, v) for u, v in zip(g0.state_dict().values(), g1.state_dict().values()))
        r0, r1 = cmp.residual_map(*key), back.residual_map(*key)
        assert np.array_equal(r0.energy, r1.energy) and np.array_equal(r0.top, r1.top)
        assert r0.per_class.equals(r1.per_class)
    i = int(back.heldout[0])
    assert torch.equal(back.image(i), cmp.image(i))
    with pytest.raises(ValueError, match="model_a"):
        back.spliced("relu1", "relu1")
    s = back.spliced("relu1", "relu1", model_a=a, model_b=p)
    with torch.no_grad():
        out, ref = s(x[:8]), p(x[:8])
    assert out.shape == ref.shape and (out - ref).abs().mean() < 0.2 * ref.abs().mean() + 0.05


def test_splice_with_identity_g_is_exact():
    model = build("vgg_s", 5).eval()
    x = torch.randn(3, 1, 28, 28)
    g = ConsistencyNet(32, 32, K=0, kernel_size=1)
    with torch.no_grad():
        g.weights[0].weight.copy_(torch.eye(32)[:, :, None, None])
    s = splice(model, "conv3_3", g, model, "conv3_3", source_stats=(0.7, 2.5), target_stats=(0.7, 2.5))
    with torch.no_grad():
        assert torch.allclose(s(x), model(x), atol=1e-5)
        # resizing the source to another size changes the answer (the size argument is applied)
        s2 = splice(model, "conv3_3", g, model, "conv2_2", size=(7, 7))
        assert s2(x).shape == model(x).shape


def test_cli_on_checkpoints(tmp_path, capsys):
    from kc.cli import main
    from kc.train import save_checkpoint
    for name, arch, seed in (("a", "vgg_s", 0), ("b", "resnet_s", 1)):
        torch.manual_seed(seed)
        save_checkpoint(tmp_path / f"{name}.pt", build(arch, 4), arch=arch, num_classes=4, in_channels=1)
    data = tmp_path / "tiny"
    data.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 40)):
        np.save(data / f"{split}_images.npy", rng.integers(0, 255, (n, 1, 28, 28), dtype=np.uint8))
        np.save(data / f"{split}_labels.npy", np.arange(n, dtype=np.int64) % 4)
    (data / "meta.json").write_text(json.dumps({
        "source": "fake", "classes": ["c0", "c1", "c2", "c3"], "channels": 1, "image_size": 28,
        "counts": {"train": 8, "test": 40}, "mean": [0.5], "std": [0.29]}))
    out = tmp_path / "out"
    args = ["compare", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--data", str(data), "--layers-a",
            "conv3_3,conv4_3", "--layers-b", "layer4", "--out", str(out), "--images", "32", "--epochs", "1"]
    assert main(args) == 0
    for f in ("table.csv", "heatmap.png", "summary.md", "meta.json"):
        assert (out / f).is_file(), f
    assert (out / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "summary.md").read_text()
    assert "Best explained" in summary and "Worst explained" in summary and "conv4_3" in summary
    assert len(Comparison.load(out).table) == 4
    capsys.readouterr()
    assert main(args[:5] + ["--layers-a", "conv9", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kc: error: argument --layers-a: unknown layer 'conv9'") and "\n" not in err
    assert main(["compare", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--out", str(out)]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(args[:3] + ["--data", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("kc: error: argument --data:")
