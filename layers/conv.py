"""2-D convolution (cross-correlation, as in every deep-learning library), fast path.

    out[n, f, i, j] = b[f] + sum_{c, ki, kj} W[f, c, ki, kj] * xp[n, c, i*s + ki, j*s + kj]

where ``xp`` is ``x`` zero-padded by ``pad`` on each side and ``s`` the stride.
Output size (floor, like PyTorch): ``Ho = (H + 2*pad - KH) // stride + 1``, and
the same for ``Wo``.

How it is fast:
- im2col turns a correlation into one matrix product per chunk of examples,
  ``W.reshape(F, C*KH*KW) @ cols``. ``cols`` is gathered from the padded image
  with its rows flattened, so each kernel offset is ONE long 1-D slice copy (a
  loop over the KH*KW offsets, never over pixels). The price: the product is
  computed on the full padded width ``Wp`` and the ``Wp - Wo`` extra columns of
  each output row are dropped.
- The backward pass for ``dx`` is a correlation too: the gradient of a
  convolution is the "full" correlation of ``dout`` (spread out by the stride,
  padded by the kernel size less one) with the flipped filters, so it reuses
  im2col and one matrix product instead of scattering sums back (col2im).
- NCHW all the way: products land in the output with no transposes. The batch
  is processed in cache-sized chunks (about 1 MiB of ``cols`` each), one after
  the other; the model runs shards of the batch on worker threads
  (model/shards.py). ``cols`` is rebuilt in the backward pass rather than kept,
  so memory stays small at any batch size.

Grouped convolution (``groups = g``, PyTorch's meaning): the C input channels and
the F filters are cut into g consecutive groups; filter f of group k sees only the
C/g channels of group k, so W is (F, C/g, KH, KW). ``groups == 1`` is the code
above, untouched. ``groups > 1`` reuses the same im2col, its rows regrouped
(n, g, C/g*KH*KW, P), times W regrouped (g, F/g, C/g*KH*KW): one batched matrix
product per chunk, forward and for both gradients; depthwise (groups == C) is the
case C/g == 1. Measured against the alternative for depthwise (a strided
multiply-add on the padded input per kernel offset, chunked the same way), the
batched product was 2-4x faster forward and about as fast backward (the per-offset
passes over memory cost more than BLAS's tiny products).
"""

from typing import NamedTuple

import numpy as np

from layers.arraylib import array_module, strided_view

_CHUNK_BYTES = 1 << 20  # keep a chunk's im2col buffer near L2-cache size


def chunk_bounds(n_items, bytes_per_example):
    """``[(lo, hi), ...]`` cutting ``range(n_items)`` into chunks of about _CHUNK_BYTES.

    The chunks depend only on the shapes, and no chunk mixes the examples'
    arithmetic: one example at a time gives the same numbers.
    """
    chunk = max(1, _CHUNK_BYTES // max(1, bytes_per_example))
    return [(lo, min(lo + chunk, n_items)) for lo in range(0, n_items, chunk)]


def conv_output_size(in_shape, w_shape, stride, pad, groups=1):
    """``(Ho, Wo)`` of a convolution, or a ValueError saying why it is impossible.

    in_shape: (N, C, H, W) or (C, H, W); w_shape: (F, C/groups, KH, KW);
    groups: int >= 1 dividing both C and F.
    """
    if len(in_shape) not in (3, 4) or len(w_shape) != 4:
        raise ValueError(
            f"convolution needs x (N, C, H, W) and W (F, C, KH, KW), got x {tuple(in_shape)} "
            f"and W {tuple(w_shape)}"
        )
    C, H, W = in_shape[-3:]
    F, WC, KH, KW = w_shape
    if stride < 1 or pad < 0:
        raise ValueError(
            f"convolution needs stride >= 1 and pad >= 0, got stride={stride} pad={pad}"
        )
    if groups != 1:
        _check_groups(C, F, WC, groups, w_shape)
    elif C != WC:
        raise ValueError(
            f"convolution: input has {C} channels but the weights {tuple(w_shape)} expect {WC}"
        )
    Ho, Wo = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(
            f"convolution: a {KH}x{KW} kernel with pad {pad} does not fit a {H}x{W} input "
            f"(output would be {Ho}x{Wo})"
        )
    return Ho, Wo


def _check_groups(C, F, WC, groups, w_shape):
    """Raise a ValueError naming groups, C and F unless W (F, C/groups, KH, KW) fits C channels."""
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"convolution: groups must be a whole number >= 1, got groups={groups!r}")
    if C % groups or F % groups:
        raise ValueError(
            f"convolution: groups={groups} must divide both the {C} input channels and "
            f"the {F} filters"
        )
    if WC * groups != C:
        raise ValueError(
            f"convolution with groups={groups}: input has {C} channels, so the weights need "
            f"{C // groups} channels per group, but the weights {tuple(w_shape)} have {WC}"
        )


def flat_padded(x, top, bottom, left, right, step=1):
    """x (N, C, H, W) -> (N, C, Hp * Wp), zero-padded then rows flattened.

    Hp = top + (H-1)*step + 1 + bottom, Wp = left + (W-1)*step + 1 + right:
    with ``step > 1`` the pixels of x land ``step`` apart, zeros between them.
    Callers leave ``bottom`` a few rows of slack, so that the last shifted slice of
    ``im2col`` (which runs past the right edge of the last row) stays in the buffer.
    """
    N, C, H, W = x.shape
    Hd, Wd = (H - 1) * step + 1, (W - 1) * step + 1
    xf = array_module(x).zeros((N, C, top + Hd + bottom, left + Wd + right), dtype=x.dtype)
    xf[:, :, top : top + Hd : step, left : left + Wd : step] = x
    return xf.reshape(N, C, -1)


def im2col(xf, KH, KW, stride, Ho, Wp):
    """xf (n, C, L) flat padded images -> cols (n, C*KH*KW, Ho*Wp), rows ordered (c, ki, kj) like W.

    Column ``q = i*Wp + j`` holds the window of output pixel (i, j), which starts
    at flat position ``stride*q`` (kernel offset (ki, kj) adds ``ki*Wp + kj``).
    Columns with ``j >= Wo`` are windows that run off the right edge: computed,
    then discarded by the caller.
    """
    n, C, L = xf.shape
    P = Ho * Wp
    step = xf.itemsize
    # All KH*KW shifted slices as one strided view of xf's memory, gathered by one copy
    # (one call per chunk, not one per kernel offset). The view stays inside xf: the
    # callers' slack rows make room for the last slice (NumPy checks it).
    windows = strided_view(
        xf, (n, C, KH, KW, P), (C * L * step, L * step, Wp * step, step, stride * step)
    )
    return windows.reshape(n, C * KH * KW, P)


def conv_forward(x, W, b, stride=1, pad=0, groups=1):
    """Convolution forward.

    x: (N, C, H, W) input; W: (F, C/groups, KH, KW) filters; b: (F,) biases.
    stride, pad: ints (the same vertically and horizontally).
    groups: int dividing C and F; filter f sees input channels
    [k*C/g, (k+1)*C/g) where k = f // (F/g). groups == C is a depthwise convolution.
    Returns out (N, F, Ho, Wo) in x's dtype and a cache. With groups == 1 the cache is
    the tuple (xf, x_shape, W, stride, pad), where xf (N, C, L) is the zero-padded input
    with its rows flattened (see flat_padded); with groups > 1 it is a GroupedConvCache
    holding the same five fields and ``groups``.
    """
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    Ho, Wo = conv_output_size(x.shape, W.shape, stride, pad, groups)
    if groups != 1:
        return _grouped_forward(x, W, b, stride, pad, groups, Ho, Wo)
    xp = array_module(x)
    Wp = Wd + 2 * pad
    xf = flat_padded(x, pad, pad + stride, pad, pad)
    W2 = W.reshape(F, C * KH * KW)
    b3 = b.reshape(1, F, 1, 1)
    out = xp.empty((N, F, Ho, Wo), dtype=x.dtype)

    for lo, hi in chunk_bounds(N, C * KH * KW * Ho * Wp * x.itemsize):
        cols = im2col(xf[lo:hi], KH, KW, stride, Ho, Wp)
        wide = xp.matmul(W2, cols).reshape(hi - lo, F, Ho, Wp)
        xp.add(wide[..., :Wo], b3, out=out[lo:hi])
    return out, (xf, x.shape, W, stride, pad)


def conv_backward(dout, cache, need_dx=True):
    """Convolution backward.

    dout: (N, F, Ho, Wo) upstream gradient; cache: from conv_forward.
    need_dx: False skips dx (None is returned), e.g. for a network's first layer,
    whose input is the data.
    Returns dx (N, C, H, W), dW (F, C/groups, KH, KW), db (F,).
    """
    if isinstance(cache, GroupedConvCache):
        return _grouped_backward(dout, cache, need_dx)
    xf, (N, C, H, Wd), W, stride, pad = cache
    xp = array_module(dout)
    F, _, KH, KW = W.shape
    Ho, Wo = dout.shape[2:]
    Hp, Wp = H + 2 * pad, Wd + 2 * pad
    # dx = full correlation of the stride-spread dout with the flipped filters, on the
    # padded input grid. The spread dout is laid out in rows of Wp with KW-1 zeros on
    # the left: a window running off a row's right end reads the next row's left
    # zeros, so every one of the Hp*Wp output columns is valid.
    W_flipped = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(C, F * KH * KW)
    spread_h, spread_w = (Ho - 1) * stride + 1, (Wo - 1) * stride + 1
    top, left = KH - 1, KW - 1
    right = Wp - left - spread_w  # >= 0 because (Wo - 1) * stride <= Wp - KW
    bottom = Hp + 1 - spread_h  # the windows of the last output row read KH - 1 rows below it
    dx = xp.empty((N, C, H, Wd), dtype=dout.dtype) if need_dx else None

    def backward_chunk(lo, hi):
        n = hi - lo
        if need_dx or stride == 1:
            df = flat_padded(dout[lo:hi], top, bottom, left, right, step=stride)
        # dW: correlate the input with dout in the forward pass's wide layout, where the
        # discarded columns (j >= Wo) get zero gradient. With stride 1 that is a view of df.
        if stride == 1:
            d = df[:, :, top * Wp + left : top * Wp + left + Ho * Wp]
        else:
            d = xp.zeros((n, F, Ho, Wp), dtype=dout.dtype)
            d[..., :Wo] = dout[lo:hi]
            d = d.reshape(n, F, Ho * Wp)
        cols = im2col(xf[lo:hi], KH, KW, stride, Ho, Wp)
        dW_t = xp.matmul(cols, d.transpose(0, 2, 1)).sum(axis=0)
        if need_dx:
            dxp = xp.matmul(W_flipped, im2col(df, KH, KW, 1, Hp, Wp)).reshape(n, C, Hp, Wp)
            dx[lo:hi] = dxp[:, :, pad : pad + H, pad : pad + Wd]
        return dW_t

    bounds = chunk_bounds(N, C * KH * KW * Ho * Wp * dout.itemsize)
    dW = (
        xp.stack([backward_chunk(lo, hi) for lo, hi in bounds])
        .sum(axis=0)
        .T.reshape(W.shape)
        .astype(dout.dtype, copy=False)
    )
    db = dout.sum(axis=(0, 2, 3))
    return dx, dW, db


class GroupedConvCache(NamedTuple):
    """What conv_backward needs of a conv_forward with groups > 1.

    xf:      (N, C, (Hp + stride) * Wp) padded input, rows flattened (flat_padded), where
             Hp = H + 2*pad and Wp = W + 2*pad; the ``stride`` extra rows are zeros.
    x_shape: (N, C, H, W).
    W:       (F, C/groups, KH, KW) filters.
    stride, pad, groups: ints.
    """

    xf: np.ndarray
    x_shape: tuple
    W: np.ndarray
    stride: int
    pad: int
    groups: int


def _grouped_forward(x, W, b, stride, pad, groups, Ho, Wo):
    """conv_forward for groups > 1 (shapes already checked): out (N, F, Ho, Wo), cache."""
    N, C, H, Wd = x.shape
    F, Cg, KH, KW = W.shape
    Wp = Wd + 2 * pad
    xp = array_module(x)
    xf = flat_padded(x, pad, pad + stride, pad, pad)
    cache = GroupedConvCache(xf, x.shape, W, stride, pad, groups)
    out = xp.empty((N, F, Ho, Wo), dtype=x.dtype)
    Wg = W.reshape(groups, F // groups, Cg * KH * KW)
    b3 = b.reshape(1, F, 1, 1)
    for lo, hi in chunk_bounds(N, C * KH * KW * Ho * Wp * x.itemsize):
        # im2col rows are ordered (c, ki, kj) with c outermost: group k's rows are one block
        cols = im2col(xf[lo:hi], KH, KW, stride, Ho, Wp)
        cols = cols.reshape(hi - lo, groups, Cg * KH * KW, Ho * Wp)
        wide = xp.matmul(Wg, cols).reshape(hi - lo, F, Ho, Wp)
        xp.add(wide[..., :Wo], b3, out=out[lo:hi])
    return out, cache


def _grouped_backward(dout, cache, need_dx):
    """conv_backward for groups > 1: dx (N, C, H, W) or None, dW (F, C/g, KH, KW), db (F,)."""
    xf, (N, C, H, Wd), W, stride, pad, groups = cache
    xp = array_module(dout)
    F, Cg, KH, KW = W.shape
    Ho, Wo = dout.shape[2:]
    Hp, Wp = H + 2 * pad, Wd + 2 * pad
    db = dout.sum(axis=(0, 2, 3))
    # The same two correlations as the groups == 1 backward, each one batched over groups.
    Fg = F // groups
    W_flipped = (
        W[:, :, ::-1, ::-1]
        .reshape(groups, Fg, Cg, KH, KW)
        .transpose(0, 2, 1, 3, 4)
        .reshape(groups, Cg, Fg * KH * KW)
    )
    spread_h, spread_w = (Ho - 1) * stride + 1, (Wo - 1) * stride + 1
    top, left = KH - 1, KW - 1
    right = Wp - left - spread_w
    bottom = Hp + 1 - spread_h
    dx = xp.empty((N, C, H, Wd), dtype=dout.dtype) if need_dx else None
    dW_t = xp.zeros((groups, Cg * KH * KW, Fg), dtype=dout.dtype)  # (group, (c, ki, kj), f)
    for lo, hi in chunk_bounds(N, C * KH * KW * Ho * Wp * dout.itemsize):
        n = hi - lo
        d = xp.zeros((n, F, Ho, Wp), dtype=dout.dtype)  # dout in the forward's wide layout
        d[..., :Wo] = dout[lo:hi]
        d = d.reshape(n, groups, Fg, Ho * Wp)
        cols = im2col(xf[lo:hi], KH, KW, stride, Ho, Wp)
        cols = cols.reshape(n, groups, Cg * KH * KW, Ho * Wp)
        dW_t += xp.matmul(cols, d.transpose(0, 1, 3, 2)).sum(axis=0)
        if need_dx:
            df = flat_padded(dout[lo:hi], top, bottom, left, right, step=stride)
            dcols = im2col(df, KH, KW, 1, Hp, Wp).reshape(n, groups, Fg * KH * KW, Hp * Wp)
            dxp = xp.matmul(W_flipped, dcols).reshape(n, C, Hp, Wp)
            dx[lo:hi] = dxp[:, :, pad : pad + H, pad : pad + Wd]
    dW = dW_t.transpose(0, 2, 1).reshape(W.shape)
    return dx, dW, db
