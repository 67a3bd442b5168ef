"""2-D convolution (cross-correlation, as in every deep-learning library), fast path.

    out[n, f, i, j] = b[f] + sum_{c, ki, kj} W[f, c, ki, kj] * xp[n, c, i*s + ki, j*s + kj]

where ``xp`` is ``x`` zero-padded by ``pad`` on each side and ``s`` the stride.
Output size (floor, like PyTorch): ``Ho = (H + 2*pad - KH) // stride + 1``, and
the same for ``Wo``.

How it is fast: im2col turns the convolution into one matrix product per
chunk of examples, ``out = W.reshape(F, C*KH*KW) @ cols``, with
``cols (n, C*KH*KW, Ho*Wo)`` gathered by copying KH*KW whole shifted slices of
the input (a loop over kernel offsets, never over pixels). The layout keeps
NCHW: the product lands directly in ``out`` with no transpose. The batch is
processed in cache-sized chunks, on worker threads (layers/parallel.py);
``cols`` is rebuilt in the backward pass instead of being kept, so memory stays
small at any batch size.
"""

import numpy as np

from core.errors import UserError
from layers.parallel import chunk_size, map_chunks


def conv_output_size(in_shape, w_shape, stride, pad):
    """``(Ho, Wo)`` of a convolution, or a UserError saying why it is impossible.

    in_shape: (N, C, H, W) or (C, H, W); w_shape: (F, C, KH, KW).
    """
    if len(in_shape) not in (3, 4) or len(w_shape) != 4:
        raise UserError(
            f"convolution needs x (N, C, H, W) and W (F, C, KH, KW), got x {tuple(in_shape)} "
            f"and W {tuple(w_shape)}"
        )
    C, H, W = in_shape[-3:]
    F, WC, KH, KW = w_shape
    if stride < 1 or pad < 0:
        raise UserError(
            f"convolution needs stride >= 1 and pad >= 0, got stride={stride} pad={pad}"
        )
    if C != WC:
        raise UserError(
            f"convolution: input has {C} channels but the weights {tuple(w_shape)} expect {WC}"
        )
    Ho, Wo = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
    if Ho < 1 or Wo < 1:
        raise UserError(
            f"convolution: a {KH}x{KW} kernel with pad {pad} does not fit a {H}x{W} input "
            f"(output would be {Ho}x{Wo})"
        )
    return Ho, Wo


def pad_images(x, pad):
    """x (N, C, H, W) -> (N, C, H + 2*pad, W + 2*pad), zeros around; x itself when pad == 0."""
    if pad == 0:
        return x
    N, C, H, W = x.shape
    xp = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=x.dtype)
    xp[:, :, pad : pad + H, pad : pad + W] = x
    return xp


def flat_padded(x, pad, stride):
    """x (N, C, H, W) -> xf (N, C, (H + 2*pad + stride) * (W + 2*pad)), zero-padded, rows flattened.

    ``stride`` extra zero rows at the bottom let the last shifted slice of
    ``im2col`` run past the image without leaving the buffer.
    """
    N, C, H, W = x.shape
    Hp, Wp = H + 2 * pad, W + 2 * pad
    xf = np.zeros((N, C, Hp + stride, Wp), dtype=x.dtype)
    xf[:, :, pad : pad + H, pad : pad + W] = x
    return xf.reshape(N, C, (Hp + stride) * Wp)


def kernel_offsets(KH, KW, Wp):
    """Flat offset of each kernel position (ki, kj) in a padded image of width Wp, in W's order."""
    return [ki * Wp + kj for ki in range(KH) for kj in range(KW)]


def im2col(xf, KH, KW, stride, Ho, Wp):
    """xf (n, C, L) flat padded images -> cols (n, C*KH*KW, Ho*Wp), rows ordered (c, ki, kj) like W.

    Column ``q = i*Wp + j`` holds the window of output pixel (i, j):
    ``xf[..., offset + stride*q]``. Columns with ``j >= Wo`` are the price of
    this layout (the window runs off the right edge); their results are
    discarded. In exchange every kernel offset is one long 1-D slice.
    """
    n, C = xf.shape[:2]
    P = Ho * Wp
    cols = np.empty((n, C, KH * KW, P), dtype=xf.dtype)
    for k, offset in enumerate(kernel_offsets(KH, KW, Wp)):
        cols[:, :, k] = xf[:, :, offset : offset + stride * P : stride]
    return cols.reshape(n, C * KH * KW, P)


def col2im(dcols, xf_shape, KH, KW, stride, Wp):
    """The adjoint of im2col: dcols (n, C*KH*KW, Ho*Wp) -> dxf (n, C, L).

    Each kernel offset adds one whole shifted slice; overlapping windows sum.
    """
    n, C = xf_shape[:2]
    P = dcols.shape[2]
    dxf = np.zeros(xf_shape, dtype=dcols.dtype)
    d = dcols.reshape(n, C, KH * KW, P)
    for k, offset in enumerate(kernel_offsets(KH, KW, Wp)):
        dxf[:, :, offset : offset + stride * P : stride] += d[:, :, k]
    return dxf


def conv_forward(x, W, b, stride=1, pad=0):
    """Convolution forward.

    x: (N, C, H, W) input; W: (F, C, KH, KW) filters; b: (F,) biases.
    stride, pad: ints (the same vertically and horizontally).
    Returns out (N, F, Ho, Wo) in x's dtype and cache = (xf, x_shape, W, stride, pad)
    where xf (N, C, L) is the zero-padded input with its rows flattened (see flat_padded).
    """
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    Ho, Wo = conv_output_size(x.shape, W.shape, stride, pad)
    Wp = Wd + 2 * pad
    xf = flat_padded(x, pad, stride)
    W2 = W.reshape(F, C * KH * KW)
    b3 = b.reshape(1, F, 1, 1)
    out = np.empty((N, F, Ho, Wo), dtype=x.dtype)

    def forward_chunk(lo, hi):
        cols = im2col(xf[lo:hi], KH, KW, stride, Ho, Wp)
        wide = np.matmul(W2, cols).reshape(hi - lo, F, Ho, Wp)
        np.add(wide[..., :Wo], b3, out=out[lo:hi])

    map_chunks(forward_chunk, N, chunk_size(C * KH * KW * Ho * Wp * x.itemsize))
    return out, (xf, x.shape, W, stride, pad)


def conv_backward(dout, cache):
    """Convolution backward.

    dout: (N, F, Ho, Wo) upstream gradient; cache: from conv_forward.
    Returns dx (N, C, H, W), dW (F, C, KH, KW), db (F,).
    """
    xf, (N, C, H, Wd), W, stride, pad = cache
    F, _, KH, KW = W.shape
    Ho, Wo = dout.shape[2:]
    Wp = Wd + 2 * pad
    W2 = W.reshape(F, C * KH * KW)
    dx = np.empty((N, C, H, Wd), dtype=dout.dtype)

    def backward_chunk(lo, hi):
        n = hi - lo
        cols = im2col(xf[lo:hi], KH, KW, stride, Ho, Wp)
        # dout on the wide layout; the discarded columns get zero gradient
        d = np.zeros((n, F, Ho, Wp), dtype=dout.dtype)
        d[..., :Wo] = dout[lo:hi]
        d = d.reshape(n, F, Ho * Wp)
        dW_t = np.matmul(cols, d.transpose(0, 2, 1)).sum(axis=0)  # (C*KH*KW, F)
        dxf = col2im(np.matmul(W2.T, d), (n,) + xf.shape[1:], KH, KW, stride, Wp)
        dxp = dxf.reshape(n, C, -1, Wp)
        dx[lo:hi] = dxp[:, :, pad : pad + H, pad : pad + Wd]
        return dW_t

    partial_dW = map_chunks(backward_chunk, N, chunk_size(C * KH * KW * Ho * Wp * dout.itemsize))
    dW = np.sum(partial_dW, axis=0).T.reshape(W.shape).astype(dout.dtype, copy=False)
    db = dout.sum(axis=(0, 2, 3))
    return dx, dW, db
