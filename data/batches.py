"""Mini-batches for one epoch, shuffled by an explicit rng without copying the dataset."""

from data.checks import check_whole
from data.errors import UserError


def iterate_minibatches(x, y, batch_size, rng=None):
    """Yield the examples of one epoch in mini-batches.

    x:          array (N, ...), e.g. images (N, C, H, W) or points (N, 2).
    y:          array (N,), the labels.
    batch_size: int >= 1; the last batch holds the N % batch_size left over, if any.
    rng:        np.random.Generator to shuffle with (one permutation per call), or
                None for the stored order (batches are then views, not copies).
    Returns an iterator of (xb, yb): xb (B, ...) like x, yb (B,) like y, each
    example exactly once. Only one batch is gathered at a time: the dataset is
    never copied whole. Arguments are checked at the call, not at the first batch.
    """
    if len(x) != len(y):
        raise UserError(
            f"iterate_minibatches: x holds {len(x)} examples but y holds {len(y)} labels; "
            "pass images and labels of the same set"
        )
    check_whole("batch_size", batch_size, 1)
    # Drawn now, not at the first next(): the rng advances when the epoch is set up.
    order = None if rng is None else rng.permutation(len(x))
    return _batches(x, y, batch_size, order)


def _batches(x, y, batch_size, order):
    """Generator behind ``iterate_minibatches``; ``order`` (N,) int or None (stored order)."""
    for start in range(0, len(x), batch_size):
        if order is None:
            yield x[start : start + batch_size], y[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]
