"""Datasets, normalization, splitting, batching and augmentation for the NumPy CNN.

Every loader returns a ``Dataset`` (images uint8 (N, C, H, W), labels int64 (N,));
``load_dataset(name)`` reaches them all by name (``DATASETS``).
"""

from data.augment import (
    affine_warp,
    bilinear_sample,
    elastic_distortion,
    random_affine,
    random_crop,
    random_erasing,
    random_flip,
)
from data.batches import iterate_minibatches
from data.cifar10 import load_cifar10, read_cifar10_archive
from data.dataset import Dataset
from data.digits import load_digits
from data.download import default_cache_dir
from data.fashion_mnist import load_fashion_mnist
from data.mnist_loader import load_mnist, read_idx
from data.normalization import Normalization, fit_normalization, normalize
from data.registry import DATASETS, load_dataset
from data.split import stratified_split
from data.toy import make_circles, make_spiral

__all__ = [
    "DATASETS",
    "Dataset",
    "Normalization",
    "affine_warp",
    "bilinear_sample",
    "default_cache_dir",
    "elastic_distortion",
    "fit_normalization",
    "iterate_minibatches",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "make_circles",
    "make_spiral",
    "normalize",
    "random_affine",
    "random_crop",
    "random_erasing",
    "random_flip",
    "read_cifar10_archive",
    "read_idx",
    "stratified_split",
]
