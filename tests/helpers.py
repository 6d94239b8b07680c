"""Small synthetic data shared by the tests (no dataset files needed)."""
import numpy as np

from kc.data import ImageSet


def synthetic_images(n=256, classes=4, size=28, channels=1, seed=0) -> ImageSet:
    """A learnable task: each class lights up its own quadrant-ish stripe of the image, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 60, size=(n, channels, size, size), dtype=np.uint8)
    band = size // classes
    for c in range(classes):
        rows = np.flatnonzero(labels == c)
        images[rows, :, c * band:(c + 1) * band, :] += 150
    return ImageSet(images, labels, [0.3] * channels, [0.3] * channels, [f"c{i}" for i in range(classes)])
