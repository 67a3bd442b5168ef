"""Datasets, normalization, splitting, batching and augmentation for the NumPy CNN.

Every loader returns a ``Dataset`` (images uint8 (N, C, H, W), labels int64 (N,));
``load_dataset(name)`` reaches them all by name (``DATASETS``).

Importing ``data`` is cheap: each name below is imported from its module the first time it is
used, so that ``data.errors`` and ``data.checks``, which every floor above needs, do not load
every dataset loader and its dependencies (pooch, requests, scikit-learn).
"""

import importlib

_EXPORTS = {
    "DATASETS": "data.registry",
    "Dataset": "data.dataset",
    "Normalization": "data.normalization",
    "affine_warp": "data.augment",
    "bilinear_sample": "data.augment",
    "default_cache_dir": "data.download",
    "elastic_distortion": "data.augment",
    "fit_normalization": "data.normalization",
    "iterate_minibatches": "data.batches",
    "load_cifar10": "data.cifar10",
    "load_dataset": "data.registry",
    "load_digits": "data.digits",
    "load_fashion_mnist": "data.fashion_mnist",
    "load_mnist": "data.mnist_loader",
    "make_circles": "data.toy",
    "make_line": "data.toy",
    "make_polynomial": "data.toy",
    "make_spiral": "data.toy",
    "make_zones": "data.toy",
    "normalize": "data.normalization",
    "random_affine": "data.augment",
    "random_crop": "data.augment",
    "random_erasing": "data.augment",
    "random_flip": "data.augment",
    "read_cifar10_archive": "data.cifar10",
    "read_idx": "data.mnist_loader",
    "stratified_split": "data.split",
    "tta_views": "data.augment",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    """``data.<name>``: the name from its module, imported on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
