"""``load_dataset(name)``: every dataset by name, with the same ``Dataset`` result."""

from data.cifar10 import load_cifar10
from data.digits import load_digits
from data.errors import UserError
from data.fashion_mnist import load_fashion_mnist
from data.mnist_loader import load_mnist
from data.toy import load_circles, load_line, load_polynomial, load_spiral, load_zone

# name -> function(data_dir, cache_dir) -> Dataset
_LOADERS = {
    "mnist": lambda data_dir, cache_dir: load_mnist(data_dir),
    "fashion-mnist": load_fashion_mnist,
    "digits": lambda data_dir, cache_dir: load_digits(),
    "cifar10": load_cifar10,
    "spiral": lambda data_dir, cache_dir: load_spiral(),
    "circles": lambda data_dir, cache_dir: load_circles(),
    "line": lambda data_dir, cache_dir: load_line(),
    "zone": lambda data_dir, cache_dir: load_zone(2),
    "zone3d": lambda data_dir, cache_dir: load_zone(3),
    "polynomial": lambda data_dir, cache_dir: load_polynomial(),
}
DATASETS = tuple(_LOADERS)
# One example's shape in each dataset (tests/test_hostile_files.py checks it against the data):
# a model file whose dataset contradicts its input shape is refused when it is loaded.
INPUT_SHAPES = {
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "digits": (1, 8, 8),
    "cifar10": (3, 32, 32),
    "spiral": (2,),
    "circles": (2,),
    "line": (2,),
    "zone": (2,),
    "zone3d": (3,),
    "polynomial": (1,),
}

# Datasets whose pictures mean the same thing mirrored left to right (a mirrored
# digit is another symbol, or none: digits are never flipped).
MIRRORABLE = ("fashion-mnist", "cifar10")


def check_mirrorable(name, option):
    """UserError unless the pictures of dataset ``name`` may be mirrored, as ``option`` (the
    option that asks to: ``--flip``, ``--tta flip``) would."""
    if name not in MIRRORABLE:
        raise UserError(
            f"{option} mirrors the pictures, but a mirrored {name} picture means "
            f"something else; flip only {', '.join(MIRRORABLE)}"
        )


def load_dataset(name, data_dir=None, cache_dir=None):
    """Load a dataset by name.

    name:      one of ``DATASETS``: "mnist" (shipped in data/mnist/), "fashion-mnist"
               (data_dir, Debian's folder or download), "digits" (inside scikit-learn),
               "cifar10" (data_dir or download), "spiral", "circles", "line", "zone",
               "zone3d", "polynomial" (generated with fixed seeds and sizes, see
               data/toy.py). Case and "_" for "-" are forgiven.
    data_dir:  optional folder holding the dataset's files (mnist, fashion-mnist,
               cifar10); ignored by the others.
    cache_dir: download cache for fashion-mnist and cifar10; default
               ``$NUMPY_CNN_CACHE`` or ~/.cache/numpy-cnn.
    Returns Dataset: images uint8 (N, C, H, W) and labels int64 (N,); for the toy
    sets, points float32 (N, D); for "polynomial" (regression), targets float32 (N,).
    """
    key = str(name).strip().lower().replace("_", "-")
    if key not in _LOADERS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return _LOADERS[key](data_dir, cache_dir)
