"""scikit-learn's digits: 1797 handwritten digits of 8x8 pixels, shipped inside scikit-learn.

A tiny offline dataset for fast demos. scikit-learn stores grey levels 0..16; they
are rescaled to 0..255 so that every image dataset here shares one convention.
It has no official test set: a fixed stratified 20% (360 images, seed 0) is held out.
"""

import numpy as np

from data.dataset import Dataset
from data.split import stratified_split

DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0


def load_digits():
    """The 8x8 digits of scikit-learn (offline), split 1437 train / 360 test.

    Returns Dataset "digits": x uint8 (N, 1, 8, 8) with pixels 0..255, y int64 (N,),
    classes "0".."9".
    """
    from sklearn.datasets import load_digits as sklearn_digits  # slow import: only when used

    bunch = sklearn_digits()
    x = np.rint(bunch.images * (255 / 16)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    train_idx, test_idx = stratified_split(
        y, DIGITS_TEST_SIZE, np.random.default_rng(DIGITS_SPLIT_SEED)
    )
    return Dataset(
        name="digits",
        x_train=x[train_idx],
        y_train=y[train_idx],
        x_test=x[test_idx],
        y_test=y[test_idx],
        class_names=tuple(str(d) for d in range(10)),
    )
