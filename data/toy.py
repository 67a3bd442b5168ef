"""2-D toy classification sets for an MLP: interleaved spirals and concentric circles.

Points are float32 (N, 2), roughly within [-1.3, 1.3]^2; they are not images and
need no /255 scaling. Randomness comes only from the ``rng`` passed in.
"""

import numpy as np

from data.checks import check_whole
from data.dataset import Dataset
from data.errors import UserError

# Sizes and seeds of the sets that load_dataset("spiral" / "circles") returns.
SPIRAL_TRAIN_PER_CLASS, SPIRAL_TEST_PER_CLASS, SPIRAL_CLASSES = 300, 100, 3
CIRCLES_TRAIN, CIRCLES_TEST = 1000, 400
TRAIN_SEED, TEST_SEED = 0, 1


def make_spiral(n_per_class, n_classes, rng, noise=0.2):
    """``n_classes`` spiral arms from the centre outwards, one per class.

    Arm k has radius r = 0..1 and angle 2*pi*k/n_classes + 4r (radians) plus
    Gaussian noise of std ``noise`` (radians) on the angle.

    n_per_class: int >= 1, points per arm.
    n_classes:   int >= 2.
    rng:         np.random.Generator.
    noise:       float >= 0.
    Returns (x float32 (n_per_class * n_classes, 2), y int64 (same N,)), grouped by class.
    """
    check_whole("n_per_class", n_per_class, 1)
    check_whole("n_classes", n_classes, 2)
    _check_noise(noise)
    radius = np.linspace(0.0, 1.0, n_per_class)  # (n,)
    offset = 2 * np.pi * np.arange(n_classes)[:, None] / n_classes  # (K, 1)
    angle = offset + 4.0 * radius + noise * rng.standard_normal((n_classes, n_per_class))
    x = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=-1)  # (K, n, 2)
    y = np.repeat(np.arange(n_classes, dtype=np.int64), n_per_class)
    return x.reshape(-1, 2).astype(np.float32), y


def make_circles(n, rng, noise=0.1, factor=0.5):
    """Two concentric circles: class 0 of radius 1 (outer), class 1 of radius ``factor``.

    n:      int >= 2, total points; n // 2 outer then n - n // 2 inner.
    rng:    np.random.Generator; angles are uniform, positions get Gaussian noise.
    noise:  float >= 0, std of the noise added to each coordinate.
    factor: float in (0, 1), inner radius over outer radius.
    Returns (x float32 (n, 2), y int64 (n,)).
    """
    check_whole("n", n, 2)
    _check_noise(noise)
    if not 0 < factor < 1:
        raise UserError(f"factor must lie in (0, 1) (inner over outer radius), got {factor}")
    y = np.repeat(np.array([0, 1], dtype=np.int64), [n // 2, n - n // 2])
    radius = np.where(y == 0, 1.0, factor)
    angle = rng.uniform(0.0, 2 * np.pi, n)
    x = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    x += noise * rng.standard_normal((n, 2))
    return x.astype(np.float32), y


def load_spiral():
    """Dataset "spiral": 3 arms, 300 training and 100 test points each (seeds 0 and 1).

    Returns Dataset with x float32 (N, 2), y int64 (N,).
    """
    rng_train, rng_test = np.random.default_rng(TRAIN_SEED), np.random.default_rng(TEST_SEED)
    x_train, y_train = make_spiral(SPIRAL_TRAIN_PER_CLASS, SPIRAL_CLASSES, rng_train)
    x_test, y_test = make_spiral(SPIRAL_TEST_PER_CLASS, SPIRAL_CLASSES, rng_test)
    names = tuple(f"arm {k}" for k in range(SPIRAL_CLASSES))
    return Dataset("spiral", x_train, y_train, x_test, y_test, names)


def load_circles():
    """Dataset "circles": 1000 training and 400 test points (seeds 0 and 1).

    Returns Dataset with x float32 (N, 2), y int64 (N,); classes "outer", "inner".
    """
    x_train, y_train = make_circles(CIRCLES_TRAIN, np.random.default_rng(TRAIN_SEED))
    x_test, y_test = make_circles(CIRCLES_TEST, np.random.default_rng(TEST_SEED))
    return Dataset("circles", x_train, y_train, x_test, y_test, ("outer", "inner"))


def _check_noise(noise):
    """Raise UserError unless ``noise`` is a number >= 0."""
    if not noise >= 0:
        raise UserError(f"noise must be >= 0, got {noise!r}")
