"""Readers of each dataset's official on-disk layout -> a RawDataset of uint8 (C, S, S) images.

Section 4 of the paper: "both training images and testing images were cropped using bounding
boxes of objects"; no augmentation. Every reader crops a sample to its object's box and squashes
it to a square ``image_size`` (bilinear)::

    ds = open_source("cub200", "/data/CUB_200_2011", "train", image_size=224)
    image, label = ds[0]          # uint8 (3, 224, 224), int
    ds.labels, ds.classes         # known without decoding any image
"""
from __future__ import annotations

import gzip
import os
import re
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from kc.data.catalog import (CUB_URL, DEFAULT_IMAGE_SIZE, DOGS_URL, FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT,
                             IMAGE_EXTENSIONS, VOC_CLASSES, VOC_URL, DataError, _check_image_size, _check_split)


try:  # Pillow >= 9.1
    _BILINEAR = Image.Resampling.BILINEAR
except AttributeError:  # pragma: no cover - old Pillow
    _BILINEAR = Image.BILINEAR




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
            im = im.crop(pixel_box(box, im.width, im.height))
        if im.size != (self.image_size, self.image_size):
            im = im.resize((self.image_size, self.image_size), _BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), int(self.labels[i])


def pixel_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    """The pixels cropped for a ``(left, top, right, bottom)`` box: rounded, clamped to the image,
    at least 1x1 (kc.data.fake draws its objects with the same function)."""
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
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
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
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
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


