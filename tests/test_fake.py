"""kc.data.fake: each generated layout is read unchanged by the real reader, and prepare works on it."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kc import data as D
from kc.data import fake


def dominated(x: torch.Tensor, colour, classes_colours, tol=40, share=0.5) -> bool:
    """The object's colour dominates the (3, H, W) crop: the median pixel is within 20 of ``colour``
    (per channel), ``colour`` is the class colour nearest to it, and at least ``share`` of the pixels
    are within ``tol`` of it (JPEG's chroma subsampling blurs a pixel or two along the box's edges)."""
    px = x.permute(1, 2, 0).reshape(-1, 3).numpy().astype(np.int64)
    close = np.abs(px - np.asarray(colour)).max(axis=1) <= tol
    median = np.median(px, axis=0)
    nearest = int(np.argmin([np.abs(median - np.asarray(c)).max() for c in classes_colours]))
    return (np.abs(median - np.asarray(colour)).max() <= 20 and close.mean() >= share
            and tuple(classes_colours[nearest]) == tuple(colour))


def grey_share(px: np.ndarray) -> float:
    """The fraction of (n, 3) pixels within 30 of the background grey."""
    return float((np.abs(px - np.asarray(fake.GREY)).max(axis=1) <= 30).mean())


def check_reader(ds, colours, colour_of_label=None):
    colour_of_label = colour_of_label or (lambda y: colours[y])
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.dtype == torch.uint8 and x.shape == (3, ds.image_size, ds.image_size)
        assert y == ds.labels[i]
        assert dominated(x, colour_of_label(y), colours), (ds.split, i, y)


def is_jpeg(path: Path) -> bool:
    with Image.open(path) as im:
        return im.format == "JPEG"


def test_cub(tmp_path):
    root = fake.write_cub(tmp_path / "cub", classes=4, train_per_class=3, test_per_class=2, size=(48, 40), seed=1)
    assert root == tmp_path / "cub" / "CUB_200_2011"
    train = D.open_source("cub200", root, "train", image_size=16)
    test = D.open_source("cub200", tmp_path / "cub", "test", image_size=16)
    assert train.classes == ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross", "Groove_billed_Ani"]
    assert train.labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert test.labels.tolist() == [0] * 2 + [1] * 2 + [2] * 2 + [3] * 2
    assert (root / "images" / "001.Black_footed_Albatross").is_dir()
    files = sorted((root / "images").rglob("*.jpg"))
    assert len(files) == 20 and all(is_jpeg(f) for f in files)
    with Image.open(files[0]) as im:
        assert im.size == (48, 40)
    colours = fake.class_colours(4)
    check_reader(train, colours)
    check_reader(test, colours)
    # the box covers part of the image only: the crop removes the grey background
    for i in range(3):
        with Image.open(train._paths[i]) as im:
            whole = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(np.int64)
        crop = train[i][0].permute(1, 2, 0).reshape(-1, 3).numpy().astype(np.int64)
        assert grey_share(whole) > 0.2 and grey_share(crop) < 0.05


def test_cub_many_classes_and_png_exact(tmp_path):
    root = fake.write_cub(tmp_path, classes=23, train_per_class=1, test_per_class=1, size=24, fmt="PNG", noise=0)
    ds = D.open_source("cub200", root, "train", image_size=8)
    assert len(ds.classes) == 23 and ds.classes[19] == "Yellow_breasted_Chat" and ds.classes[22] == "Fake_bird_023"
    assert (root / "classes.txt").read_text().splitlines()[22] == "23 023.Fake_bird_023"
    colours = fake.class_colours(23)
    for i in range(len(ds)):
        x, y = ds[i]
        assert set(map(tuple, x.permute(1, 2, 0).reshape(-1, 3).tolist())) == {colours[y]}


def test_stanford_dogs(tmp_path):
    root = fake.write_stanford_dogs(tmp_path / "dogs", classes=3, train_per_class=4, test_per_class=2,
                                    size=(40, 40), seed=2, second_dog=0.5)
    assert root == tmp_path / "dogs"
    train = D.open_source("stanford_dogs", root, "train", image_size=12)
    test = D.open_source("stanford_dogs", root, "test", image_size=12)
    assert train.classes == ["Chihuahua", "Japanese_spaniel", "Maltese_dog"] == test.classes
    assert train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and test.labels.tolist() == [0] * 2 + [1] * 2 + [2] * 2
    assert all(is_jpeg(p) for p in train._paths)
    annotations = sorted(p for p in (root / "Annotation").rglob("*") if p.is_file())
    assert len(annotations) == 18
    objects = [len(ET.parse(a).getroot().findall("object")) for a in annotations]
    assert set(objects) == {1, 2}  # some images hold a second dog
    first = ET.parse(annotations[0]).getroot().find("object")
    assert first.findtext("name") == "Chihuahua"
    colours = fake.class_colours(3)
    check_reader(train, colours)
    check_reader(test, colours)


def test_stanford_dogs_many_breeds_keep_label_order(tmp_path):
    root = fake.write_stanford_dogs(tmp_path, classes=22, train_per_class=1, test_per_class=0, size=16)
    ds = D.open_source("stanford_dogs", root, "train", image_size=8)
    assert len(ds.classes) == 22 and ds.classes[14] == "black-and-tan_coonhound"
    assert ds.classes[20:] == ["Fake_breed_020", "Fake_breed_021"] and ds.labels.tolist() == list(range(22))
    assert len(D.open_source("stanford_dogs", root, "test")) == 0


def test_voc2012(tmp_path):
    root = fake.write_voc2012(tmp_path / "voc", classes=["cat", "dog", "horse", "person", "car"], train_per_class=3,
                              test_per_class=2, size=(64, 48), seed=3, objects_per_image=3, difficult=0.5)
    assert root == tmp_path / "voc" / "VOCdevkit" / "VOC2012"
    train = D.open_source("voc2012_objects", tmp_path / "voc", "train", image_size=12)
    test = D.open_source("voc2012_objects", root, "test", image_size=12)
    assert train.classes == D.VOC_CLASSES
    ids = [D.VOC_CLASSES.index(c) for c in ("cat", "dog", "horse", "person", "car")]
    assert np.bincount(train.labels, minlength=20)[ids].tolist() == [3] * 5 and len(train) == 15
    assert np.bincount(test.labels, minlength=20)[ids].tolist() == [2] * 5 and len(test) == 10
    assert not train.difficult.any()
    assert len(set(train.image_ids)) < len(train)  # several objects per image
    assert set(train.image_ids).isdisjoint(test.image_ids)
    everything = D.open_source("voc2012_objects", root, "train", image_size=12, skip_difficult=False)
    assert everything.difficult.any() and len(everything) == 15 + everything.difficult.sum()
    assert all(is_jpeg(p) for p in everything._paths)
    main = root / "ImageSets" / "Main"
    assert (main / "train.txt").read_text().split() == sorted(set(train.image_ids))
    assert (main / "trainval.txt").read_text().split() == sorted(set(train.image_ids) | set(test.image_ids))
    cat = dict(line.split() for line in (main / "cat_train.txt").read_text().splitlines())
    assert {k for k, v in cat.items() if v == "1"} == {i for i, y in zip(train.image_ids, train.labels) if y == 7}
    colours = fake.class_colours(20)
    check_reader(everything, colours)
    check_reader(test, colours)


def test_fashion_mnist(tmp_path):
    root = fake.write_fashion_mnist(tmp_path / "fm", train=30, test=7)
    ds = D.open_source("fashion_mnist", root, "train")
    assert len(ds) == 30 and ds.labels.tolist() == [i % 10 for i in range(30)] and ds.image_size == 28
    x, y = ds[25]
    assert y == 5 and x.unique().tolist() == [(250 + 5) % 256]
    assert len(D.open_source("fashion_mnist", root, "test")) == 7


def test_imagefolder(tmp_path):
    root = fake.write_imagefolder(tmp_path / "f", classes=["cat", "dog", "fox"], train_per_class=2, test_per_class=1,
                                  size=(32, 24), test_dir="val")
    train = D.open_source("imagefolder", root, "train", image_size=16)
    test = D.open_source("imagefolder", root, "test", image_size=16)
    assert train.classes == ["cat", "dog", "fox"] and train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert test.labels.tolist() == [0, 1, 2] and all(is_jpeg(p) for p in train._paths)
    colours = fake.class_colours(3)
    for ds in (train, test):
        for i in range(len(ds)):
            x, y = ds[i]
            assert dominated(x[:, 6:10, 6:10], colours[y], colours)  # the object covers the centre


def test_deterministic_given_seed(tmp_path):
    def files(folder):
        return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    for write in (fake.write_cub, fake.write_stanford_dogs, fake.write_voc2012):
        write(tmp_path / "a", classes=3, train_per_class=2, test_per_class=1, size=24, seed=5)
        write(tmp_path / "b", classes=3, train_per_class=2, test_per_class=1, size=24, seed=5)
        write(tmp_path / "c", classes=3, train_per_class=2, test_per_class=1, size=24, seed=6)
        a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
        assert a == b and a != c, write.__name__
        for d in "abc":
            for p in (tmp_path / d).rglob("*"):
                if p.is_file():
                    p.unlink()


@pytest.mark.parametrize("source,write", [("cub200", fake.write_cub), ("stanford_dogs", fake.write_stanford_dogs),
                                          ("voc2012_objects", fake.write_voc2012)])
def test_prepare_on_each_layout(tmp_path, source, write):
    root = write(tmp_path / "raw", classes=3, train_per_class=4, test_per_class=2, size=(40, 32), seed=0)
    meta = D.prepare(source, root, tmp_path / "prepared", image_size=16)
    p = D.load_prepared(tmp_path / "prepared")
    assert meta["counts"] == {"train": 12, "test": 6} and meta["channels"] == 3 and meta["image_size"] == 16
    raw = D.open_source(source, root, "train", image_size=16)
    assert p.classes == raw.classes and p.labels("train").tolist() == raw.labels.tolist()
    assert p.images("train").shape == (12, 3, 16, 16) and p.images("test").shape == (6, 3, 16, 16)
    np.testing.assert_array_equal(p.images("train")[7], raw[7][0].numpy())
    colours = fake.class_colours(20 if source == "voc2012_objects" else 3)
    for x, y in zip(p.images("test"), p.labels("test")):
        assert dominated(torch.from_numpy(np.array(x)), colours[y], colours)
    assert all(0.0 < s for s in meta["std"])


def test_command_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "kc.data.fake", str(tmp_path), "--classes", "2", "--per-class", "3",
                          "--size", "32x24", "--seed", "4"], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    roots = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert set(roots) == {"cub200", "stanford_dogs", "voc2012_objects"}
    assert roots["cub200"] == str(tmp_path / "cub" / "CUB_200_2011")
    assert roots["stanford_dogs"] == str(tmp_path / "dogs")
    for source, root in roots.items():
        train = D.open_source(source, root, "train", image_size=8)
        test = D.open_source(source, root, "test", image_size=8)
        assert len(train) == 6 and len(test) == 2, source  # --test-per-class defaults to half, at least 1
        with Image.open(train._paths[0]) as im:
            assert im.size == (32, 24)
    bad = subprocess.run([sys.executable, "-m", "kc.data.fake", str(tmp_path), "--size", "big"],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert bad.returncode == 2 and "size" in bad.stderr
