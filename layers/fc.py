"""Fully connected (affine) layer: out = x @ W + b."""


def fc_forward(x, W, b):
    """Affine map of a batch of vectors.

    x (N, D), W (D, M), b (M,), all of one float dtype.
    Returns out (N, M) = x @ W + b in that dtype, and cache = (x, W).
    Raises ValueError naming the shapes when they do not fit together.
    """
    if x.ndim != 2 or W.ndim != 2 or b.shape != W.shape[1:] or x.shape[1] != W.shape[0]:
        raise ValueError(
            f"fc: shapes do not fit: x {x.shape}, W {W.shape}, b {b.shape}; expected "
            "x (N, D), W (D, M), b (M,) (flatten the input first, or fix the layer's input size)"
        )
    out = x @ W
    out += b  # in place: one temporary fewer than x @ W + b
    return out, (x, W)


def fc_backward(dout, cache):
    """Gradients of fc_forward.

    dout (N, M); cache = (x (N, D), W (D, M)).
    Returns dx (N, D), dW (D, M), db (M,), in dout's dtype.
    """
    x, W = cache
    return dout @ W.T, x.T @ dout, dout.sum(axis=0)
