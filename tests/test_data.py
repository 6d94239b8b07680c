"""Tests of kc.data: readers on tiny fake on-disk layouts, prepare, prepared arrays, tasks, splits."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kc import data as D
from kc.data import fake
from kc.data.fake import GREY, write_idx, write_image

RED, GREEN, BLUE = (220, 20, 30), (10, 200, 40), (30, 40, 210)
YELLOW, CYAN, MAGENTA = (230, 220, 10), (10, 210, 220), (200, 10, 190)
WHITE = (255, 255, 255)


def colours(t: torch.Tensor) -> set[tuple[int, ...]]:
    """The distinct pixel colours of a (C, H, W) uint8 tensor."""
    return set(map(tuple, t.permute(1, 2, 0).reshape(-1, t.shape[0]).tolist()))


# ---------------------------------------------------------------------------
# fake datasets (written by kc.data.fake; PNG content under the official .jpg names: exact pixels)
# ---------------------------------------------------------------------------

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
CUB_COLOURS = [RED, GREEN, BLUE]


def make_cub(base: Path, train_per_class=4, test_per_class=1) -> Path:
    """CUB-200-2011 layout inside base/CUB_200_2011; returns base. Box colour = class colour."""
    images, k = [], 0
    for c, name in enumerate(CUB_CLASSES):
        for j in range(train_per_class + test_per_class):
            k += 1
            x, y, w, h = 2 + j, 3 + c, 12, 12  # square: image_size=12 means no resize, an exact crop
            if k == 2:  # a box running off the image: must be clamped
                x, y, w, h = 30, 20, 50.5, 40.25
            images.append(fake.FakeImage(f"{name.split('.')[1]}_{j:04d}", [fake.FakeObject(c, (x, y, x + w, y + h))],
                                         "train" if j < train_per_class else "test", size=(40, 30)))
    fake.write_cub_layout(base, CUB_CLASSES, images, fmt="PNG", colours=CUB_COLOURS)
    return base


@pytest.fixture
def cub(tmp_path):
    return make_cub(tmp_path / "cub")


DOG_FOLDERS = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02086240-Shih-Tzu"]
DOG_COLOURS = [RED, GREEN, BLUE]


@pytest.fixture
def dogs(tmp_path):
    """Stanford Dogs layout; each image has two objects, the first one's box in the class colour."""
    root = tmp_path / "dogs"
    images, train_list = [], []
    for c, folder in enumerate(DOG_FOLDERS):
        wnid = folder.split("-")[0]
        for j in range(3):
            stem = f"{wnid}_{100 + j}"
            box = (4 + j, 5, 17 + j, 18)  # 13x13
            second = fake.FakeObject(c, (30, 20, 40, 30), colour=YELLOW)  # must not be the crop
            images.append(fake.FakeImage(stem, [fake.FakeObject(c, box), second], "train" if j < 2 else "test",
                                         size=(40, 30)))
            if j < 2:
                train_list.append((f"{folder}/{stem}.jpg", f"{folder}/{stem}", c + 1))
    # writes the lists like the official files: (N, 1) cells of 1-element string arrays ...
    fake.write_stanford_dogs_layout(root, DOG_FOLDERS, images, fmt="PNG", colours=DOG_COLOURS)
    # ... then the train list again as savemat writes a 1-D object array of strings, with uint8 labels
    fake.write_dogs_list(root / "train_list.mat", train_list, style="flat", label_dtype=np.uint8)
    return root


# image id -> [(class, difficult, 1-based inclusive box, colour)]
VOC_IMAGES = {
    "2008_000001": [("dog", False, (3, 4, 12, 15), RED), ("cat", False, (20, 5, 35, 20), GREEN),
                    ("bird", True, (5, 20, 15, 28), BLUE)],
    "2008_000002": [("sheep", False, (1, 1, 40, 30), YELLOW)],
    "2008_000003": [("horse", False, (10, 10, 25, 25), CYAN), ("person", True, (1, 1, 5, 5), MAGENTA)],
}


@pytest.fixture
def voc(tmp_path):
    base = tmp_path / "voc"
    images = [
        fake.FakeImage(image_id, [fake.FakeObject(D.VOC_CLASSES.index(n), (x0 - 1, y0 - 1, x1, y1), colour=col,
                                                  difficult=d, outline=WHITE if col == CYAN else None)
                                  for n, d, (x0, y0, x1, y1), col in objs],  # 1-based inclusive -> PIL box
                       "test" if image_id == "2008_000003" else "train", size=(40, 30))
        for image_id, objs in VOC_IMAGES.items()]
    fake.write_voc2012_layout(base, images, fmt="PNG")  # CYAN: a white one-pixel frame on its box's border
    return base


@pytest.fixture
def imagefolder(tmp_path):
    root = tmp_path / "folder"
    write_image(root / "train" / "dog" / "a.png", (0, 0, 20, 30), RED)  # half red, half grey
    write_image(root / "train" / "dog" / "b.JPG", None, bg=(200, 100, 50), fmt="JPEG")  # a real JPEG
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    write_image(root / "train" / "cat" / "c.bmp", None, bg=GREEN, fmt="BMP")
    write_image(root / "val" / "cat" / "d.png", None, bg=BLUE)
    return root


@pytest.fixture
def fake_fmnist(tmp_path):
    """Four tiny IDX files: image i of a split is constant 10*i + label."""
    return fake.write_fashion_mnist(tmp_path / "fm", train=12, test=5)


def fake_prepared(path: Path, classes, train_counts, test_counts, *, channels=3, size=4, value=0,
                  source="fake") -> D.Prepared:
    """A prepared folder whose image pixels are value + row index (mod 256), labels by counts."""
    path.mkdir(parents=True)
    stats = None
    for split, counts in (("train", train_counts), ("test", test_counts)):
        labels = np.repeat(np.arange(len(classes)), counts).astype(np.int64)
        n = len(labels)
        rng = np.random.default_rng(value + len(split))
        imgs = rng.integers(0, 256, size=(n, channels, size, size), dtype=np.uint8)
        imgs[:, 0, 0, 0] = (value + np.arange(n)) % 256  # identifies the row
        np.save(path / f"{split}_images.npy", imgs)
        np.save(path / f"{split}_labels.npy", labels)
        if split == "train":
            x = imgs / 255.0
            stats = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))
    meta = {"source": source, "root": str(path), "classes": list(classes), "channels": channels,
            "image_size": size, "counts": {"train": int(sum(train_counts)), "test": int(sum(test_counts))},
            "mean": stats[0].tolist(), "std": stats[1].tolist(), "seed": 0, "max_train": None,
            "max_test": None, "skip_difficult": True}
    (path / "meta.json").write_text(json.dumps(meta))
    return D.load_prepared(path)


# ---------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------


def test_slug():
    assert D.slug("T-shirt/top") == "t_shirt_top"
    assert D.slug("Ankle boot") == "ankle_boot"
    assert D.slug("  --Black_footed  Albatross!") == "black_footed_albatross"


def test_open_source_rejects_unknown_source_and_split(cub):
    with pytest.raises(ValueError) as e:
        D.open_source("imagenet", cub, "train")
    for name in ("fashion_mnist", "cub200", "stanford_dogs", "voc2012_objects", "imagefolder"):
        assert name in str(e.value)
    with pytest.raises(ValueError, match="train, test"):
        D.open_source("cub200", cub, "val")


def test_cub_crops_labels_and_official_split(cub):
    train = D.open_source("cub200", cub, "train", image_size=12)  # root holding CUB_200_2011/
    test = D.open_source("cub200", cub / "CUB_200_2011", "test", image_size=12)
    assert train.classes == ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross"]
    assert train.labels.dtype == np.int64 and train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert test.labels.tolist() == [0, 1, 2]
    assert (len(train), len(test), train.channels, train.image_size) == (12, 3, 3, 12)
    for ds in (train, test):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.dtype == torch.uint8 and x.shape == (3, 12, 12)
            assert y == ds.labels[i]
            assert colours(x) == {CUB_COLOURS[y]}, (ds.split, i)  # only the box colour survives
    assert D.open_source("cub200", cub, "train").image_size == 224


def test_cub_missing_and_malformed_index_files(cub):
    root = cub / "CUB_200_2011"
    (root / "bounding_boxes.txt").rename(root / "bb.txt")
    with pytest.raises(D.DataError) as e:
        D.open_source("cub200", cub, "train")
    assert "bounding_boxes.txt" in str(e.value) and "cub_200_2011" in str(e.value)
    assert isinstance(e.value, ValueError)
    (root / "bb.txt").rename(root / "bounding_boxes.txt")
    with open(root / "image_class_labels.txt", "a") as f:
        f.write("99 not-a-number\n")
    with pytest.raises(D.DataError, match=r"line 16 in .*image_class_labels\.txt"):
        D.open_source("cub200", cub, "test")


def test_stanford_dogs_reads_mat_lists_and_crops_first_object(dogs):
    train = D.open_source("stanford_dogs", dogs, "train", image_size=13)  # no resize: exact crop
    test = D.open_source("stanford_dogs", dogs, "test", image_size=16)
    assert train.classes == ["Chihuahua", "Japanese_spaniel", "Shih-Tzu"]
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert test.labels.tolist() == [0, 1, 2] and test.classes == train.classes
    for ds in (train, test):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (3, ds.image_size, ds.image_size) and colours(x) == {DOG_COLOURS[y]}


def test_stanford_dogs_errors(dogs):
    (dogs / "test_list.mat").unlink()
    with pytest.raises(D.DataError, match=r"test_list\.mat.*ImageNetDogs"):
        D.open_source("stanford_dogs", dogs, "test")
    ds = D.open_source("stanford_dogs", dogs, "train", image_size=8)
    (dogs / "Annotation" / DOG_FOLDERS[0] / "n02085620_100").unlink()
    with pytest.raises(D.DataError, match="n02085620_100"):
        ds[0]


def test_voc_objects_split_difficult_and_crops(voc):
    train = D.open_source("voc2012_objects", voc, "train", image_size=16)
    assert train.classes == D.VOC_CLASSES and len(D.VOC_CLASSES) == 20
    names = [D.VOC_CLASSES[k] for k in train.labels]
    assert names == ["dog", "cat", "sheep"]  # two objects of image 1 -> two samples; difficult bird dropped
    expected = [RED, GREEN, YELLOW]
    for i in range(len(train)):
        x, _ = train[i]
        assert colours(x) == {expected[i]}
    kept = D.open_source("voc2012_objects", voc / "VOCdevkit" / "VOC2012", "train",
                         image_size=16, skip_difficult=False)
    assert [D.VOC_CLASSES[k] for k in kept.labels] == ["dog", "cat", "bird", "sheep"]
    assert colours(kept[2][0]) == {BLUE}
    test = D.open_source("voc2012_objects", voc, "test", image_size=16)  # val.txt; 16x16 box: no resize
    assert [D.VOC_CLASSES[k] for k in test.labels] == ["horse"]
    x = test[0][0]  # exact crop: the frame is the outermost ring, the inside is CYAN, no grey
    assert colours(x[:, 1:-1, 1:-1]) == {CYAN}
    assert colours(x[:, [0, -1], :]) == {WHITE} and colours(x[:, :, [0, -1]]) == {WHITE}
    assert D.open_source("voc2012_objects", voc, "test", skip_difficult=False).labels.tolist() == [12, 14]


def test_voc_missing_annotation_named(voc):
    (voc / "VOCdevkit" / "VOC2012" / "Annotations" / "2008_000002.xml").unlink()
    with pytest.raises(D.DataError, match=r"2008_000002\.xml.*voc2012"):
        D.open_source("voc2012_objects", voc, "train")


def test_imagefolder(imagefolder, tmp_path):
    train = D.open_source("imagefolder", imagefolder, "train", image_size=8)
    assert train.classes == ["cat", "dog"]
    assert train.labels.tolist() == [0, 1, 1]  # notes.txt ignored, upper-case extension accepted
    assert colours(train[0][0]) == {GREEN}
    half = train[1][0]  # not cropped: both colours
    assert RED in colours(half) and GREY in colours(half)
    jpeg = train[2][0].float()
    assert torch.allclose(jpeg.mean(dim=(1, 2)), torch.tensor([200.0, 100.0, 50.0]), atol=3)
    test = D.open_source("imagefolder", imagefolder, "test", image_size=8)  # falls back to val/
    assert test.labels.tolist() == [0] and colours(test[0][0]) == {BLUE}
    assert D.open_source("imagefolder", imagefolder, "train").image_size == 224
    write_image(imagefolder / "val" / "bird" / "e.png", None)
    with pytest.raises(D.DataError, match="bird"):
        D.open_source("imagefolder", imagefolder, "test")
    with pytest.raises(D.DataError, match="train"):
        D.open_source("imagefolder", tmp_path / "nothing", "train")


def test_fashion_mnist_reader_on_fake_idx(fake_fmnist):
    ds = D.open_source("fashion_mnist", fake_fmnist, "train")
    assert ds.classes == D.FASHION_MNIST_CLASSES and ds.channels == 1 and ds.image_size == 28
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [i % 10 for i in range(12)]
    x, y = ds[3]
    assert x.dtype == torch.uint8 and x.shape == (1, 28, 28) and y == 3 and int(x.unique()) == 33
    small = D.open_source("fashion_mnist", fake_fmnist, "test", image_size=14)
    x, y = small[4]
    assert x.shape == (1, 14, 14) and y == 4 and x.unique().tolist() == [44]
    assert small.get_batch([1, 2]).shape == (2, 1, 14, 14)


def test_fashion_mnist_missing_and_malformed(fake_fmnist):
    (fake_fmnist / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(D.DataError) as e:
        D.open_source("fashion_mnist", fake_fmnist, "test")
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and "dataset-fashion-mnist" in msg and "download" in msg
    write_idx(fake_fmnist / "train-labels-idx1-ubyte.gz", np.zeros(12), 2051)  # wrong magic
    with pytest.raises(D.DataError, match=r"train-labels-idx1-ubyte\.gz.*magic"):
        D.open_source("fashion_mnist", fake_fmnist, "train")
    write_idx(fake_fmnist / "train-labels-idx1-ubyte.gz", np.zeros(11), 2049)  # 11 labels, 12 images
    with pytest.raises(D.DataError, match="train-images"):
        D.open_source("fashion_mnist", fake_fmnist, "train")


def test_importing_kc_data_does_not_import_torchvision():
    code = "import sys, kc.data; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------
# prepare / load_prepared
# ---------------------------------------------------------------------------


def test_prepare_writes_arrays_meta_and_stats(cub, tmp_path):
    out = tmp_path / "prepared" / "cub"
    meta = D.prepare("cub200", cub, out, image_size=8)
    assert sorted(p.name for p in out.iterdir()) == [
        "meta.json", "test_images.npy", "test_labels.npy", "train_images.npy", "train_labels.npy"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["cub"]  # no temporary folder left
    assert json.loads((out / "meta.json").read_text()) == meta
    p = D.load_prepared(out)
    assert p.meta == meta and p.classes == meta["classes"] == D.CUB200(cub).classes
    assert meta["counts"] == {"train": 12, "test": 3}
    assert (meta["channels"], meta["image_size"], meta["source"], meta["seed"]) == (3, 8, "cub200", 0)
    for key in ("root", "max_train", "max_test", "skip_difficult"):
        assert key in meta
    tr = p.images("train")
    assert isinstance(tr, np.memmap) and tr.dtype == np.uint8 and tr.shape == (12, 3, 8, 8)
    assert p.images("test").shape == (3, 3, 8, 8)
    assert p.labels("train").dtype == np.int64 and p.labels("train").tolist() == [0] * 4 + [1] * 4 + [2] * 4
    x = np.asarray(tr) / 255.0
    np.testing.assert_allclose(meta["mean"], x.mean(axis=(0, 2, 3)), atol=1e-12)
    np.testing.assert_allclose(meta["std"], x.std(axis=(0, 2, 3)), atol=1e-12)
    raw = D.open_source("cub200", cub, "train", image_size=8)
    np.testing.assert_array_equal(tr[5], raw[5][0].numpy())


def test_prepare_replaces_old_output_and_is_atomic_on_failure(cub, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    D.prepare("cub200", cub, out, image_size=8, max_train=3)
    assert not (out / "stale.txt").exists() and D.load_prepared(out).meta["counts"]["train"] == 3
    first = sorted(p.name for p in tmp_path.iterdir())
    # an image that disappears makes decoding fail halfway: the finished out_dir must survive untouched
    victim = next((cub / "CUB_200_2011" / "images" / CUB_CLASSES[2]).iterdir())
    victim.unlink()
    with pytest.raises(D.DataError, match=victim.name):
        D.prepare("cub200", cub, out, image_size=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == first
    assert D.load_prepared(out).meta["counts"]["train"] == 3


def test_prepare_stratified_subset_decodes_only_kept(cub, tmp_path, monkeypatch):
    decoded = []
    original = D.CUB200.__getitem__

    def counting(self, i):
        decoded.append((self.split, int(i)))
        return original(self, i)

    monkeypatch.setattr(D.CUB200, "__getitem__", counting)
    meta = D.prepare("cub200", cub, tmp_path / "o", image_size=8, max_train=6, max_test=2, seed=3)
    p = D.load_prepared(tmp_path / "o")
    raw = D.CUB200(cub, "train")
    keep = D.stratified_subset(raw.labels, 6, seed=3)
    assert meta["counts"] == {"train": 6, "test": 2} and meta["max_train"] == 6 and meta["seed"] == 3
    assert p.labels("train").tolist() == raw.labels[keep].tolist() == [0, 0, 1, 1, 2, 2]
    assert sorted(i for s, i in decoded if s == "train") == keep.tolist()
    assert len([1 for s, _ in decoded if s == "test"]) == 2
    assert len(set(p.labels("test").tolist())) == 2


def test_prepare_with_workers_matches_serial(voc, tmp_path):
    a = D.prepare("voc2012_objects", voc, tmp_path / "a", image_size=8, skip_difficult=False)
    b = D.prepare("voc2012_objects", voc, tmp_path / "b", image_size=8, skip_difficult=False, num_workers=2)
    assert a["counts"] == {"train": 4, "test": 2} and a["skip_difficult"] is False
    for split in D.SPLITS:
        np.testing.assert_array_equal(D.load_prepared(tmp_path / "a").images(split),
                                      D.load_prepared(tmp_path / "b").images(split))


def test_prepare_fashion_mnist_fake_resized(fake_fmnist, tmp_path):
    meta = D.prepare("fashion_mnist", fake_fmnist, tmp_path / "fm", image_size=14)
    p = D.load_prepared(tmp_path / "fm")
    imgs = p.images("train")
    assert imgs.shape == (12, 1, 14, 14) and meta["channels"] == 1
    np.testing.assert_array_equal(imgs[:, 0, 7, 7], 10 * np.arange(12) + np.arange(12) % 10)
    np.testing.assert_allclose(meta["mean"], [np.asarray(imgs).mean() / 255.0])


def test_prepare_fashion_mnist_real_files(tmp_path):
    meta = D.prepare("fashion_mnist", D.FASHION_MNIST_ROOT, tmp_path / "fm", max_train=200, max_test=100)
    p = D.load_prepared(tmp_path / "fm")
    assert p.classes == D.FASHION_MNIST_CLASSES and len(p.classes) == 10
    assert p.images("train").shape == (200, 1, 28, 28) and p.images("test").shape == (100, 1, 28, 28)
    for split, per_class in (("train", 20), ("test", 10)):
        labels = p.labels(split)
        assert labels.min() >= 0 and labels.max() <= 9
        assert np.bincount(labels, minlength=10).tolist() == [per_class] * 10
    assert 0.15 < meta["mean"][0] < 0.45 and 0.2 < meta["std"][0] < 0.5  # dataset mean ~0.29, std ~0.35
    assert p.images("train").max() == 255


def test_load_prepared_errors(tmp_path, cub):
    with pytest.raises(D.DataError, match=r"meta\.json.*prepare"):
        D.load_prepared(tmp_path / "none")
    D.prepare("cub200", cub, tmp_path / "p", image_size=8)
    (tmp_path / "p" / "test_labels.npy").unlink()
    with pytest.raises(D.DataError, match=r"test_labels\.npy"):
        D.load_prepared(tmp_path / "p")
    (tmp_path / "p" / "meta.json").write_text("{not json")
    with pytest.raises(D.DataError, match=r"meta\.json"):
        D.load_prepared(tmp_path / "p")


# ---------------------------------------------------------------------------
# ImageSet
# ---------------------------------------------------------------------------


@pytest.fixture
def image_set():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(23, 3, 5, 5), dtype=np.uint8)
    labels = np.arange(23) % 4
    return D.ImageSet(imgs, labels, [0.4, 0.5, 0.6], [0.2, 0.25, 0.3], ["a", "b", "c", "d"]), imgs


def test_imageset_batch_normalisation_and_subset(image_set):
    s, imgs = image_set
    assert (len(s), s.channels, s.image_size, s.classes) == (23, 3, 5, ["a", "b", "c", "d"])
    idx = [7, 2, 19, 2]
    x, y = s.batch(idx)
    mean = np.array([0.4, 0.5, 0.6])[None, :, None, None]
    std = np.array([0.2, 0.25, 0.3])[None, :, None, None]
    expected = (imgs[idx] / 255.0 - mean) / std
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)
    assert y.tolist() == [3, 2, 3, 2]
    sub = s.subset([10, 3, 22, 5]).subset([2, 0])  # composes index maps
    x2, y2 = sub.batch([0, 1])
    np.testing.assert_allclose(x2.numpy(), (imgs[[22, 10]] / 255.0 - mean) / std, atol=1e-5)
    assert y2.tolist() == [2, 2] and sub.labels.tolist() == [2, 2] and len(sub) == 2


def test_imageset_batches_cover_once_deterministic_and_epoch_dependent(image_set):
    s, imgs = image_set
    first = lambda b: int(round(float(b * 0.2 + 0.4) * 255))  # noqa: E731  undo normalisation of channel 0

    def seen(**kw):
        return [first(v) for x, _ in s.batches(5, **kw) for v in x[:, 0, 0, 0]]

    ident = imgs[:, 0, 0, 0].tolist()
    assert seen() == ident  # no shuffle: in order
    a, b = seen(shuffle=True, seed=1, epoch=0), seen(shuffle=True, seed=1, epoch=0)
    assert a == b and sorted(a) == sorted(ident) and a != ident
    assert seen(shuffle=True, seed=1, epoch=1) != a
    assert seen(shuffle=True, seed=2, epoch=0) != a
    sizes = [len(y) for _, y in s.batches(5)]
    assert sizes == [5, 5, 5, 5, 3] and [len(y) for _, y in s.batches(5, drop_last=True)] == [5] * 4


def test_imageset_ddp_shards_disjoint_and_equal(image_set):
    s, _ = image_set
    orders = [s.order(shuffle=True, seed=4, epoch=2, rank=r, world_size=3) for r in range(3)]
    assert all(len(o) == 8 for o in orders)  # 23 padded by wrapping to 24
    allidx = np.concatenate(orders)
    assert set(allidx.tolist()) == set(range(23)) and len(allidx) == 24
    full = s.order(shuffle=True, seed=4, epoch=2)
    assert set(orders[0]) & set(orders[1]) == set() and set(orders[1]) & set(orders[2]) == set()
    np.testing.assert_array_equal(orders[1], full[1::3])
    counts = [sum(1 for _ in s.batches(3, shuffle=True, rank=r, world_size=3)) for r in range(3)]
    assert counts == [3, 3, 3] == [s.num_batches(3, world_size=3)] * 3
    labels = [y for r in range(3) for _, y in s.batches(4, shuffle=True, seed=4, epoch=2, rank=r, world_size=3)]
    assert torch.cat(labels).tolist() == s.labels[allidx].tolist()
    dropped = [s.order(rank=r, world_size=3, drop_last=True) for r in range(3)]
    assert [len(o) for o in dropped] == [7, 7, 7] and len(set(np.concatenate(dropped).tolist())) == 21
    with pytest.raises(ValueError):
        s.order(rank=3, world_size=3)


def test_imageset_several_arrays_and_pickle(tmp_path):
    a = np.full((4, 1, 2, 2), 10, np.uint8) + np.arange(4, dtype=np.uint8)[:, None, None, None]
    b = np.full((3, 1, 2, 2), 100, np.uint8) + np.arange(3, dtype=np.uint8)[:, None, None, None]
    np.save(tmp_path / "b.npy", b)
    bm = np.load(tmp_path / "b.npy", mmap_mode="r")
    s = D.ImageSet([a, bm], [0, 1, 2, 3, 4], [0.0], [1.0], list("abcde"),
                   sources=[1, 0, 1, 0, 0], rows=[2, 3, 0, 1, 0], paths=[None, tmp_path / "b.npy"])
    raw = s.raw([0, 1, 2, 3, 4, 0])[:, 0, 0, 0].tolist()
    assert raw == [102, 13, 100, 11, 10, 102]
    x, y = s.batch([4, 0])
    np.testing.assert_allclose(x[:, 0, 0, 0].numpy(), [10 / 255, 102 / 255], atol=1e-6)
    s2 = pickle.loads(pickle.dumps(s))
    assert isinstance(s2._arrays[1], np.memmap) and s2.raw([0, 1])[:, 0, 0, 0].tolist() == [102, 13]


# ---------------------------------------------------------------------------
# Task
# ---------------------------------------------------------------------------


@pytest.fixture
def two_prepared(tmp_path):
    birds = fake_prepared(tmp_path / "birds", ["Black-footed Albatross", "Laysan albatross", "Sooty"],
                          [3, 2, 4], [1, 1, 1], value=0, source="cub200")
    dogs = fake_prepared(tmp_path / "dogs", ["Chihuahua", "Shih-Tzu"], [5, 1], [2, 2], value=50,
                         source="stanford_dogs")
    return birds, dogs


def test_task_mix_offsets_labels_and_stats(two_prepared):
    birds, dogs = two_prepared
    t = D.Task([birds, dogs.path])
    assert t.num_classes == 5 and t.classes == birds.classes + dogs.classes
    tr = t.load("train")
    assert len(tr) == 15 and tr.labels.tolist() == [0] * 3 + [1] * 2 + [2] * 4 + [3] * 5 + [4]
    raw = tr.raw(np.arange(15))[:, 0, 0, 0].tolist()
    assert raw == list(range(9)) + [50 + i for i in range(6)]  # rows of birds then dogs
    te = t.load("test")
    assert te.labels.tolist() == [0, 1, 2, 3, 3, 4, 4]
    x = np.concatenate([np.asarray(birds.images("train")), np.asarray(dogs.images("train"))]) / 255.0
    np.testing.assert_allclose(tr.mean, x.mean(axis=(0, 2, 3)), atol=1e-12)
    np.testing.assert_allclose(tr.std, x.std(axis=(0, 2, 3)), atol=1e-12)
    np.testing.assert_allclose(t.mean, tr.mean)


def test_task_class_subset_by_name_and_index(two_prepared):
    birds, dogs = two_prepared
    t = D.Task([birds, dogs], classes=["shih_tzu", "black footed albatross"])
    assert t.classes == ["Shih-Tzu", "Black-footed Albatross"] and t.num_classes == 2
    tr = t.load("train")
    assert tr.labels.tolist() == [1, 1, 1, 0]
    assert tr.raw(np.arange(4))[:, 0, 0, 0].tolist() == [0, 1, 2, 55]
    t2 = D.Task([birds, dogs], classes=[4, 0])
    assert t2.classes == t.classes and t2.load("train").labels.tolist() == tr.labels.tolist()
    assert t.class_indices(["black_footed_albatross", 0]) == [1, 0]
    with pytest.raises(ValueError) as e:
        D.Task([birds, dogs], classes=["poodle"])
    assert "poodle" in str(e.value) and "Chihuahua" in str(e.value) and "Sooty" in str(e.value)
    with pytest.raises(ValueError, match="Shih-Tzu"):
        t.class_indices(["Chihuahua"])
    with pytest.raises(ValueError):
        D.Task([birds], classes=[3])


def test_task_groups_binary(two_prepared):
    birds, dogs = two_prepared
    t = D.Task([birds, dogs], groups={"bird": [0, 1, "Sooty"], "dog": ["chihuahua", "shih-tzu"]})
    assert t.classes == ["bird", "dog"] and t.num_classes == 2
    assert t.load("train").labels.tolist() == [0] * 9 + [1] * 6
    t2 = D.Task([birds, dogs], groups=[["Sooty"], [3]])
    assert t2.classes == ["group0", "group1"]
    te = t2.load("test")
    assert te.labels.tolist() == [0, 1, 1] and te.raw([0])[0, 0, 0, 0] == birds.images("test")[2, 0, 0, 0]
    with pytest.raises(ValueError, match="at most one group"):
        D.Task([birds, dogs], groups={"a": [0, 1], "b": [1]})
    with pytest.raises(ValueError, match="not both"):
        D.Task([birds], classes=[0], groups=[[1]])
    with pytest.raises(ValueError, match="Laysan"):
        D.Task([birds], groups={"a": ["pelican"]})


def test_task_rejects_mismatched_datasets(tmp_path, two_prepared):
    birds, _ = two_prepared
    grey = fake_prepared(tmp_path / "grey", ["x", "y"], [2, 2], [1, 1], channels=1, source="fashion_mnist")
    with pytest.raises(ValueError) as e:
        D.Task([birds, grey])
    assert "cub200" in str(e.value) and "fashion_mnist" in str(e.value)


# ---------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------


def test_half_split():
    labels = np.repeat(np.arange(5), [7, 8, 1, 10, 3])
    rng = np.random.default_rng(1)
    labels = labels[rng.permutation(len(labels))]
    h0, h1 = D.half_split(labels, "half0", seed=3), D.half_split(labels, "half1", seed=3)
    assert h0.dtype == np.int64 and np.all(np.diff(h0) > 0) and np.all(np.diff(h1) > 0)
    assert len(set(h0) & set(h1)) == 0 and sorted(np.r_[h0, h1].tolist()) == list(range(len(labels)))
    c0, c1 = np.bincount(labels[h0], minlength=5), np.bincount(labels[h1], minlength=5)
    assert np.all(np.abs(c0 - c1) <= 1) and abs(len(h0) - len(h1)) <= 1
    np.testing.assert_array_equal(h0, D.half_split(labels, "half0", seed=3))
    assert not np.array_equal(h0, D.half_split(labels, "half0", seed=4))
    np.testing.assert_array_equal(D.half_split(labels, "full"), np.arange(len(labels)))
    with pytest.raises(ValueError, match="full, half0, half1"):
        D.half_split(labels, "half2")


def test_stratified_subset():
    labels = np.repeat(np.arange(4), [10, 10, 2, 30])
    s = D.stratified_subset(labels, 14, seed=0)
    assert s.dtype == np.int64 and len(s) == 14 and np.all(np.diff(s) > 0)
    assert np.bincount(labels[s], minlength=4).tolist() == [4, 4, 2, 4]  # class 2 gives its share away
    np.testing.assert_array_equal(s, D.stratified_subset(labels, 14, seed=0))
    assert not np.array_equal(s, D.stratified_subset(labels, 14, seed=1))
    odd = np.bincount(labels[D.stratified_subset(labels, 9, seed=5)], minlength=4)
    assert sorted(odd.tolist()) == [2, 2, 2, 3]
    lucky = {int(np.argmax(np.bincount(labels[D.stratified_subset(labels, 9, seed=k)]))) for k in range(12)}
    assert len(lucky) > 1  # which class gets the extra sample is seeded, not always the first
    np.testing.assert_array_equal(D.stratified_subset(labels, 1000), np.arange(52))
    assert len(D.stratified_subset(labels, 0)) == 0


def test_fashion_mnist_with_bad_compressed_data_names_the_file(tmp_path):
    import gzip
    from kc.data.fake import write_fashion_mnist
    root = write_fashion_mnist(tmp_path / "fm", train=6, test=3)
    bad = next(root.glob("train-images*.gz"))
    blob = bad.read_bytes()
    bad.write_bytes(blob[:20] + bytes(b ^ 0xFF for b in blob[20:]))       # a valid header, then garbage
    with pytest.raises(D.DataError, match=r"train-images-idx3-ubyte.gz"):
        D.open_source("fashion_mnist", root, "train")[0]
    assert gzip  # the module reads .gz with gzip: its zlib errors are DataError too
