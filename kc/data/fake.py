"""Small generated copies of the official on-disk layouts, read unchanged by :mod:`kc.data.readers`.

For tests and the paper's dry run ("a handful of classes, a few images each", at any image size)::

    root = write_cub(tmp / "cub", classes=4, train_per_class=4, test_per_class=2, size=(64, 48))
    ds = open_source("cub200", root, "train", image_size=32)   # 16 samples, 4 classes
    write_stanford_dogs(tmp / "dogs", classes=3)               # Images/, Annotation/, *_list.mat
    write_voc2012(tmp / "voc", classes=5)                      # VOCdevkit/VOC2012/...
    write_fashion_mnist(tmp / "fm", train=12, test=5)          # four gzipped IDX files
    write_imagefolder(tmp / "folder", classes=["cat", "dog"])  # train/<class>/, test/<class>/

Every object is a rectangle of its class colour (:func:`class_colours`) painted exactly inside its
bounding box, on a grey background: cropping is checkable (the object colour dominates a crop) and
the classes are learnable. Images are real JPEG files (quality 90) unless ``fmt`` says otherwise
(``fmt="PNG"`` keeps pixels exact; the file names keep the official ``.jpg``). Output depends only
on the arguments (``seed``). Class names look like the real ones ("001.Black_footed_Albatross",
"n02085620-Chihuahua", VOC's 20 names).

The generators above build lists of :class:`FakeImage` and hand them to the layout writers
(:func:`write_cub_layout`, :func:`write_stanford_dogs_layout`, :func:`write_voc2012_layout`), which
tests can also call with hand-made images, boxes and colours.

Command line (writes cub/, dogs/ and voc/ under OUT_DIR and prints the root to give each reader)::

    python -m kc.data.fake OUT_DIR [--classes 4] [--per-class 4] [--test-per-class 2] [--size 64x48] [--seed 0]
"""
from __future__ import annotations

import argparse
import colorsys
import gzip
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from kc.data.catalog import VOC_CLASSES
from kc.data.readers import pixel_box

Colour = tuple[int, int, int]
Box = tuple[float, float, float, float]  # PIL box: (left, top, right, bottom), 0-based, right/bottom exclusive

GREY: Colour = (128, 128, 128)
JPEG_QUALITY = 90

CUB_CLASSES = [
    "001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross", "004.Groove_billed_Ani",
    "005.Crested_Auklet", "006.Least_Auklet", "007.Parakeet_Auklet", "008.Rhinoceros_Auklet",
    "009.Brewer_Blackbird", "010.Red_winged_Blackbird", "011.Rusty_Blackbird", "012.Yellow_headed_Blackbird",
    "013.Bobolink", "014.Indigo_Bunting", "015.Lazuli_Bunting", "016.Painted_Bunting", "017.Cardinal",
    "018.Spotted_Catbird", "019.Gray_Catbird", "020.Yellow_breasted_Chat",
]
DOG_FOLDERS = [
    "n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02085936-Maltese_dog", "n02086079-Pekinese",
    "n02086240-Shih-Tzu", "n02086646-Blenheim_spaniel", "n02086910-papillon", "n02087046-toy_terrier",
    "n02087394-Rhodesian_ridgeback", "n02088094-Afghan_hound", "n02088238-basset", "n02088364-beagle",
    "n02088466-bloodhound", "n02088632-bluetick", "n02089078-black-and-tan_coonhound", "n02089867-Walker_hound",
    "n02089973-English_foxhound", "n02090379-redbone", "n02090622-borzoi", "n02090721-Irish_wolfhound",
]

_FMNIST_NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IDX_MAGIC = {3: 2051, 1: 2049}


# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------


@dataclass
class FakeObject:
    """One annotated object: ``label`` indexes the writer's class list (VOC: :data:`VOC_CLASSES`).

    ``box`` is a PIL box (left, top, right, bottom), 0-based with right/bottom exclusive; the writers
    convert it to each format's convention (CUB x, y, width, height; VOC 1-based inclusive). The
    painted rectangle is the box rounded and clamped to the image, as the readers crop it, so a box
    may run off the image. ``colour`` defaults to the class colour; ``outline`` paints a one-pixel
    frame on the box's own border pixels.
    """
    label: int
    box: Box
    colour: Colour | None = None
    difficult: bool = False
    outline: Colour | None = None


@dataclass
class FakeImage:
    """One image file: ``name`` is its file stem (VOC: the image id), ``split`` "train" or "test"."""
    name: str
    objects: list[FakeObject]
    split: str = "train"
    size: tuple[int, int] = (64, 48)  # (width, height)
    background: Colour = GREY
    noise: float = 0.0                # std of Gaussian pixel noise added everywhere (0: exact colours)
    seed: int = 0                     # of the noise
    extra: dict = field(default_factory=dict)


def class_colours(n: int) -> list[Colour]:
    """``n`` saturated colours, hues evenly spaced, far from the grey background."""
    out = []
    for k in range(n):
        r, g, b = colorsys.hsv_to_rgb(k / max(n, 1), 0.85, 0.9 if k % 2 == 0 else 0.75)
        out.append((int(round(255 * r)), int(round(255 * g)), int(round(255 * b))))
    return out


def render(image: FakeImage, colours: Sequence[Colour] = ()) -> Image.Image:
    """The RGB picture of ``image``: background, each object's box in its colour, then the noise."""
    width, height = image.size
    im = Image.new("RGB", (width, height), tuple(image.background))
    for obj in image.objects:
        colour = obj.colour if obj.colour is not None else colours[obj.label]
        box = pixel_box(obj.box, width, height)
        if obj.outline is not None:
            im.paste(tuple(obj.outline), box)
            inner = (box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1)
            if inner[2] > inner[0] and inner[3] > inner[1]:
                im.paste(tuple(colour), inner)
        else:
            im.paste(tuple(colour), box)
    if image.noise > 0:
        rng = np.random.default_rng(image.seed)
        arr = np.asarray(im, dtype=np.float32) + rng.normal(0.0, image.noise, size=(height, width, 3))
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
    return im


def _save(im: Image.Image, path: Path, fmt: str | None, quality: int = JPEG_QUALITY) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = fmt or Image.registered_extensions().get(path.suffix.lower()) or "PNG"
    if fmt.upper() in ("JPEG", "JPG"):
        im.save(path, format="JPEG", quality=int(quality))
    else:
        im.save(path, format=fmt)


def write_image(path, box=None, fg: Colour = (220, 20, 30), bg: Colour = GREY, size=(40, 30),
                fmt: str | None = None, quality: int = JPEG_QUALITY) -> Path:
    """A ``size=(w, h)`` image of colour ``bg`` with the PIL ``box`` painted ``fg``.

    ``fmt``: a PIL format ("PNG", "JPEG", "BMP", ...), by default from the file extension; PNG
    content under a .jpg name keeps pixels exact.
    """
    path = Path(path)
    im = Image.new("RGB", tuple(size), tuple(bg))
    if box is not None:
        im.paste(tuple(fg), tuple(box))
    _save(im, path, fmt, quality)
    return path


def _size(size) -> tuple[int, int]:
    w, h = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if int(w) < 1 or int(h) < 1:
        raise ValueError(f"size must be positive (width, height); got {size!r}")
    return int(w), int(h)


def _num(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def _xml(root: ET.Element) -> str:
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def _sub(parent: ET.Element, tag: str, text=None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


# ---------------------------------------------------------------------------
# Layout writers (explicit images)
# ---------------------------------------------------------------------------


def write_cub_layout(root, classes: Sequence[str], images: Sequence[FakeImage], *, fmt: str = "JPEG",
                     quality: int = JPEG_QUALITY, colours: Sequence[Colour] | None = None) -> Path:
    """CUB-200-2011 under ``root/CUB_200_2011``; returns that folder.

    ``classes``: full folder names ("001.Black_footed_Albatross"); each image's class and box are its
    first object's. Writes images/<class>/<name>.jpg, images.txt, classes.txt, image_class_labels.txt,
    train_test_split.txt (1 = train) and bounding_boxes.txt (x y width height), ids 1.. in order.
    """
    base = Path(root) / "CUB_200_2011"
    colours = list(colours) if colours is not None else class_colours(len(classes))
    rows = {"images": [], "labels": [], "split": [], "boxes": []}
    for k, image in enumerate(images, start=1):
        obj = image.objects[0]
        rel = f"{classes[obj.label]}/{image.name}.jpg"
        _save(render(image, colours), base / "images" / rel, fmt, quality)
        left, top, right, bottom = (float(v) for v in obj.box)
        rows["images"].append(f"{k} {rel}")
        rows["labels"].append(f"{k} {obj.label + 1}")
        rows["split"].append(f"{k} {1 if image.split == 'train' else 0}")
        rows["boxes"].append(f"{k} {left!r} {top!r} {right - left!r} {bottom - top!r}")
    for name, key in (("images.txt", "images"), ("image_class_labels.txt", "labels"),
                      ("train_test_split.txt", "split"), ("bounding_boxes.txt", "boxes")):
        (base / name).write_text("\n".join(rows[key]) + "\n", encoding="utf-8")
    (base / "classes.txt").write_text("".join(f"{c} {n}\n" for c, n in enumerate(classes, start=1)),
                                      encoding="utf-8")
    return base


def write_dogs_list(path, entries: Sequence[tuple[str, str, int]], *, style: str = "cells",
                    label_dtype=np.float64) -> Path:
    """A Stanford Dogs list (.mat): ``entries`` are (file, annotation, 1-based label).

    ``style="cells"`` as the official files: (N, 1) cells of 1-element string arrays and (N, 1)
    labels; ``"flat"``: 1-D object arrays of strings (what ``scipy.io.savemat`` makes of a list).
    """
    import scipy.io  # lazy: only the Stanford Dogs layout needs scipy

    n = len(entries)
    if style == "cells":
        files, annotations = np.empty((n, 1), dtype=object), np.empty((n, 1), dtype=object)
        for i, (f, a, _) in enumerate(entries):
            files[i, 0], annotations[i, 0] = np.array([f]), np.array([a])
    elif style == "flat":
        files = np.array([f for f, _, _ in entries], dtype=object)
        annotations = np.array([a for _, a, _ in entries], dtype=object)
    else:
        raise ValueError(f"style must be 'cells' or 'flat'; got {style!r}")
    labels = np.array([[lab] for _, _, lab in entries], dtype=label_dtype).reshape(n, 1)
    scipy.io.savemat(str(path), {"file_list": files, "annotation_list": annotations, "labels": labels})
    return Path(path)


def _dog_annotation(folder: str, image: FakeImage) -> str:
    breed = folder.split("-", 1)[1] if "-" in folder else folder
    ann = ET.Element("annotation")
    _sub(ann, "folder", folder.split("-", 1)[0].lstrip("n"))
    _sub(ann, "filename", image.name)
    _sub(_sub(ann, "source"), "database", "ImageNet database")
    size = _sub(ann, "size")
    _sub(size, "width", image.size[0])
    _sub(size, "height", image.size[1])
    _sub(size, "depth", 3)
    _sub(ann, "segment", 0)
    for obj in image.objects:
        o = _sub(ann, "object")
        _sub(o, "name", breed)
        _sub(o, "pose", "Unspecified")
        _sub(o, "truncated", 0)
        _sub(o, "difficult", int(obj.difficult))
        bb = _sub(o, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), obj.box):
            _sub(bb, tag, _num(v))
    return _xml(ann)


def write_stanford_dogs_layout(root, folders: Sequence[str], images: Sequence[FakeImage], *, fmt: str = "JPEG",
                               quality: int = JPEG_QUALITY, colours: Sequence[Colour] | None = None) -> Path:
    """Stanford Dogs under ``root``; returns ``root``.

    ``folders``: the class folders ("n02085620-Chihuahua"), in label order, which must be their sorted
    order (the reader's). Each image's class is its first object's; every object goes into the XML
    annotation (the reader crops the first box, read as a PIL box). Writes Images/<folder>/<name>.jpg,
    Annotation/<folder>/<name> (no extension), and train_list.mat, test_list.mat, file_list.mat in
    the official cell style (see :func:`write_dogs_list` for the other style).
    """
    root = Path(root)
    if list(folders) != sorted(folders):
        raise ValueError("Stanford Dogs labels follow the sorted folder names: give folders sorted")
    colours = list(colours) if colours is not None else class_colours(len(folders))
    lists: dict[str, list] = {"train": [], "test": []}
    for folder in folders:
        (root / "Images" / folder).mkdir(parents=True, exist_ok=True)
        (root / "Annotation" / folder).mkdir(parents=True, exist_ok=True)
    for image in images:
        label = image.objects[0].label
        folder = folders[label]
        _save(render(image, colours), root / "Images" / folder / f"{image.name}.jpg", fmt, quality)
        (root / "Annotation" / folder / image.name).write_text(_dog_annotation(folder, image), encoding="utf-8")
        lists[image.split].append((f"{folder}/{image.name}.jpg", f"{folder}/{image.name}", label + 1))
    for split, entries in lists.items():
        write_dogs_list(root / f"{split}_list.mat", entries)
    write_dogs_list(root / "file_list.mat", sorted(lists["train"] + lists["test"]))
    return root


def _voc_annotation(image: FakeImage) -> str:
    ann = ET.Element("annotation")
    _sub(ann, "folder", "VOC2012")
    _sub(ann, "filename", f"{image.name}.jpg")
    source = _sub(ann, "source")
    _sub(source, "database", "The VOC2008 Database")
    _sub(source, "annotation", "PASCAL VOC2008")
    _sub(source, "image", "flickr")
    size = _sub(ann, "size")
    _sub(size, "width", image.size[0])
    _sub(size, "height", image.size[1])
    _sub(size, "depth", 3)
    _sub(ann, "segmented", 0)
    for obj in image.objects:
        o = _sub(ann, "object")
        _sub(o, "name", VOC_CLASSES[obj.label])
        _sub(o, "pose", "Unspecified")
        _sub(o, "truncated", 0)
        _sub(o, "difficult", int(obj.difficult))
        left, top, right, bottom = obj.box  # PIL box -> 1-based inclusive
        bb = _sub(o, "bndbox")
        for tag, v in (("xmin", float(left) + 1), ("ymin", float(top) + 1), ("xmax", right), ("ymax", bottom)):
            _sub(bb, tag, _num(v))
    return _xml(ann)


def write_voc2012_layout(root, images: Sequence[FakeImage], *, fmt: str = "JPEG", quality: int = JPEG_QUALITY,
                         colours: Sequence[Colour] | None = None) -> Path:
    """Pascal VOC 2012 under ``root/VOCdevkit/VOC2012``; returns that folder.

    Object labels index :data:`VOC_CLASSES`; the default colours are ``class_colours(20)``. Writes
    JPEGImages/<id>.jpg, Annotations/<id>.xml (every object, 1-based inclusive boxes, difficult flags)
    and ImageSets/Main/{train,val,trainval}.txt (split "test" -> val.txt) with the per-class lists
    <class>_{train,val,trainval}.txt (1 present, 0 only difficult, -1 absent).
    """
    base = Path(root) / "VOCdevkit" / "VOC2012"
    colours = list(colours) if colours is not None else class_colours(len(VOC_CLASSES))
    (base / "Annotations").mkdir(parents=True, exist_ok=True)
    main = base / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    ids = {"train": [], "val": []}
    for image in images:
        _save(render(image, colours), base / "JPEGImages" / f"{image.name}.jpg", fmt, quality)
        (base / "Annotations" / f"{image.name}.xml").write_text(_voc_annotation(image), encoding="utf-8")
        ids["train" if image.split == "train" else "val"].append(image)
    ids["trainval"] = ids["train"] + ids["val"]
    for split, members in ids.items():
        (main / f"{split}.txt").write_text("".join(f"{im.name}\n" for im in members), encoding="utf-8")
        for c, name in enumerate(VOC_CLASSES):
            lines = []
            for im in members:
                flags = [o.difficult for o in im.objects if o.label == c]
                lines.append(f"{im.name} {(-1 if not flags else 0 if all(flags) else 1):2d}\n")
            (main / f"{name}_{split}.txt").write_text("".join(lines), encoding="utf-8")
    return base


# ---------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------


def _random_box(rng: np.random.Generator, cell: tuple[int, int, int, int], lo: float, hi: float
                ) -> tuple[int, int, int, int]:
    """An integer PIL box inside ``cell`` covering lo..hi of its width and of its height."""
    x0, y0, x1, y1 = cell
    cw, ch = x1 - x0, y1 - y0
    w = min(cw, max(1, int(round(cw * rng.uniform(lo, hi)))))
    h = min(ch, max(1, int(round(ch * rng.uniform(lo, hi)))))
    left = x0 + int(rng.integers(0, cw - w + 1))
    top = y0 + int(rng.integers(0, ch - h + 1))
    return left, top, left + w, top + h


def _cells(n: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """A grid of at least ``n`` disjoint cells covering the image, row by row."""
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    xs = [round(width * i / cols) for i in range(cols + 1)]
    ys = [round(height * j / rows) for j in range(rows + 1)]
    cells = [(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(rows) for i in range(cols)]
    if any(c[2] <= c[0] or c[3] <= c[1] for c in cells[:n]):
        raise ValueError(f"a {width}x{height} image is too small for {n} objects")
    return cells


def _names(classes, known: list[str], make) -> list[str]:
    if isinstance(classes, (int, np.integer)):
        if classes < 1:
            raise ValueError(f"classes must be >= 1; got {classes}")
        return [known[k] if k < len(known) else make(k) for k in range(int(classes))]
    names = list(classes)
    if not names:
        raise ValueError("classes must not be empty")
    return names


def _splits(rng: np.random.Generator, train: int, test: int) -> list[str]:
    """train/test flags for the images of one class, test ones at seeded positions."""
    if train < 0 or test < 0:
        raise ValueError(f"images per class must be >= 0; got train={train}, test={test}")
    flags = np.array(["train"] * train + ["test"] * test, dtype=object)
    return list(flags[rng.permutation(len(flags))])


def _single_object_images(rng, n_classes: int, train_per_class: int, test_per_class: int, size, noise,
                          name, second: float = 0.0, lo: float = 0.4, hi: float = 0.85) -> list[FakeImage]:
    width, height = size
    images = []
    for c in range(n_classes):
        for j, split in enumerate(_splits(rng, train_per_class, test_per_class)):
            two = second > 0 and rng.random() < second and width >= 2
            if two:  # a second object of the same class beside the first, in the other half
                halves = _cells(2, width, height)
                first = int(rng.integers(0, 2))
                cells = [halves[first], halves[1 - first]]
            else:
                cells = [(0, 0, width, height)]
            objects = [FakeObject(c, _random_box(rng, cell, lo, hi)) for cell in cells]
            images.append(FakeImage(name(c, j), objects, split, size, GREY, noise, int(rng.integers(2 ** 31))))
    return images


def write_cub(root, classes=4, train_per_class: int = 4, test_per_class: int = 2, size=(64, 48), seed: int = 0,
              *, fmt: str = "JPEG", quality: int = JPEG_QUALITY, noise: float = 6.0) -> Path:
    """A small CUB-200-2011 under ``root``; returns the CUB_200_2011 folder (give it, or root, to the reader).

    ``classes``: a number (the first real class names, then "021.Fake_bird_021", ...) or full names
    "NNN.Name". Per class ``train_per_class`` + ``test_per_class`` images of ``size`` (w, h) or an int,
    one bird box each (40-85 % of the width and of the height).
    """
    names = _names(classes, CUB_CLASSES, lambda k: f"{k + 1:03d}.Fake_bird_{k + 1:03d}")
    rng = np.random.default_rng(seed)
    counter = iter(range(1, 10 ** 9))

    def name(c, j):
        return f"{names[c].split('.', 1)[-1]}_{j + 1:04d}_{next(counter)}"

    images = _single_object_images(rng, len(names), train_per_class, test_per_class, _size(size), noise, name)
    return write_cub_layout(root, names, images, fmt=fmt, quality=quality)


def write_stanford_dogs(root, classes=4, train_per_class: int = 4, test_per_class: int = 2, size=(64, 48),
                        seed: int = 0, *, fmt: str = "JPEG", quality: int = JPEG_QUALITY, noise: float = 6.0,
                        second_dog: float = 0.25) -> Path:
    """A small Stanford Dogs under ``root``; returns ``root``.

    ``classes``: a number (the first real folders, then "n03000020-Fake_breed_020", ...) or folder
    names "<wnid>-<breed>" (sorted). A fraction ``second_dog`` of the images holds a second annotated
    dog of the same breed beside the first (the reader crops the first).
    """
    folders = _names(classes, DOG_FOLDERS, lambda k: f"n{3000000 + k:08d}-Fake_breed_{k:03d}")
    rng = np.random.default_rng(seed)

    def name(c, j):
        return f"{folders[c].split('-', 1)[0]}_{10000 + j}"

    images = _single_object_images(rng, len(folders), train_per_class, test_per_class, _size(size), noise, name,
                                   second=second_dog, lo=0.5, hi=0.9)
    return write_stanford_dogs_layout(root, folders, images, fmt=fmt, quality=quality)


def write_voc2012(root, classes=4, train_per_class: int = 4, test_per_class: int = 2, size=(64, 48),
                  seed: int = 0, *, objects_per_image: int = 2, difficult: float = 0.25, fmt: str = "JPEG",
                  quality: int = JPEG_QUALITY, noise: float = 6.0) -> Path:
    """A small Pascal VOC 2012 under ``root``; returns the VOCdevkit/VOC2012 folder.

    ``classes``: a number (the first of :data:`VOC_CLASSES`) or VOC class names. Each class gets
    exactly ``train_per_class`` objects in train.txt's images and ``test_per_class`` in val.txt's that
    are not difficult, packed 1..``objects_per_image`` to an image in disjoint grid cells; a fraction
    ``difficult`` of the images holds one more object marked difficult (dropped by the reader's
    default ``skip_difficult``).
    """
    names = _names(classes, VOC_CLASSES, lambda k: None)
    unknown = [n for n in names if n not in VOC_CLASSES]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"classes must be distinct VOC class names ({', '.join(VOC_CLASSES)}); got {names}")
    if objects_per_image < 1:
        raise ValueError(f"objects_per_image must be >= 1; got {objects_per_image}")
    labels = [VOC_CLASSES.index(n) for n in names]
    width, height = size = _size(size)
    rng = np.random.default_rng(seed)
    images, number = [], 0
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        slots = [lab for lab in labels for _ in range(per_class)]
        slots = [slots[i] for i in rng.permutation(len(slots))]
        while slots:
            take = int(rng.integers(1, objects_per_image + 1))
            chosen, slots = slots[:take], slots[take:]
            flags = [False] * len(chosen)
            if rng.random() < difficult:
                chosen.append(labels[int(rng.integers(len(labels)))])
                flags.append(True)
            cells = _cells(len(chosen), width, height)
            cells = [cells[i] for i in rng.permutation(len(cells))[:len(chosen)]]
            objects = [FakeObject(lab, _random_box(rng, cell, 0.5, 0.9), difficult=d)
                       for lab, cell, d in zip(chosen, cells, flags)]
            number += 1
            images.append(FakeImage(f"2008_{number:06d}", objects, split, size, GREY, noise,
                                    int(rng.integers(2 ** 31))))
    return write_voc2012_layout(root, images, fmt=fmt, quality=quality)


def write_imagefolder(root, classes=("cat", "dog"), train_per_class: int = 4, test_per_class: int = 2,
                      size=(64, 48), seed: int = 0, *, fmt: str = "JPEG", quality: int = JPEG_QUALITY,
                      noise: float = 6.0, test_dir: str = "test") -> Path:
    """root/train/<class>/<n>.jpg and root/<test_dir>/<class>/<n>.jpg (``test_dir``: "test" or "val").

    ``classes``: names (a number n gives "class0".."class<n-1>"). Images are not cropped by the
    reader, so each object covers 60-95 % of the width and of the height. Returns ``root``.
    """
    if test_dir not in ("test", "val"):
        raise ValueError(f"test_dir must be 'test' or 'val'; got {test_dir!r}")
    names = _names(classes, [], lambda k: f"class{k}")
    if names != sorted(names):
        raise ValueError("ImageFolder labels follow the sorted folder names: give classes sorted")
    root = Path(root)
    rng = np.random.default_rng(seed)
    colours = class_colours(len(names))
    ext = ".jpg" if fmt.upper() in ("JPEG", "JPG") else f".{fmt.lower()}"
    images = _single_object_images(rng, len(names), train_per_class, test_per_class, _size(size), noise,
                                   lambda c, j: f"{j:04d}", lo=0.6, hi=0.95)
    for image in images:
        folder = root / ("train" if image.split == "train" else test_dir) / names[image.objects[0].label]
        _save(render(image, colours), folder / f"{image.name}{ext}", fmt, quality)
    for name in names:  # every class folder exists in both splits, even when empty
        (root / "train" / name).mkdir(parents=True, exist_ok=True)
        (root / test_dir / name).mkdir(parents=True, exist_ok=True)
    return root


def write_idx(path, array: np.ndarray, magic: int | None = None) -> Path:
    """An IDX file (gzipped when ``path`` ends in .gz): magic, big-endian dimensions, uint8 data.

    ``magic`` defaults to 2051 for 3-D images and 2049 for 1-D labels.
    """
    path = Path(path)
    array = np.asarray(array)
    if magic is None:
        magic = _IDX_MAGIC[array.ndim]
    header = int(magic).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def write_fashion_mnist(root, train: int = 12, test: int = 5, *, size: int = 28) -> Path:
    """The four gzipped Fashion-MNIST IDX files in ``root``; returns ``root``.

    Sample ``i`` of a split has label ``i % 10`` and is a constant image of value ``(10 * i + label)
    % 256``: every row identifies itself and its label.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("test", test)):
        labels = np.arange(n) % 10
        images = np.broadcast_to(((10 * np.arange(n) + labels) % 256)[:, None, None], (n, size, size))
        images_name, labels_name = _FMNIST_NAMES[split]
        write_idx(root / images_name, images)
        write_idx(root / labels_name, labels)
    return root


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def _parse_size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
        if len(parts) == 1:
            parts *= 2
        return _size(tuple(parts))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT or one number; got {text!r}") from None


def main(argv=None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(prog="python -m kc.data.fake",
                                     description="Write small fake CUB-200-2011, Stanford Dogs and VOC 2012 "
                                                 "layouts under OUT_DIR (cub/, dogs/, voc/).")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--classes", type=int, default=4, help="classes per dataset (default 4)")
    parser.add_argument("--per-class", type=int, default=4, help="training images (VOC: objects) per class")
    parser.add_argument("--test-per-class", type=int, default=None,
                        help="test images (VOC: val objects) per class (default: half of --per-class, at least 1)")
    parser.add_argument("--size", type=_parse_size, default=(64, 48), help="image size WIDTHxHEIGHT (default 64x48)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 1 <= args.classes <= len(VOC_CLASSES):
        parser.error(f"--classes must be in 1..{len(VOC_CLASSES)} (VOC has {len(VOC_CLASSES)} classes)")
    if args.per_class < 1:
        parser.error("--per-class must be >= 1")
    test = max(1, args.per_class // 2) if args.test_per_class is None else args.test_per_class
    if test < 1:
        parser.error("--test-per-class must be >= 1")
    kw = dict(classes=args.classes, train_per_class=args.per_class, test_per_class=test, size=args.size,
              seed=args.seed)
    roots = {"cub200": write_cub(args.out_dir / "cub", **kw),
             "stanford_dogs": write_stanford_dogs(args.out_dir / "dogs", **kw),
             "voc2012_objects": write_voc2012(args.out_dir / "voc", **kw)}
    for source, path in roots.items():
        print(f"{source} {path}")
    return roots


if __name__ == "__main__":
    main()
