"""Feature stores: float16 memmaps written in chunks, training statistics, normalised views."""
import numpy as np
import pytest
import torch

from helpers import synthetic_images
from kc.features import FeatureArray, FeatureStore, extract
from kc.models import build, split


def test_extract_and_read(tmp_path):
    data = synthetic_images(n=70)
    torch.manual_seed(0)
    model = build("vgg_s", 4).eval()
    train, test = data.subset(np.arange(50)), data.subset(np.arange(50, 70))
    splits = {"train": (train, train.labels, np.arange(50)), "test": (test, test.labels, np.arange(50, 70))}
    meta = extract(model, ["conv3_3", "conv1_2"], splits, tmp_path / "store", meta={"net": "n"}, batch_size=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]          # atomic: no temporary left
    store = FeatureStore(tmp_path / "store")
    assert store.layers == ["conv3_3", "conv1_2"] and meta["counts"] == {"train": 50, "test": 20}
    raw = np.load(tmp_path / "store" / "conv3_3" / "train.npy", mmap_mode="r")
    assert raw.dtype == np.float16 and raw.shape == (50, 32, 7, 7)
    lower, _ = split(model, "conv3_3")
    with torch.no_grad():
        ref = lower(train.batch(np.arange(50))[0])
    torch.testing.assert_close(torch.from_numpy(np.asarray(raw, dtype=np.float32)), ref, rtol=1e-3, atol=1e-3)
    info = store.meta["layers"]["conv3_3"]
    assert info["mean"] == pytest.approx(float(ref.double().mean()), rel=1e-3)
    assert info["std"] == pytest.approx(float(ref.double().std(unbiased=False)), rel=1e-3)
    np.testing.assert_allclose(info["channel_mean"], ref.double().mean((0, 2, 3)).numpy(), rtol=1e-3, atol=1e-4)
    x = store.array("conv3_3", "train")
    assert x.shape == (50, 32, 7, 7)
    normed = x[np.arange(50)]
    assert float(normed.mean()) == pytest.approx(0.0, abs=1e-3) and float(normed.std(unbiased=False)) == pytest.approx(1.0, rel=1e-3)
    torch.testing.assert_close(x.denormalise(normed), x.raw(np.arange(50)), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(store.labels("test"), test.labels)
    np.testing.assert_array_equal(store.index("test"), np.arange(50, 70))


def test_feature_array_rows_order_and_resize(tmp_path):
    arr = np.random.default_rng(0).normal(size=(10, 3, 4, 4)).astype(np.float16)
    np.save(tmp_path / "a.npy", arr)
    x = FeatureArray(tmp_path / "a.npy", mean=1.0, std=2.0, rows=np.array([5, 2, 7]))
    got = x[np.array([2, 0])]
    expected = (torch.from_numpy(arr[[7, 5]].astype(np.float32)) - 1.0) / 2.0
    torch.testing.assert_close(got, expected)
    small = x.resized((2, 2))
    assert small.shape == (3, 3, 2, 2) and small[np.array([0])].shape == (1, 3, 2, 2)
    assert x.subset([1]).shape == (1, 3, 4, 4)


def test_float16_overflow_is_refused(tmp_path):
    data = synthetic_images(n=8)
    model = build("vgg_s", 4).eval()
    with torch.no_grad():
        model.features.block1.conv1.weight.mul_(1e6)
    with pytest.raises(ValueError, match="float16's range"):
        extract(model, ["conv1_1"], {"train": (data, data.labels, np.arange(8))}, tmp_path / "s", batch_size=8)
    assert not list(tmp_path.iterdir())
