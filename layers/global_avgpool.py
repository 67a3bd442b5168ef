"""Global average pooling: each channel's map averaged to one number.

    out[n, c] = mean_{i, j} x[n, c, i, j]

The usual last step of a convolutional network before its classifier: (N, C, H, W)
becomes (N, C) whatever H and W are, with no parameters. Its gradient spreads
dout[n, c] evenly over the H*W pixels it averaged.
"""

import numpy as np

from layers.arraylib import array_module


def global_avgpool_forward(x):
    """Mean over the spatial axes.

    x: (N, C, H, W) input, any float dtype.
    Returns out (N, C) in x's dtype and cache = x.shape (the backward needs only H and W).
    """
    if np.ndim(x) != 4:
        raise ValueError(
            f"global average pooling needs x of shape (N, C, H, W), got shape {np.shape(x)}"
        )
    return x.mean(axis=(2, 3), dtype=x.dtype), x.shape


def global_avgpool_backward(dout, cache):
    """Gradient of global_avgpool_forward.

    dout: (N, C) upstream gradient; cache: x.shape = (N, C, H, W).
    Returns dx (N, C, H, W) in dout's dtype, every pixel dout[n, c] / (H*W).
    """
    N, C, H, W = cache
    if dout.shape != (N, C):
        raise ValueError(f"global average pooling: dout must have shape {(N, C)}, got {dout.shape}")
    xp = array_module(dout)
    dx = xp.empty((N, C, H, W), dtype=dout.dtype)
    dx[...] = (dout / dout.dtype.type(H * W))[:, :, None, None]
    return dx
