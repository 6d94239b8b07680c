"""Datasets: readers of the official layouts, a prepare step to uint8 arrays, tasks and splits.

The paper (Section 4) trains and compares nets on CUB-200-2011, Stanford Dogs, the objects of
Pascal VOC 2012 and their mixes, each image cropped to its object's bounding box, without
augmentation; kc's default runs on Fashion-MNIST. One concept per module:

    catalog    names, class lists, roots, DataError, slug (light: no torch)
    readers    the official on-disk layouts -> RawDataset of uint8 images (SOURCES, open_source)
    splits     half_split (Case 2), stratified_subset, expand_classes
    writer     prepare: a reader -> data/prepared/<name>/ (uint8 memmaps + meta.json), atomically
    prepared   Prepared, load_prepared: reading them back
    images     ImageSet: views that yield normalised float batches
    tasks      Task: mixes, class subsets and groups over prepared datasets
    fake       small generated copies of the official layouts (tests, the paper dry run)

Names are loaded on first use (``from kc.data import Task`` imports kc.data.tasks only).
"""
import importlib

_HOME = {
    "catalog": ("SPLITS", "HALVES", "FASHION_MNIST_ROOT", "FASHION_MNIST_CLASSES", "VOC_CLASSES",
                "IMAGE_EXTENSIONS", "DEFAULT_IMAGE_SIZE", "DataError", "slug"),
    "readers": ("RawDataset", "FashionMNIST", "CUB200", "StanfordDogs", "VOC2012Objects", "ImageFolder",
                "SOURCES", "open_source"),
    "splits": ("half_split", "stratified_subset", "expand_classes"),
    "writer": ("prepare",),
    "prepared": ("Prepared", "load_prepared"),
    "images": ("ImageSet",),
    "tasks": ("Task",),
}
_WHERE = {name: module for module, names in _HOME.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"kc.data.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'kc.data' has no attribute {name!r}")
