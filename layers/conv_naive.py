"""2-D convolution with plain loops: the oracle the fast layers/conv.py is tested against.

Same contract and same formula as ``conv_forward``/``conv_backward``; slow on
purpose, written to be read.
"""

import numpy as np

from layers.conv import conv_output_size


def pad_images(x, pad):
    """x (N, C, H, W) -> (N, C, H + 2*pad, W + 2*pad), zeros around; x itself when pad == 0."""
    if pad == 0:
        return x
    N, C, H, W = x.shape
    xp = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=x.dtype)
    xp[:, :, pad : pad + H, pad : pad + W] = x
    return xp


def conv_forward_naive(x, W, b, stride=1, pad=0):
    """x (N, C, H, W), W (F, C, KH, KW), b (F,) -> out (N, F, Ho, Wo), cache (x, W, stride, pad)."""
    N = x.shape[0]
    F, _, KH, KW = W.shape
    Ho, Wo = conv_output_size(x.shape, W.shape, stride, pad)
    xp = pad_images(x, pad)
    out = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    window = xp[n, :, i * stride : i * stride + KH, j * stride : j * stride + KW]
                    out[n, f, i, j] = np.sum(window * W[f]) + b[f]
    return out, (x, W, stride, pad)


def conv_backward_naive(dout, cache):
    """dout (N, F, Ho, Wo) -> dx (N, C, H, W), dW (F, C, KH, KW), db (F,)."""
    x, W, stride, pad = cache
    N, _, H, Wd = x.shape
    F, _, KH, KW = W.shape
    _, _, Ho, Wo = dout.shape
    xp = pad_images(x, pad)
    dxp = np.zeros_like(xp)
    dW = np.zeros_like(W)
    db = np.zeros(F, dtype=dout.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    rows = slice(i * stride, i * stride + KH)
                    cols = slice(j * stride, j * stride + KW)
                    dW[f] += dout[n, f, i, j] * xp[n, :, rows, cols]
                    dxp[n, :, rows, cols] += dout[n, f, i, j] * W[f]
                    db[f] += dout[n, f, i, j]
    return dxp[:, :, pad : pad + H, pad : pad + Wd], dW, db
