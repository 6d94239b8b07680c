"""The datasets kc knows: names, class lists, default roots, where to get them; light to import.

    slug("T-shirt/top")        # 't_shirt_top': how class names are matched in params
    FASHION_MNIST_CLASSES[0]   # 'T-shirt/top'
"""
from __future__ import annotations

import re

import numpy as np


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

