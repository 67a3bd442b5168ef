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


def conv_forward_naive(x, W, b, stride=1, pad=0, groups=1):
    """x (N, C, H, W), W (F, C/groups, KH, KW), b (F,) -> out (N, F, Ho, Wo), cache.

    cache = (x, W, stride, pad, groups). A grouped convolution is the plain one run
    once per group, on that group's channels and filters.
    """
    Ho, Wo = conv_output_size(x.shape, W.shape, stride, pad, groups)
    C, F = x.shape[1], W.shape[0]
    Cg, Fg = C // groups, F // groups
    out = np.zeros((x.shape[0], F, Ho, Wo), dtype=x.dtype)
    for k in range(groups):
        channels, filters = slice(k * Cg, (k + 1) * Cg), slice(k * Fg, (k + 1) * Fg)
        out[:, filters] = _forward_one_group(x[:, channels], W[filters], b[filters], stride, pad)
    return out, (x, W, stride, pad, groups)


def _forward_one_group(x, W, b, stride, pad):
    """x (N, C, H, W), W (F, C, KH, KW), b (F,) -> out (N, F, Ho, Wo): the plain loops."""
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
    return out


def conv_backward_naive(dout, cache):
    """dout (N, F, Ho, Wo) -> dx (N, C, H, W), dW (F, C/groups, KH, KW), db (F,)."""
    x, W, stride, pad, groups = cache
    C, F = x.shape[1], W.shape[0]
    Cg, Fg = C // groups, F // groups
    dx, dW = np.zeros_like(x), np.zeros_like(W)
    db = np.zeros(F, dtype=dout.dtype)
    for k in range(groups):
        channels, filters = slice(k * Cg, (k + 1) * Cg), slice(k * Fg, (k + 1) * Fg)
        dx[:, channels], dW[filters], db[filters] = _backward_one_group(
            dout[:, filters], x[:, channels], W[filters], stride, pad
        )
    return dx, dW, db


def _backward_one_group(dout, x, W, stride, pad):
    """dout (N, F, Ho, Wo), x (N, C, H, W), W (F, C, KH, KW) -> dx, dW, db: the plain loops."""
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
