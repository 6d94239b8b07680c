"""Datasets: readers, a prepare step to uint8 arrays, and tasks/splits over them.

The paper (Liang et al., "Knowledge Consistency between Neural Networks and
Beyond", ICLR 2020) trains and compares networks on CUB-200-2011, Stanford Dogs,
the animal categories of Pascal VOC 2012, their mix (200 birds + 120 dogs) and
Fashion-MNIST. Section 4: "both training images and testing images were cropped
using bounding boxes of objects"; no data augmentation is used.  So every
reader here crops each sample to its object's bounding box and squashes it to a
square ``image_size`` (bilinear), and nothing random happens to the pixels.

Three layers:

* readers (:data:`SOURCES`, :func:`open_source`): the official on-disk layout of
  each dataset -> a :class:`RawDataset` of uint8 ``(C, S, S)`` tensors whose
  labels are known without decoding any image;
* :func:`prepare`: a reader -> ``{train,test}_images.npy`` (uint8, memory
  mappable), ``{train,test}_labels.npy`` and ``meta.json`` (class names,
  per-channel mean/std of the training pixels), written atomically;
* :func:`load_prepared`, :class:`Task` and :class:`ImageSet`: views over the
  prepared arrays (mixes of datasets, class subsets, class groups) that produce
  normalised float batches, plus the deterministic splits :func:`half_split`
  and :func:`stratified_subset`.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

__all__ = [
    "DataError",
    "SPLITS",
    "SOURCES",
    "FASHION_MNIST_ROOT",
    "FASHION_MNIST_CLASSES",
    "VOC_CLASSES",
    "IMAGE_EXTENSIONS",
    "RawDataset",
    "FashionMNIST",
    "CUB200",
    "StanfordDogs",
    "VOC2012Objects",
    "ImageFolder",
    "open_source",
    "slug",
    "prepare",
    "Prepared",
    "load_prepared",
    "ImageSet",
    "Task",
    "half_split",
    "stratified_subset",
    "expand_classes",
    "HALVES",
]

SPLITS = ("train", "test")
HALVES = ("full", "half0", "half1")

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

CUB_URL = "https://www.vision.caltech.edu/datasets/cub_200_2011/"
DOGS_URL = "http://vision.stanford.edu/aditya86/ImageNetDogs/"
VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/"

DEFAULT_IMAGE_SIZE = 224
_BATCH = 256  # images per DataLoader batch in prepare()

try:  # Pillow >= 9.1
    _BILINEAR = Image.Resampling.BILINEAR
except AttributeError:  # pragma: no cover - old Pillow
    _BILINEAR = Image.BILINEAR


class DataError(ValueError):
    """Missing or malformed data on disk; the message names the file and how to get it."""


def slug(name: str) -> str:
    """Lower-case ``name``; runs of non-alphanumerics become ``_`` ("T-shirt/top" -> "t_shirt_top")."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_")


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    return split


def _check_image_size(image_size: int | None) -> int | None:
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer or None; got {image_size!r}")
    return int(image_size)


# ---------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------


class RawDataset(torch.utils.data.Dataset):
    """One split of a dataset as read from its original files.

    ``classes`` (names in label order), ``labels`` (np.int64, known without
    decoding images), ``channels`` (1 or 3), ``image_size``; ``ds[i]`` is
    ``(uint8 tensor (channels, image_size, image_size), int label)``.
    """

    name = "raw"
    channels = 3
    classes: list[str]
    labels: np.ndarray
    image_size: int

    def __len__(self) -> int:
        return int(len(self.labels))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={getattr(self, 'split', '?')!r}, n={len(self)}, "
                f"classes={len(self.classes)}, channels={self.channels}, image_size={self.image_size})")


class _CroppedImages(RawDataset):
    """Shared ``__getitem__`` for readers of RGB image files with optional boxes.

    Subclasses fill ``self._paths`` (list[Path]), ``self._boxes`` (list of
    ``(left, top, right, bottom)`` PIL boxes or None, or None when boxes are read
    lazily by :meth:`_box`) and ``self.labels``.
    """

    _howto = ""
    _boxes: list | None = None

    def _box(self, i: int):
        return None if self._boxes is None else self._boxes[i]

    def __getitem__(self, i):
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        path = self._paths[i]
        box = self._box(i)
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
        except FileNotFoundError:
            raise DataError(f"missing image file {path}. {self._howto}") from None
        except (OSError, Image.UnidentifiedImageError, ValueError) as e:
            raise DataError(f"cannot decode image file {path} ({e}). {self._howto}") from None
        if box is not None:
            im = im.crop(_clamp_box(box, im.width, im.height))
        if im.size != (self.image_size, self.image_size):
            im = im.resize((self.image_size, self.image_size), _BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), int(self.labels[i])


def _clamp_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    """Round a ``(left, top, right, bottom)`` box and clamp it to the image (at least 1x1)."""
    left, top, right, bottom = (int(round(float(v))) for v in box)
    left = min(max(left, 0), width - 1)
    top = min(max(top, 0), height - 1)
    right = min(max(right, left + 1), width)
    bottom = min(max(bottom, top + 1), height)
    return left, top, right, bottom


def _read_lines(path: Path, howto: str) -> list[tuple[int, list[str]]]:
    """Non-empty lines of a text file as ``(line number, fields)``; missing file -> DataError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"missing file {path}. {howto}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path} ({e}). {howto}") from None
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _parse_table(path: Path, ncols: int, convert, howto: str, *, rest_is_one: bool = False) -> dict[int, Any]:
    """``<id> <fields...>`` lines -> {id: converted fields}; malformed -> DataError naming the line."""
    out: dict[int, Any] = {}
    for n, fields in _read_lines(path, howto):
        try:
            if rest_is_one:
                if len(fields) < 2:
                    raise ValueError("expected '<id> <value>'")
                key, vals = int(fields[0]), [" ".join(fields[1:])]
            else:
                if len(fields) != ncols + 1:
                    raise ValueError(f"expected {ncols + 1} fields, found {len(fields)}")
                key, vals = int(fields[0]), fields[1:]
            value = convert(vals)
        except ValueError as e:
            raise DataError(f"malformed line {n} in {path}: {e}. {howto}") from None
        if key in out:
            raise DataError(f"malformed {path}: id {key} appears twice (line {n}). {howto}")
        out[key] = value
    return out


# -- Fashion-MNIST -------------------------------------------------------------

_FMNIST_FILES = {
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("test", "images"): "t10k-images-idx3-ubyte.gz",
    ("test", "labels"): "t10k-labels-idx1-ubyte.gz",
}
_IDX_MAGIC = {"images": (2051, 3), "labels": (2049, 1)}


def _fmnist_howto(root) -> str:
    return ("To get Fashion-MNIST install the Debian package `dataset-fashion-mnist` "
            "(sudo apt-get install dataset-fashion-mnist), or set download: true "
            f"(fetches it with torchvision into {root}), or point root at a folder holding the four files "
            f"{', '.join(_FMNIST_FILES.values())}.")


def _find_idx(root: Path, name: str) -> Path | None:
    """The IDX file ``name`` in root (or torchvision's root/FashionMNIST/raw), .gz or uncompressed."""
    for folder in (root, root / "FashionMNIST" / "raw"):
        for candidate in (folder / name, folder / name[:-3]):
            if candidate.is_file():
                return candidate
    return None


def _open_idx(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _idx_header(path: Path, kind: str, howto: str, data: bytes | None = None) -> tuple[int, ...]:
    magic_expected, ndim = _IDX_MAGIC[kind]
    nbytes = 4 + 4 * ndim
    try:
        if data is None:
            with _open_idx(path) as f:
                data = f.read(nbytes)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"malformed IDX file {path}: {e}. {howto}") from None
    if len(data) < nbytes:
        raise DataError(f"malformed IDX file {path}: truncated header. {howto}")
    magic = int.from_bytes(data[:4], "big")
    if magic != magic_expected:
        raise DataError(f"malformed IDX file {path}: magic number {magic}, expected {magic_expected} "
                        f"for {kind}. {howto}")
    return tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))


def _read_idx(path: Path, kind: str, howto: str) -> np.ndarray:
    try:
        with _open_idx(path) as f:
            data = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"malformed IDX file {path}: {e}. {howto}") from None
    dims = _idx_header(path, kind, howto, data)
    header = 4 + 4 * len(dims)
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise DataError(f"malformed IDX file {path}: {len(data)} bytes, expected {expected} "
                        f"for dimensions {dims}. {howto}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _resize_u8(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a uint8 batch (N, C, H, W) -> (N, C, size, size), vectorised."""
    if x.shape[-2:] == (size, size):
        return np.ascontiguousarray(x)
    t = torch.from_numpy(np.ascontiguousarray(x)).float()
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear",
                                        align_corners=False, antialias=True)
    return t.round_().clamp_(0, 255).to(torch.uint8).numpy()


class FashionMNIST(RawDataset):
    """Fashion-MNIST from its four IDX ``.gz`` files (28x28 grey, 10 classes)."""

    name = "fashion_mnist"
    channels = 1

    def __init__(self, root=None, split="train", *, image_size=None, download=False, **_ignored):
        self.split = _check_split(split)
        self.root = Path(FASHION_MNIST_ROOT if root is None else root)
        howto = _fmnist_howto(self.root)
        paths = {kind: _find_idx(self.root, _FMNIST_FILES[(split, kind)]) for kind in ("images", "labels")}
        if any(p is None for p in paths.values()) and download:
            import torchvision  # lazy: ~1 s import, only needed to fetch

            torchvision.datasets.FashionMNIST(str(self.root), train=(split == "train"), download=True)
            paths = {kind: _find_idx(self.root, _FMNIST_FILES[(split, kind)]) for kind in ("images", "labels")}
        for kind, p in paths.items():
            if p is None:
                raise DataError(f"missing Fashion-MNIST file {self.root / _FMNIST_FILES[(split, kind)]}. {howto}")
        self._howto = howto
        self._images_path = paths["images"]
        self._labels_path = paths["labels"]
        labels = _read_idx(self._labels_path, "labels", howto)
        dims = _idx_header(self._images_path, "images", howto)
        if dims[0] != len(labels):
            raise DataError(f"malformed IDX file {self._images_path}: {dims[0]} images but "
                            f"{len(labels)} labels in {self._labels_path}. {howto}")
        if dims[1] != dims[2]:
            raise DataError(f"malformed IDX file {self._images_path}: images are {dims[1]}x{dims[2]}, "
                            f"expected square images. {howto}")
        if len(labels) and labels.max() >= len(FASHION_MNIST_CLASSES):
            raise DataError(f"malformed IDX file {self._labels_path}: label {int(labels.max())} "
                            f"outside 0..{len(FASHION_MNIST_CLASSES) - 1}. {howto}")
        self.native_size = dims[1]
        self.image_size = _check_image_size(image_size) or self.native_size
        self.labels = labels.astype(np.int64)
        self.classes = list(FASHION_MNIST_CLASSES)
        self._array: np.ndarray | None = None

    def _images(self) -> np.ndarray:
        if self._array is None:
            self._array = _read_idx(self._images_path, "images", self._howto)
        return self._array

    def get_batch(self, indices) -> np.ndarray:
        """uint8 array (n, 1, S, S) of the given samples, vectorised (no per-image loop)."""
        x = self._images()[np.asarray(indices, dtype=np.int64)][:, None]
        return _resize_u8(x, self.image_size)

    def __getitem__(self, i):
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        return torch.from_numpy(self.get_batch([i])[0]), int(self.labels[i])

    def __getstate__(self):  # do not ship the decoded array to DataLoader workers
        state = dict(self.__dict__)
        state["_array"] = None
        return state


# -- CUB-200-2011 -------------------------------------------------------------------

_CUB_HOWTO = f"Download CUB-200-2011 from {CUB_URL} and point root at the CUB_200_2011 folder."


class CUB200(_CroppedImages):
    """CUB-200-2011 (official layout and train/test split), each image cropped to its bird's box.

    Class names are those of classes.txt without the numeric prefix
    ("001.Black_footed_Albatross" -> "Black_footed_Albatross").
    """

    name = "cub200"
    _howto = _CUB_HOWTO

    def __init__(self, root, split="train", *, image_size=None, **_ignored):
        self.split = _check_split(split)
        if root is None:
            raise DataError(f"cub200 needs a root folder. {_CUB_HOWTO}")
        root = Path(root)
        if not (root / "images.txt").exists() and (root / "CUB_200_2011").is_dir():
            root = root / "CUB_200_2011"
        self.root = root
        self.image_size = _check_image_size(image_size) or DEFAULT_IMAGE_SIZE
        h = _CUB_HOWTO
        for name in ("images.txt", "image_class_labels.txt", "train_test_split.txt",
                     "bounding_boxes.txt", "classes.txt"):
            if not (root / name).is_file():
                raise DataError(f"missing file {root / name}. {h}")
        if not (root / "images").is_dir():
            raise DataError(f"missing folder {root / 'images'}. {h}")
        images = _parse_table(root / "images.txt", 1, lambda v: v[0], h, rest_is_one=True)
        labels = _parse_table(root / "image_class_labels.txt", 1, lambda v: int(v[0]), h)
        is_train = _parse_table(root / "train_test_split.txt", 1, lambda v: int(v[0]), h)
        boxes = _parse_table(root / "bounding_boxes.txt", 4, lambda v: tuple(float(x) for x in v), h)
        class_table = _parse_table(root / "classes.txt", 1, lambda v: v[0], h, rest_is_one=True)
        n_classes = len(class_table)
        if sorted(class_table) != list(range(1, n_classes + 1)):
            raise DataError(f"malformed {root / 'classes.txt'}: class ids must be 1..{n_classes}. {h}")
        self.classes = [re.sub(r"^\d+\.", "", class_table[k]) for k in range(1, n_classes + 1)]
        for table, fname in ((labels, "image_class_labels.txt"), (is_train, "train_test_split.txt"),
                             (boxes, "bounding_boxes.txt")):
            missing = [k for k in images if k not in table]
            if missing:
                raise DataError(f"malformed {root / fname}: no entry for image id {missing[0]} "
                                f"(listed in images.txt). {h}")
        want = 1 if split == "train" else 0
        ids = sorted(k for k in images if is_train[k] == want)
        bad = [k for k in ids if not 1 <= labels[k] <= n_classes]
        if bad:
            raise DataError(f"malformed {root / 'image_class_labels.txt'}: image {bad[0]} has class "
                            f"{labels[bad[0]]}, outside 1..{n_classes}. {h}")
        self.ids = np.asarray(ids, dtype=np.int64)
        self.labels = np.asarray([labels[k] - 1 for k in ids], dtype=np.int64)
        self._paths = [root / "images" / images[k] for k in ids]
        self._boxes = [(x, y, x + w, y + bh) for x, y, w, bh in (boxes[k] for k in ids)]


# -- Stanford Dogs ----------------------------------------------------------------

_DOGS_HOWTO = (f"Download Stanford Dogs (images.tar, annotation.tar, lists.tar) from {DOGS_URL} "
               "and extract them into root (Images/, Annotation/, train_list.mat, test_list.mat).")


def _mat_strings(values, path: Path) -> list[str]:
    """Strings of a MATLAB cell array as loadmat returns it (object array of 1-element arrays or str)."""
    out = []
    for v in np.asarray(values, dtype=object).ravel():
        while isinstance(v, np.ndarray):
            if v.size != 1:
                raise DataError(f"malformed {path}: expected a cell array of strings. {_DOGS_HOWTO}")
            v = v.ravel()[0]
        if isinstance(v, bytes):
            v = v.decode()
        out.append(str(v).strip())
    return out


class StanfordDogs(_CroppedImages):
    """Stanford Dogs (official train/test lists), each image cropped to its first dog's box.

    Class names are the breed part of the Images/ folder names (after the first
    '-'), in the official label order (sorted folder names).  Boxes are read from
    the per-image XML annotations when a sample is decoded.
    """

    name = "stanford_dogs"
    _howto = _DOGS_HOWTO

    def __init__(self, root, split="train", *, image_size=None, **_ignored):
        self.split = _check_split(split)
        if root is None:
            raise DataError(f"stanford_dogs needs a root folder. {_DOGS_HOWTO}")
        self.root = root = Path(root)
        self.image_size = _check_image_size(image_size) or DEFAULT_IMAGE_SIZE
        h = _DOGS_HOWTO
        list_path = root / f"{split}_list.mat"
        for p in (root / "Images", root / "Annotation"):
            if not p.is_dir():
                raise DataError(f"missing folder {p}. {h}")
        if not list_path.is_file():
            raise DataError(f"missing file {list_path}. {h}")
        import scipy.io  # lazy: only this reader needs scipy

        try:
            mat = scipy.io.loadmat(str(list_path))
        except Exception as e:  # scipy raises several types for bad files
            raise DataError(f"malformed {list_path}: {e}. {h}") from None
        for key in ("file_list", "labels"):
            if key not in mat:
                raise DataError(f"malformed {list_path}: no '{key}' variable. {h}")
        files = _mat_strings(mat["file_list"], list_path)
        if "annotation_list" in mat:
            annotations = _mat_strings(mat["annotation_list"], list_path)
        else:
            annotations = [os.path.splitext(f)[0] for f in files]
        try:
            labels = np.asarray(mat["labels"], dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise DataError(f"malformed {list_path}: 'labels' is not numeric. {h}") from None
        if not (len(files) == len(annotations) == len(labels)):
            raise DataError(f"malformed {list_path}: file_list, annotation_list and labels differ in length. {h}")
        folders = sorted(d.name for d in (root / "Images").iterdir() if d.is_dir() and not d.name.startswith("."))
        if not folders:
            raise DataError(f"no class folders in {root / 'Images'}. {h}")
        self.classes = [f.split("-", 1)[1] if "-" in f else f for f in folders]
        if len(labels) and (labels.min() < 1 or labels.max() > len(folders) or np.any(labels != np.round(labels))):
            raise DataError(f"malformed {list_path}: labels must be integers in 1..{len(folders)} "
                            f"(the folders of {root / 'Images'}). {h}")
        self.labels = labels.astype(np.int64) - 1
        for f, lab in zip(files, self.labels):
            if f.split("/", 1)[0] != folders[lab]:
                raise DataError(f"malformed {list_path}: {f} has label {lab + 1} but that label's folder "
                                f"in {root / 'Images'} is {folders[lab]}. {h}")
        self._paths = [root / "Images" / f for f in files]
        self._annotations = [root / "Annotation" / a for a in annotations]

    def _box(self, i: int):
        path = self._annotations[i]
        try:
            tree = ET.parse(path)
        except FileNotFoundError:
            raise DataError(f"missing annotation file {path}. {_DOGS_HOWTO}") from None
        except (ET.ParseError, OSError) as e:
            raise DataError(f"malformed annotation file {path}: {e}. {_DOGS_HOWTO}") from None
        obj = tree.getroot().find("object")
        box = None if obj is None else obj.find("bndbox")
        try:
            return tuple(float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise DataError(f"malformed annotation file {path}: no <object><bndbox> with "
                            f"xmin/ymin/xmax/ymax. {_DOGS_HOWTO}") from None


# -- Pascal VOC 2012 objects ---------------------------------------------------------

_VOC_HOWTO = (f"Download the VOC2012 trainval tar from {VOC_URL} and point root at the folder "
              "holding VOCdevkit/VOC2012.")


class VOC2012Objects(_CroppedImages):
    """Every annotated object of Pascal VOC 2012 as one sample, cropped to its box.

    ``split="train"`` reads ImageSets/Main/train.txt and ``split="test"`` reads
    val.txt: the annotations of VOC's own test set are not public.  Labels are
    indices into :data:`VOC_CLASSES` (20 classes, standard order).  VOC boxes are
    1-based inclusive pixel coordinates.  ``skip_difficult`` drops objects marked
    ``<difficult>1</difficult>``.  The annotations of the listed images are parsed
    when the reader opens (no image is decoded).
    """

    name = "voc2012_objects"
    _howto = _VOC_HOWTO

    def __init__(self, root, split="train", *, image_size=None, skip_difficult=True, **_ignored):
        self.split = _check_split(split)
        if root is None:
            raise DataError(f"voc2012_objects needs a root folder. {_VOC_HOWTO}")
        root = Path(root)
        for cand in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
            if (cand / "ImageSets").is_dir() or (cand / "Annotations").is_dir():
                root = cand
                break
        self.root = root
        self.image_size = _check_image_size(image_size) or DEFAULT_IMAGE_SIZE
        self.skip_difficult = bool(skip_difficult)
        h = _VOC_HOWTO
        list_path = root / "ImageSets" / "Main" / ("train.txt" if split == "train" else "val.txt")
        if not (root / "Annotations").is_dir():
            raise DataError(f"missing folder {root / 'Annotations'}. {h}")
        image_ids = [fields[0] for _, fields in _read_lines(list_path, h)]
        class_index = {c: k for k, c in enumerate(VOC_CLASSES)}
        self.classes = list(VOC_CLASSES)
        paths, boxes, labels, image_of, difficult = [], [], [], [], []
        for image_id in image_ids:
            xml_path = root / "Annotations" / f"{image_id}.xml"
            try:
                ann = ET.parse(xml_path).getroot()
            except FileNotFoundError:
                raise DataError(f"missing annotation file {xml_path} (listed in {list_path}). {h}") from None
            except (ET.ParseError, OSError) as e:
                raise DataError(f"malformed annotation file {xml_path}: {e}. {h}") from None
            jpg = root / "JPEGImages" / f"{image_id}.jpg"
            for obj in ann.findall("object"):
                name = (obj.findtext("name") or "").strip()
                if name not in class_index:
                    raise DataError(f"malformed annotation file {xml_path}: unknown class {name!r} "
                                    f"(VOC classes: {', '.join(VOC_CLASSES)}). {h}")
                is_difficult = (obj.findtext("difficult") or "0").strip() == "1"
                if is_difficult and self.skip_difficult:
                    continue
                bb = obj.find("bndbox")
                try:
                    xmin, ymin, xmax, ymax = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
                except (AttributeError, TypeError, ValueError):
                    raise DataError(f"malformed annotation file {xml_path}: object {name!r} has no "
                                    f"valid <bndbox>. {h}") from None
                paths.append(jpg)
                boxes.append((xmin - 1, ymin - 1, xmax, ymax))  # 1-based inclusive -> PIL box
                labels.append(class_index[name])
                image_of.append(image_id)
                difficult.append(is_difficult)
        self._paths = paths
        self._boxes = boxes
        self.labels = np.asarray(labels, dtype=np.int64)
        self.image_ids = image_of
        self.difficult = np.asarray(difficult, dtype=bool)


# -- image folders ---------------------------------------------------------------------


class ImageFolder(_CroppedImages):
    """Users' own data: root/train/<class>/<images> and root/test/<class>/<images> (or root/val).

    Classes are the sorted folder names of root/train; images (jpg, jpeg, png,
    bmp, webp, any case) are read in sorted order, converted to RGB and resized
    without cropping.
    """

    name = "imagefolder"

    def __init__(self, root, split="train", *, image_size=None, **_ignored):
        self.split = _check_split(split)
        if root is None:
            raise DataError("imagefolder needs a root folder holding train/<class>/ and test/<class>/.")
        self.root = root = Path(root)
        self._howto = f"Put images in {root}/train/<class>/ and {root}/test/<class>/ (or val/)."
        self.image_size = _check_image_size(image_size) or DEFAULT_IMAGE_SIZE
        train_dir = root / "train"
        if not train_dir.is_dir():
            raise DataError(f"missing folder {train_dir}. {self._howto}")
        self.classes = _class_dirs(train_dir)
        if not self.classes:
            raise DataError(f"no class folders in {train_dir}. {self._howto}")
        if split == "train":
            folder = train_dir
        else:
            folder = root / "test"
            if not folder.is_dir() and (root / "val").is_dir():
                folder = root / "val"
            if not folder.is_dir():
                raise DataError(f"missing folder {root / 'test'} (nor {root / 'val'}). {self._howto}")
        index = {c: k for k, c in enumerate(self.classes)}
        paths, labels = [], []
        for c in _class_dirs(folder):
            if c not in index:
                raise DataError(f"class folder {folder / c} is not a class of {train_dir} "
                                f"(classes: {', '.join(self.classes)}).")
            files = sorted(p for p in (folder / c).iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            paths += files
            labels += [index[c]] * len(files)
        self._paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)


def _class_dirs(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


SOURCES: dict[str, type[RawDataset]] = {
    "fashion_mnist": FashionMNIST,
    "cub200": CUB200,
    "stanford_dogs": StanfordDogs,
    "voc2012_objects": VOC2012Objects,
    "imagefolder": ImageFolder,
}


def open_source(source: str, root, split: str, *, image_size: int | None = None,
                download: bool = False, skip_difficult: bool = True) -> RawDataset:
    """Open one split ("train" or "test") of dataset ``source`` (a key of :data:`SOURCES`) at ``root``."""
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}; valid sources: {', '.join(SOURCES)}")
    _check_split(split)
    return SOURCES[source](root, split, image_size=image_size, download=download,
                           skip_difficult=skip_difficult)


# ---------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------


def _as_labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional; got shape {labels.shape}")
    return labels


def _rank_within_class(codes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random order grouped by class, and each sample's rank inside its class."""
    n = len(codes)
    order = np.lexsort((rng.random(n), codes))
    sorted_codes = codes[order]
    pos = np.arange(n)
    start = np.r_[True, sorted_codes[1:] != sorted_codes[:-1]] if n else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(start, pos, 0)) if n else pos
    rank = np.empty(n, dtype=np.int64)
    rank[order] = pos - first
    return order, rank


def expand_classes(members, dataset_names: Sequence[str], class_counts: Sequence[int]) -> list:
    """Expand ``"dataset:<name>"`` to every class index of that dataset in a mix; keep other members.

    ``expand_classes(["dataset:dogs"], ["cub", "dogs"], [200, 120]) == list(range(200, 320))``: the
    paper's bird-vs-dog task groups all 200 CUB classes against all 120 dog classes.
    """
    if isinstance(members, (str, int, np.integer)):
        members = [members]
    offsets = np.cumsum([0] + list(class_counts))
    out: list = []
    for m in members:
        if isinstance(m, str) and m.startswith("dataset:"):
            name = m.split(":", 1)[1]
            if name not in dataset_names:
                raise ValueError(f"{m!r}: {name!r} is not one of this task's datasets ({', '.join(dataset_names)})")
            k = list(dataset_names).index(name)
            out += list(range(int(offsets[k]), int(offsets[k + 1])))
        else:
            out.append(m)
    return out


def half_split(labels, which: str, seed: int = 0) -> np.ndarray:
    """Sorted int64 indices of "full" (all), "half0" or "half1" of ``labels``.

    The halves are disjoint, cover everything and are class-stratified: the
    samples, grouped by class in a seeded random order, alternate between the
    halves (the alternation runs on across classes, so both the halves and each
    class differ in size by at most one).
    """
    if which not in HALVES:
        raise ValueError(f"unknown split {which!r}; valid: {', '.join(HALVES)}")
    labels = _as_labels(labels)
    n = len(labels)
    if which == "full":
        return np.arange(n, dtype=np.int64)
    _, codes = np.unique(labels, return_inverse=True)
    order = np.lexsort((np.random.default_rng(seed).random(n), codes.ravel()))
    half = int(which[-1])
    return np.sort(order[half::2]).astype(np.int64)


def stratified_subset(labels, n: int, seed: int = 0) -> np.ndarray:
    """Sorted int64 indices of a seeded class-balanced subset of size ``min(n, len(labels))``.

    Samples are taken round-robin over the classes (in a seeded random order
    inside each class); classes that run out leave their share to the others,
    and which classes get the one extra sample of an uneven division is random.
    """
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    labels = _as_labels(labels)
    total = len(labels)
    n = int(n)
    if n >= total:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng(seed)
    _, codes = np.unique(labels, return_inverse=True)
    codes = codes.ravel()
    _, rank = _rank_within_class(codes, rng)
    class_priority = rng.permutation(int(codes.max()) + 1 if total else 0)
    take = np.lexsort((class_priority[codes], rank))[:n]
    return np.sort(take).astype(np.int64)


# ---------------------------------------------------------------------------
# prepare
# ---------------------------------------------------------------------------


def _write_split(ds: RawDataset, indices: np.ndarray, images_path: Path, labels_path: Path,
                 num_workers: int, progress: bool, desc: str) -> np.ndarray:
    """Decode ``ds[indices]`` into ``images_path`` chunk by chunk; return the (C, 256) pixel histogram."""
    c, s = ds.channels, ds.image_size
    n = len(indices)
    labels = ds.labels[indices].astype(np.int64)
    np.save(labels_path, labels)
    hist = np.zeros((c, 256), dtype=np.int64)
    if n == 0:
        np.save(images_path, np.zeros((0, c, s, s), dtype=np.uint8))
        return hist
    out = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8, shape=(n, c, s, s))
    bar = None
    if progress:
        from tqdm.auto import tqdm  # lazy

        bar = tqdm(total=n, desc=desc, unit="img")

    def chunks() -> Iterator[np.ndarray]:
        if hasattr(ds, "get_batch"):  # vectorised readers (Fashion-MNIST)
            step = max(1, min(n, (1 << 24) // (c * s * s)))
            for lo in range(0, n, step):
                yield ds.get_batch(indices[lo:lo + step])
            return
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(ds, indices.tolist()), batch_size=_BATCH, shuffle=False,
            num_workers=num_workers)
        pos = 0
        for x, y in loader:
            if not np.array_equal(y.numpy(), labels[pos:pos + len(y)]):
                raise DataError(f"{type(ds).__name__}: labels of decoded samples disagree with .labels")
            pos += len(y)
            yield x.numpy()

    try:
        pos = 0
        for batch in chunks():
            if batch.shape[1:] != (c, s, s) or batch.dtype != np.uint8:
                raise DataError(f"{type(ds).__name__} produced {batch.dtype} images of shape "
                                f"{batch.shape[1:]}, expected uint8 {(c, s, s)}")
            out[pos:pos + len(batch)] = batch
            for ch in range(c):
                hist[ch] += np.bincount(batch[:, ch].ravel(), minlength=256)
            pos += len(batch)
            if bar is not None:
                bar.update(len(batch))
        if pos != n:
            raise DataError(f"{type(ds).__name__} produced {pos} images, expected {n}")
        out.flush()
    finally:
        del out
        if bar is not None:
            bar.close()
    return hist


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished ``tmp`` to ``out_dir``, replacing an old out_dir."""
    old = None
    if out_dir.exists() or out_dir.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        old = old / "x"
        os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        if old is not None:
            os.rename(old, out_dir)
            shutil.rmtree(old.parent, ignore_errors=True)
        raise
    if old is not None:
        if old.is_symlink() or not old.is_dir():
            old.unlink()
        shutil.rmtree(old.parent, ignore_errors=True)


def prepare(source: str, root, out_dir, *, image_size: int | None = None, max_train: int | None = None,
            max_test: int | None = None, seed: int = 0, download: bool = False,
            skip_difficult: bool = True, num_workers: int = 0, progress: bool = False) -> dict:
    """Materialise a dataset into ``out_dir`` and return its meta.

    Writes ``{train,test}_images.npy`` (uint8 (N, C, S, S)), ``{train,test}_labels.npy``
    (int64) and ``meta.json``.  ``max_train``/``max_test`` keep a seeded
    class-stratified subset (chosen from the labels, so only kept images are
    decoded; original order kept).  Everything is written into a temporary
    sibling folder that then replaces ``out_dir`` by rename.
    """
    if root is None and source == "fashion_mnist":
        root = FASHION_MNIST_ROOT
    out_dir = Path(out_dir)
    datasets = {split: open_source(source, root, split, image_size=image_size, download=download,
                                   skip_difficult=skip_difficult) for split in SPLITS}
    train = datasets["train"]
    limits = {"train": max_train, "test": max_test}
    chosen = {}
    for split, ds in datasets.items():
        m = limits[split]
        chosen[split] = (np.arange(len(ds), dtype=np.int64) if m is None
                         else stratified_subset(ds.labels, m, seed))
    if len(chosen["train"]) == 0:
        raise DataError(f"{source} at {root}: the train split has no samples")
    if datasets["test"].classes != train.classes:
        raise DataError(f"{source} at {root}: train and test splits have different classes")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o755)
        hists = {}
        for split, ds in datasets.items():
            hists[split] = _write_split(ds, chosen[split], tmp / f"{split}_images.npy",
                                        tmp / f"{split}_labels.npy", num_workers, progress,
                                        f"{source} {split}")
        hist = hists["train"].astype(np.float64)
        values = np.arange(256, dtype=np.float64) / 255.0
        count = hist.sum(axis=1)
        mean = hist @ values / count
        second = hist @ (values ** 2) / count
        std = np.sqrt(np.maximum(second - mean ** 2, 0.0))
        meta = {
            "source": source,
            "root": str(root),
            "classes": list(train.classes),
            "channels": int(train.channels),
            "image_size": int(train.image_size),
            "counts": {split: int(len(chosen[split])) for split in SPLITS},
            "mean": [float(v) for v in mean],
            "std": [float(v) for v in std],
            "seed": seed,
            "max_train": max_train,
            "max_test": max_test,
            "skip_difficult": bool(skip_difficult),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


# ---------------------------------------------------------------------------
# Prepared arrays
# ---------------------------------------------------------------------------

_META_KEYS = ("source", "classes", "channels", "image_size", "counts", "mean", "std")


class Prepared:
    """A folder written by :func:`prepare`: ``.meta``, ``.classes``, ``.images(split)``, ``.labels(split)``."""

    def __init__(self, path, meta: dict):
        self.path = Path(path)
        self.meta = meta
        self._labels: dict[str, np.ndarray] = {}

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def channels(self) -> int:
        return int(self.meta["channels"])

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.meta["mean"], dtype=np.float64)

    @property
    def std(self) -> np.ndarray:
        return np.asarray(self.meta["std"], dtype=np.float64)

    def count(self, split: str) -> int:
        return int(self.meta["counts"][_check_split(split)])

    def _howto(self) -> str:
        return f"Run the prepare stage again to rebuild {self.path}."

    def images_path(self, split: str) -> Path:
        return self.path / f"{_check_split(split)}_images.npy"

    def images(self, split: str) -> np.ndarray:
        """The uint8 (N, C, S, S) images of ``split``, memory-mapped read-only."""
        path = self.images_path(split)
        arr = _load_npy(path, True, self._howto())
        expected = (self.count(split), self.channels, self.image_size, self.image_size)
        if arr.dtype != np.uint8 or arr.shape != expected:
            raise DataError(f"malformed {path}: {arr.dtype} {arr.shape}, expected uint8 {expected}. {self._howto()}")
        return arr

    def labels(self, split: str) -> np.ndarray:
        """The int64 labels of ``split`` (read once, then cached)."""
        if split not in self._labels:
            path = self.path / f"{_check_split(split)}_labels.npy"
            arr = _load_npy(path, False, self._howto())
            n = len(self.classes)
            if (arr.dtype != np.int64 or arr.shape != (self.count(split),)
                    or (len(arr) and (arr.min() < 0 or arr.max() >= n))):
                raise DataError(f"malformed {path}: expected {self.count(split)} int64 labels in 0..{n - 1}. "
                                f"{self._howto()}")
            self._labels[split] = arr
        return self._labels[split]

    def image_set(self, split: str) -> "ImageSet":
        """All samples of ``split`` with this dataset's own classes and normalisation."""
        return ImageSet(self.images(split), self.labels(split), self.mean, self.std, self.classes,
                        paths=[self.images_path(split)])

    def __repr__(self) -> str:
        return (f"Prepared({str(self.path)!r}, source={self.meta.get('source')!r}, "
                f"classes={len(self.classes)}, counts={self.meta.get('counts')})")


def _load_npy(path: Path, mmap: bool, howto: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"missing file {path}. {howto}") from None
    except (OSError, ValueError) as e:
        raise DataError(f"malformed {path}: {e}. {howto}") from None


def load_prepared(path) -> Prepared:
    """Open a folder written by :func:`prepare` (checks meta.json and that the four arrays exist)."""
    if isinstance(path, Prepared):
        return path
    path = Path(path)
    meta_path = path / "meta.json"
    howto = f"Run the prepare stage to create {path}."
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"missing file {meta_path}. {howto}") from None
    except (OSError, ValueError) as e:
        raise DataError(f"malformed {meta_path}: {e}. {howto}") from None
    if not isinstance(meta, dict) or any(k not in meta for k in _META_KEYS):
        raise DataError(f"malformed {meta_path}: needs keys {', '.join(_META_KEYS)}. {howto}")
    try:
        ok = (len(meta["mean"]) == len(meta["std"]) == int(meta["channels"])
              and all(s in meta["counts"] for s in SPLITS))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"malformed {meta_path}: mean/std/channels/counts disagree. {howto}")
    for split in SPLITS:
        for kind in ("images", "labels"):
            f = path / f"{split}_{kind}.npy"
            if not f.is_file():
                raise DataError(f"missing file {f}. {howto}")
    return Prepared(path, meta)


# ---------------------------------------------------------------------------
# ImageSet
# ---------------------------------------------------------------------------


class ImageSet:
    """A lazy view over one or more uint8 image arrays, with labels and normalisation.

    ``ImageSet(images, labels, mean, std, classes)``: ``images`` is one uint8
    array (N, C, S, S) (typically a memmap) or a list of them; sample ``i`` of the
    view is row ``rows[i]`` of array ``sources[i]`` (defaults: all rows of all
    arrays, in order) with label ``labels[i]``.  ``paths`` (optional, one .npy
    path per array) lets a pickled view re-open its memmaps instead of copying
    them (DataLoader workers, DDP).
    """

    def __init__(self, images, labels, mean, std, classes, *, sources=None, rows=None, paths=None):
        arrays = list(images) if isinstance(images, (list, tuple)) else [images]
        if not arrays:
            raise ValueError("ImageSet needs at least one image array")
        shape = arrays[0].shape[1:]
        for a in arrays:
            if a.ndim != 4 or a.shape[1:] != shape or a.dtype != np.uint8:
                raise ValueError(f"image arrays must be uint8 (N, C, S, S) of one shape; got {a.dtype} {a.shape}")
        if shape[1] != shape[2]:
            raise ValueError(f"images must be square; got {shape}")
        if sources is None and rows is None:
            sources = np.concatenate([np.full(len(a), k, dtype=np.int64) for k, a in enumerate(arrays)])
            rows = np.concatenate([np.arange(len(a), dtype=np.int64) for a in arrays])
        elif sources is None and len(arrays) == 1:
            sources = np.zeros(len(rows), dtype=np.int64)
        elif sources is None or rows is None:
            raise ValueError("with several image arrays give both sources and rows (or neither)")
        self._arrays = arrays
        self._sources = np.asarray(sources, dtype=np.int64)
        self._rows = np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        if not (len(self._sources) == len(self._rows) == len(self.labels)):
            raise ValueError("labels, sources and rows must have one entry per sample")
        self._paths = list(paths) if paths is not None else [None] * len(arrays)
        if len(self._paths) != len(arrays):
            raise ValueError("paths must give one entry per image array")
        self.classes = list(classes)
        self.channels = int(shape[0])
        self.image_size = int(shape[1])
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(std, dtype=np.float64).reshape(-1)
        if self.mean.shape != (self.channels,) or self.std.shape != (self.channels,):
            raise ValueError(f"mean and std need one value per channel ({self.channels})")
        safe_std = np.where(self.std > 0, self.std, 1.0)
        self._scale = torch.tensor(1.0 / (255.0 * safe_std), dtype=torch.float32).view(1, -1, 1, 1)
        self._shift = torch.tensor(-self.mean / safe_std, dtype=torch.float32).view(1, -1, 1, 1)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(len(self.labels))

    def __repr__(self) -> str:
        return (f"ImageSet(n={len(self)}, classes={len(self.classes)}, channels={self.channels}, "
                f"image_size={self.image_size}, arrays={len(self._arrays)})")

    def _index(self, indices) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise IndexError(f"boolean mask of shape {idx.shape} for {len(self)} samples")
            return np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False).reshape(-1)
        n = len(self)
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"indices out of range for {n} samples")
        return np.where(idx < 0, idx + n, idx)

    def subset(self, indices) -> "ImageSet":
        """The samples ``indices`` of this view, in that order (no image copy)."""
        idx = self._index(indices)
        new = object.__new__(ImageSet)
        new.__dict__.update(self.__dict__)
        new._sources = self._sources[idx]
        new._rows = self._rows[idx]
        new.labels = self.labels[idx]
        return new

    def relabel(self, labels, classes) -> "ImageSet":
        """The same samples with other labels/class names (used by tasks)."""
        new = self.subset(np.arange(len(self)))
        new.labels = np.asarray(labels, dtype=np.int64)
        if new.labels.shape != (len(self),):
            raise ValueError("relabel needs one label per sample")
        new.classes = list(classes)
        return new

    def raw(self, indices) -> np.ndarray:
        """uint8 images (B, C, S, S) of ``indices``: one sorted fancy-index per underlying array."""
        idx = self._index(indices)
        src, rows = self._sources[idx], self._rows[idx]
        out = np.empty((len(idx), self.channels, self.image_size, self.image_size), dtype=np.uint8)
        for k, arr in enumerate(self._arrays):
            pos = np.flatnonzero(src == k) if len(self._arrays) > 1 else np.arange(len(idx))
            if len(pos) == 0:
                continue
            r = rows[pos]
            order = np.argsort(r, kind="stable")
            out[pos[order]] = arr[r[order]]
        return out

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``: float32 (B, C, S, S) as ``(pixel/255 - mean)/std`` per channel, int64 labels."""
        idx = self._index(indices)
        x = torch.from_numpy(self.raw(idx)).float()
        x.mul_(self._scale).add_(self._shift)
        return x, torch.from_numpy(self.labels[idx].copy())

    def order(self, *, shuffle: bool = False, seed: int = 0, epoch: int = 0, rank: int = 0,
              world_size: int = 1, drop_last: bool = False) -> np.ndarray:
        """The sample indices that :meth:`batches` visits on this rank, in order."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size; got rank={rank}, world_size={world_size}")
        n = len(self)
        perm = (np.random.default_rng([int(seed), int(epoch)]).permutation(n) if shuffle
                else np.arange(n, dtype=np.int64))
        if world_size > 1:
            if drop_last:
                perm = perm[: (n // world_size) * world_size]
            elif n:
                perm = np.resize(perm, -(-n // world_size) * world_size)  # pad by wrapping
            perm = perm[rank::world_size]
        return perm.astype(np.int64, copy=False)

    def num_batches(self, batch_size: int, *, world_size: int = 1, drop_last: bool = False) -> int:
        """How many batches :meth:`batches` yields per rank."""
        m = len(self.order(world_size=world_size, drop_last=drop_last))
        return m // batch_size if drop_last else -(-m // batch_size)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                rank: int = 0, world_size: int = 1, drop_last: bool = False
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate ``(x, y)`` batches over the view.

        With ``shuffle`` the permutation comes from ``np.random.default_rng([seed, epoch])``.
        With ``world_size > 1`` rank ``r`` takes positions ``r, r + world_size, ...`` of
        that permutation, padded by wrapping (or trimmed with ``drop_last``) so all ranks
        get the same number of batches.  ``drop_last`` also drops an incomplete last batch.
        """
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        batch_size = int(batch_size)
        idx = self.order(shuffle=shuffle, seed=seed, epoch=epoch, rank=rank,
                         world_size=world_size, drop_last=drop_last)
        stop = (len(idx) // batch_size) * batch_size if drop_last else len(idx)
        for lo in range(0, stop, batch_size):
            yield self.batch(idx[lo:lo + batch_size])

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_arrays"] = [None if (p is not None and isinstance(a, np.memmap)) else a
                            for a, p in zip(self._arrays, self._paths)]
        return state

    def __setstate__(self, state):
        arrays = state["_arrays"]
        state["_arrays"] = [np.load(p, mmap_mode="r") if a is None else a
                            for a, p in zip(arrays, state["_paths"])]
        self.__dict__.update(state)


# ---------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------


class Task:
    """A classification task over one or more prepared datasets.

    ``Task(datasets, classes=None, groups=None)``:

    * several datasets form a mix with disjoint label ranges (dataset ``i``'s
      labels are offset by the class counts of the datasets before it);
    * ``classes`` keeps a subset of the (mixed) classes, given by name (matched
      by :func:`slug`) or index, relabelled 0..n-1 in the order given;
    * ``groups`` ({name: [classes]} or a list of lists, named "group0", ...)
      merges classes into groups; classes in no group are dropped.
    """

    def __init__(self, datasets, classes=None, groups=None):
        if classes is not None and groups is not None:
            raise ValueError("give either classes or groups, not both")
        if isinstance(datasets, (str, os.PathLike, Prepared)):
            datasets = [datasets]
        self.datasets = [load_prepared(d) for d in datasets]
        if not self.datasets:
            raise ValueError("a task needs at least one dataset")
        first = self.datasets[0]
        for d in self.datasets[1:]:
            if (d.channels, d.image_size) != (first.channels, first.image_size):
                raise ValueError(
                    f"cannot mix {_describe(first)} ({first.channels} channels, {first.image_size}px) with "
                    f"{_describe(d)} ({d.channels} channels, {d.image_size}px): channels and image_size must match")
        self.channels = first.channels
        self.image_size = first.image_size
        self.offsets = np.cumsum([0] + [len(d.classes) for d in self.datasets])[:-1].astype(np.int64)
        self.base_classes = [c for d in self.datasets for c in d.classes]
        counts = np.asarray([d.count("train") for d in self.datasets], dtype=np.float64)
        means = np.stack([d.mean for d in self.datasets])
        stds = np.stack([d.std for d in self.datasets])
        w = counts / counts.sum() if counts.sum() > 0 else np.full(len(counts), 1 / len(counts))
        self.mean = w @ means
        self.std = np.sqrt(np.maximum(w @ (stds ** 2 + means ** 2) - self.mean ** 2, 0.0))
        nb = len(self.base_classes)
        self._lut = np.full(nb, -1, dtype=np.int64)  # base label -> task label (-1: dropped)
        if groups is not None:
            items = (list(groups.items()) if isinstance(groups, dict)
                     else [(f"group{k}", g) for k, g in enumerate(groups)])
            if not items:
                raise ValueError("groups is empty")
            owner: dict[int, str] = {}
            for g, (name, members) in enumerate(items):
                resolved = _resolve(members, self.base_classes, what=f"group {name!r}")
                if not resolved:
                    raise ValueError(f"group {name!r} has no classes")
                for b in resolved:
                    if b in owner:
                        raise ValueError(f"class {self.base_classes[b]!r} is in groups {owner[b]!r} and {name!r}; "
                                         "a class may be in at most one group")
                    owner[b] = str(name)
                    self._lut[b] = g
            self.classes = [str(name) for name, _ in items]
        elif classes is not None:
            resolved = _resolve(classes, self.base_classes, what="classes")
            if not resolved:
                raise ValueError("classes is empty")
            if len(set(resolved)) != len(resolved):
                raise ValueError(f"classes lists a class twice: {classes}")
            self._lut[resolved] = np.arange(len(resolved))
            self.classes = [self.base_classes[b] for b in resolved]
        else:
            self._lut[:] = np.arange(nb)
            self.classes = list(self.base_classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_indices(self, names_or_indices) -> list[int]:
        """Task labels of the given class names (matched by slug) or indices of this task."""
        return _resolve(names_or_indices, self.classes, what="classes")

    def load(self, split: str) -> ImageSet:
        """The samples of ``split`` that belong to the task, with task labels."""
        _check_split(split)
        arrays, paths, sources, rows, labels = [], [], [], [], []
        for k, (d, off) in enumerate(zip(self.datasets, self.offsets)):
            task_labels = self._lut[d.labels(split) + off]
            keep = np.flatnonzero(task_labels >= 0)
            arrays.append(d.images(split))
            paths.append(d.images_path(split))
            sources.append(np.full(len(keep), k, dtype=np.int64))
            rows.append(keep)
            labels.append(task_labels[keep])
        return ImageSet(arrays, np.concatenate(labels), self.mean, self.std, self.classes,
                        sources=np.concatenate(sources), rows=np.concatenate(rows), paths=paths)

    def __repr__(self) -> str:
        return f"Task({[_describe(d) for d in self.datasets]}, classes={self.num_classes})"


def _describe(d: Prepared) -> str:
    return f"{d.meta.get('source', '?')} at {d.path}"


def _resolve(items, names: Sequence[str], *, what: str) -> list[int]:
    """Class names (by slug) or integer indices -> indices into ``names``; unknown -> ValueError."""
    if isinstance(items, (str, int, np.integer)):
        items = [items]
    slugs: dict[str, list[int]] = {}
    for k, name in enumerate(names):
        slugs.setdefault(slug(name), []).append(k)
    valid = f"valid class names: {', '.join(names)} (or indices 0..{len(names) - 1})"
    out = []
    for item in items:
        if isinstance(item, (bool, np.bool_)):
            raise ValueError(f"{what}: {item!r} is not a class name or index; {valid}")
        if isinstance(item, (int, np.integer)):
            if not 0 <= int(item) < len(names):
                raise ValueError(f"{what}: class index {int(item)} out of range; {valid}")
            out.append(int(item))
        elif isinstance(item, str):
            hits = slugs.get(slug(item), [])
            if not hits:
                raise ValueError(f"{what}: unknown class {item!r}; {valid}")
            if len(hits) > 1:
                raise ValueError(f"{what}: class name {item!r} is ambiguous (indices {hits}); use an index")
            out.append(hits[0])
        else:
            raise ValueError(f"{what}: {item!r} is not a class name or index; {valid}")
    return out
