"""A deterministic, stratified train/validation split of a training set."""

import numpy as np

from data.checks import check_whole
from data.errors import UserError


def stratified_split(y, val_size, rng):
    """Pick ``val_size`` examples for validation, each class in proportion to its count.

    Class quotas are ``val_size * count / N`` rounded down, the examples left over
    going to the classes with the largest remainders (ties: lower label first);
    within a class, the examples are chosen at random by ``rng``.

    y:        integer labels (N,).
    val_size: int, 0 <= val_size <= N (0 gives an empty validation set; N an empty
              training set, which makes the split a stratified subsample of size N).
    rng:      np.random.Generator; the same seed gives the same split.
    Returns (train_idx, val_idx): sorted int64 arrays of N - val_size and val_size
    indices into ``y``, disjoint, together covering 0 .. N - 1.
    """
    y = np.asarray(y)
    n = len(y)
    check_whole("val_size", val_size, 0)
    if val_size > n:
        raise UserError(
            f"val_size={val_size} is out of range: the training set holds {n} examples, "
            f"so choose 0 <= val_size <= {n}"
        )
    _, y_index, counts = np.unique(y, return_inverse=True, return_counts=True)
    exact = val_size * counts / n
    quota = np.floor(exact).astype(np.int64)
    leftover = val_size - int(quota.sum())
    quota[np.argsort(-(exact - quota), kind="stable")[:leftover]] += 1

    # A random order, then grouped by class (stable sort keeps it random within a class).
    order = rng.permutation(n)
    order = order[np.argsort(y_index[order], kind="stable")]
    sorted_class = y_index[order]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank_in_class = np.arange(n) - starts[sorted_class]
    is_val = rank_in_class < quota[sorted_class]
    return np.sort(order[~is_val]).astype(np.int64), np.sort(order[is_val]).astype(np.int64)
