"""Toy sets for an MLP: 2-D and 3-D classification, and a 1-D polynomial regression.

Classification: interleaved spirals, concentric circles, two half-planes split by a
line, and zones of a checkerboard-like grid in 2-D or 3-D. Points are float32 (N, D),
roughly within [-1.3, 1.3]^D, labels int64 (N,). Regression: points x float32 (N, 1)
and targets y float32 (N,). None are images: they need no /255 scaling. Randomness
comes only from the ``rng`` passed in.
"""

import numpy as np

from data.checks import check_whole
from data.dataset import Dataset
from data.errors import UserError

# Sizes and seeds of the sets that load_dataset(<name>) returns.
SPIRAL_TRAIN_PER_CLASS, SPIRAL_TEST_PER_CLASS, SPIRAL_CLASSES = 300, 100, 3
CIRCLES_TRAIN, CIRCLES_TEST = 1000, 400
LINE_TRAIN, LINE_TEST = 600, 200
ZONE_TRAIN_PER_CLASS, ZONE_TEST_PER_CLASS, ZONE_CLASSES = 300, 100, 3
ZONE3D_TRAIN_PER_CLASS, ZONE3D_TEST_PER_CLASS = 600, 200
POLYNOMIAL_TRAIN, POLYNOMIAL_TEST = 500, 200
POLYNOMIAL = (0.0, -1.0, 0.0, 1.0)  # y = x^3 - x: two bends in [-1.5, 1.5]
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


def make_line(n, rng, angle=np.pi / 6, noise=0.05):
    """Two classes on either side of a line through the origin.

    The points fill the unit square turned by ``angle``: a coordinate u along the
    line and a distance v from it, both uniform in [0, 1) (u in [-1, 1)); class 0
    lies at -v, class 1 at +v. Gaussian noise of std ``noise`` is then added to
    each coordinate, so the classes overlap a little near the line.

    n:     int >= 2, total points; n // 2 of class 0 then n - n // 2 of class 1.
    rng:   np.random.Generator.
    angle: float, the line's direction in radians (0: the x axis).
    noise: float >= 0.
    Returns (x float32 (n, 2), y int64 (n,)).
    """
    check_whole("n", n, 2)
    _check_noise(noise)
    y = np.repeat(np.array([0, 1], dtype=np.int64), [n // 2, n - n // 2])
    along = rng.uniform(-1.0, 1.0, n)
    across = rng.uniform(0.0, 1.0, n) * np.where(y == 1, 1.0, -1.0)
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-np.sin(angle), np.cos(angle)])
    x = along[:, None] * direction + across[:, None] * normal
    x += noise * rng.standard_normal((n, 2))
    return x.astype(np.float32), y


def make_zones(n_per_class, n_classes, rng, dims=2):
    """Zones of a grid in [-1, 1]^dims: K cells per side, cell (i, j, ...) of class (i + j + ...) % K.

    Each class owns K^(dims - 1) cells, in diagonal stripes (a checkerboard for K = 2):
    no straight line separates the classes. A point of class k picks one of its cells at
    random and lies uniformly inside it.

    n_per_class: int >= 1, points per class.
    n_classes:   int >= 2, K, also the cells per side.
    rng:         np.random.Generator.
    dims:        int >= 1, the points' dimension (2, or 3 for the 3-D zones).
    Returns (x float32 (n_per_class * K, dims), y int64 (same N,)), grouped by class.
    """
    check_whole("n_per_class", n_per_class, 1)
    check_whole("n_classes", n_classes, 2)
    check_whole("dims", dims, 1)
    y = np.repeat(np.arange(n_classes, dtype=np.int64), n_per_class)
    free = rng.integers(0, n_classes, (len(y), dims - 1))  # the cell's other coordinates
    last = (y - free.sum(axis=1)) % n_classes  # the one that puts the cell in class y
    cell = np.concatenate([free, last[:, None]], axis=1)
    x = -1.0 + (cell + rng.uniform(0.0, 1.0, cell.shape)) * (2.0 / n_classes)
    return x.astype(np.float32), y


def make_polynomial(n, rng, coefficients=POLYNOMIAL, low=-1.5, high=1.5, noise=0.1):
    """A 1-D regression set: y = polynomial(x) + Gaussian noise, x uniform in [low, high).

    n:            int >= 1, points.
    rng:          np.random.Generator.
    coefficients: the polynomial's coefficients, constant term first
                  ((0, -1, 0, 1) is x^3 - x).
    low, high:    floats, low < high: the interval of x.
    noise:        float >= 0, std of the noise added to y.
    Returns (x float32 (n, 1), y float32 (n,)), x sorted (the curve reads left to right).
    """
    check_whole("n", n, 1)
    _check_noise(noise)
    if not low < high:
        raise UserError(f"the interval of x must have low < high, got [{low}, {high}]")
    x = np.sort(rng.uniform(low, high, n))
    y = np.polynomial.polynomial.polyval(x, coefficients) + noise * rng.standard_normal(n)
    return x[:, None].astype(np.float32), y.astype(np.float32)


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


def load_line():
    """Dataset "line": 600 training and 200 test points (seeds 0 and 1), two classes.

    Returns Dataset with x float32 (N, 2), y int64 (N,); classes "below", "above".
    """
    x_train, y_train = make_line(LINE_TRAIN, np.random.default_rng(TRAIN_SEED))
    x_test, y_test = make_line(LINE_TEST, np.random.default_rng(TEST_SEED))
    return Dataset("line", x_train, y_train, x_test, y_test, ("below", "above"))


def load_zone(dims=2):
    """Dataset "zone" (dims 2) or "zone3d" (dims 3): 3 classes of grid zones (seeds 0 and 1).

    "zone": 300 training and 100 test points per class; "zone3d": 600 and 200.
    Returns Dataset with x float32 (N, dims), y int64 (N,).
    """
    train, test = (
        (ZONE_TRAIN_PER_CLASS, ZONE_TEST_PER_CLASS)
        if dims == 2
        else (ZONE3D_TRAIN_PER_CLASS, ZONE3D_TEST_PER_CLASS)
    )
    rng_train, rng_test = np.random.default_rng(TRAIN_SEED), np.random.default_rng(TEST_SEED)
    x_train, y_train = make_zones(train, ZONE_CLASSES, rng_train, dims)
    x_test, y_test = make_zones(test, ZONE_CLASSES, rng_test, dims)
    names = tuple(f"zone {k}" for k in range(ZONE_CLASSES))
    name = "zone" if dims == 2 else f"zone{dims}d"
    return Dataset(name, x_train, y_train, x_test, y_test, names)


def load_polynomial():
    """Dataset "polynomial": y = x^3 - x + noise (std 0.1), x in [-1.5, 1.5).

    500 training and 200 test points (seeds 0 and 1). A regression set: the targets
    are floats, and its one "class name" names the one output, "y".
    Returns Dataset with x float32 (N, 1), y float32 (N,).
    """
    x_train, y_train = make_polynomial(POLYNOMIAL_TRAIN, np.random.default_rng(TRAIN_SEED))
    x_test, y_test = make_polynomial(POLYNOMIAL_TEST, np.random.default_rng(TEST_SEED))
    return Dataset("polynomial", x_train, y_train, x_test, y_test, ("y",))


def _check_noise(noise):
    """Raise UserError unless ``noise`` is a number >= 0."""
    if not noise >= 0:
        raise UserError(f"noise must be >= 0, got {noise!r}")
