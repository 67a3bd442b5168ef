"""Flatten: (N, d1, d2, ...) -> (N, d1 * d2 * ...), the bridge from conv maps to fc."""


def flatten_forward(x):
    """Merge every axis after the first.

    x (N, ...) with at least 2 dimensions, e.g. (N, C, H, W).
    Returns out (N, C*H*W) (a view of x when x is contiguous, same dtype),
    and cache = x.shape.
    """
    if x.ndim < 2:
        raise ValueError(
            f"flatten: input must have a batch axis and at least one more, got shape {x.shape}"
        )
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(dout, cache):
    """Gradient of flatten_forward: dout (N, D) reshaped back to cache = x.shape."""
    x_shape = cache
    return dout.reshape(x_shape)
