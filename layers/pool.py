"""Max and average pooling over square windows, with loop references as oracles.

Shapes: x (N, C, H, W) -> out (N, C, Ho, Wo), with no padding and floor division:
    Ho = (H - size) // stride + 1,    Wo = (W - size) // stride + 1.
Windows may overlap (size > stride) or leave gaps (size < stride).

Fast kernels loop over the size*size window offsets (i, j) only, never over pixels:
offset (i, j) of every window is one strided view of x, shaped (N, C, Ho, Wo).
  * tiled (size == stride, H and W multiples of size): the windows come from the
    reshape (N, C, Ho, size, Wo, size); every input pixel lies in exactly one
    window, so the backward writes each dx slice once into np.empty (no zeroing,
    no accumulation);
  * otherwise: sliding_window_view, sliced by stride; the backward adds the
    shifted slices into zeros (overlapping windows share pixels).
NumPy's multi-axis reductions (x.max(axis=(3, 5))) are several times slower on
these strided views than elementwise passes over the offsets, hence the loops.

Max-pool ties: the gradient goes to the FIRST maximum of the window in row-major
order (like np.argmax on the flattened window); the fast and loop versions agree.
"""

from typing import NamedTuple

import numpy as np

from layers.arraylib import array_module, window_view


class MaxPoolCache(NamedTuple):
    """x_shape: shape of x; size, stride: the window; argmax (N, C, Ho, Wo) uint8 or
    int64: row-major index (i * size + j) of the first maximum inside each window."""

    x_shape: tuple
    size: int
    stride: int
    argmax: np.ndarray


class AvgPoolCache(NamedTuple):
    """x_shape: shape of x; size, stride: the window."""

    x_shape: tuple
    size: int
    stride: int


def pool_output_size(x_shape, size, stride, layer):
    """(Ho, Wo) for a (N, C, H, W) input; ValueError naming the numbers if impossible."""
    if len(x_shape) != 4:
        raise ValueError(
            f"{layer}: input must be 4-D (N, C, H, W), got shape {tuple(x_shape)}; "
            "reshape it to (batch, channels, height, width)"
        )
    for name, value in (("size", size), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(
                f"{layer}: {name} must be a positive integer, got {name}={value!r} "
                f"(size={size!r}, stride={stride!r})"
            )
    height, width = x_shape[2], x_shape[3]
    if size > height or size > width:
        raise ValueError(
            f"{layer}: window size {size} does not fit the {height}x{width} input map "
            f"(x shape {tuple(x_shape)}); use size <= {min(height, width)} or a larger input"
        )
    return (height - size) // stride + 1, (width - size) // stride + 1


def _is_tiled(x_shape, size, stride):
    """True when the windows partition the map exactly (the reshape fast path)."""
    return size == stride and x_shape[2] % size == 0 and x_shape[3] % size == 0


def _windows(x, size, stride, out_hw, writeable=False):
    """View of x shaped (N, C, Ho, Wo, size, size): element [n, c, r, s, i, j] is
    x[n, c, r * stride + i, s * stride + j]. writeable only for arrays we own (dx)."""
    n, c = x.shape[:2]
    ho, wo = out_hw
    if _is_tiled(x.shape, size, stride):
        return x.reshape(n, c, ho, size, wo, size).transpose(0, 1, 2, 4, 3, 5)
    view = window_view(x, size, writeable=writeable)
    return view[:, :, : (ho - 1) * stride + 1 : stride, : (wo - 1) * stride + 1 : stride]


def _offsets(size):
    """Window offsets (k, i, j) in row-major order, k = i * size + j."""
    return ((i * size + j, i, j) for i in range(size) for j in range(size))


def maxpool_forward(x, size=2, stride=2):
    """Max pooling over size x size windows moved by stride (no padding).

    x (N, C, H, W) float; size, stride positive ints with size <= H and size <= W.
    Returns out (N, C, Ho, Wo) in x's dtype, Ho = (H - size) // stride + 1 (same for W),
    and cache = MaxPoolCache(x_shape, size, stride, argmax (N, C, Ho, Wo)).
    """
    out_hw = pool_output_size(x.shape, size, stride, "maxpool")
    windows = _windows(x, size, stride, out_hw)
    xp = array_module(x)
    out = windows[..., 0, 0].copy()
    index_dtype = np.uint8 if size * size <= 256 else np.int64
    argmax = xp.zeros(out.shape, dtype=index_dtype)
    better = xp.empty(out.shape, dtype=bool)
    jump = xp.empty_like(argmax)
    for k, i, j in _offsets(size):
        if k == 0:
            continue
        candidate = windows[..., i, j]
        xp.greater(candidate, out, out=better)  # strict: an equal later value keeps the first
        xp.maximum(out, candidate, out=out)
        # argmax = where(better, k, argmax) without a masked write: np.copyto(where=) is
        # ~30x slower on the random masks pooling makes. Unsigned wrap-around is exact here
        # (k as the index type, so that no library promotes k - argmax to a wider type).
        xp.subtract(index_dtype(k), argmax, out=jump)
        jump *= better
        argmax += jump
    return out, MaxPoolCache(x.shape, size, stride, argmax)


def maxpool_backward(dout, cache):
    """Gradient of max pooling: each dout entry goes to its window's first maximum.

    dout (N, C, Ho, Wo); cache from maxpool_forward. Returns dx (N, C, H, W), dout's dtype.
    """
    x_shape, size, stride, argmax = cache
    out_hw = argmax.shape[2:]
    tiled = _is_tiled(x_shape, size, stride)
    xp = array_module(dout)
    dx = xp.empty(x_shape, dtype=dout.dtype) if tiled else xp.zeros(x_shape, dtype=dout.dtype)
    dx_windows = _windows(dx, size, stride, out_hw, writeable=True)
    for k, i, j in _offsets(size):
        if tiled:  # every pixel is in exactly one window: write, do not add
            xp.multiply(dout, argmax == k, out=dx_windows[..., i, j])
        else:  # for one offset (i, j) the windows' pixels are distinct, so += is safe
            dx_windows[..., i, j] += dout * (argmax == k)
    return dx


def avgpool_forward(x, size=2, stride=2):
    """Average pooling over size x size windows moved by stride (no padding).

    x (N, C, H, W) float; size, stride positive ints with size <= H and size <= W.
    Returns out (N, C, Ho, Wo) in x's dtype, Ho = (H - size) // stride + 1 (same for W),
    and cache = AvgPoolCache(x_shape, size, stride).
    """
    out_hw = pool_output_size(x.shape, size, stride, "avgpool")
    windows = _windows(x, size, stride, out_hw)
    out = windows[..., 0, 0].copy()
    for k, i, j in _offsets(size):
        if k:
            out += windows[..., i, j]
    out *= 1.0 / (size * size)  # a Python float keeps x's dtype
    return out, AvgPoolCache(x.shape, size, stride)


def avgpool_backward(dout, cache):
    """Gradient of average pooling: each dout entry is spread evenly over its window.

    dout (N, C, Ho, Wo); cache from avgpool_forward. Returns dx (N, C, H, W), dout's dtype.
    """
    x_shape, size, stride = cache
    share = dout * (1.0 / (size * size))
    tiled = _is_tiled(x_shape, size, stride)
    xp = array_module(dout)
    dx = xp.empty(x_shape, dtype=dout.dtype) if tiled else xp.zeros(x_shape, dtype=dout.dtype)
    dx_windows = _windows(dx, size, stride, dout.shape[2:], writeable=True)
    for _, i, j in _offsets(size):
        if tiled:
            dx_windows[..., i, j] = share
        else:
            dx_windows[..., i, j] += share
    return dx


def maxpool_forward_naive(x, size=2, stride=2):
    """Loop reference of maxpool_forward (same arguments, output and cache)."""
    ho, wo = pool_output_size(x.shape, size, stride, "maxpool")
    n, c = x.shape[:2]
    out = np.empty((n, c, ho, wo), dtype=x.dtype)
    argmax = np.empty((n, c, ho, wo), dtype=np.int64)
    for r in range(ho):
        for s in range(wo):
            window = x[:, :, r * stride : r * stride + size, s * stride : s * stride + size]
            flat = window.reshape(n, c, size * size)
            argmax[:, :, r, s] = flat.argmax(axis=2)  # np.argmax picks the first maximum
            out[:, :, r, s] = flat.max(axis=2)
    return out, MaxPoolCache(x.shape, size, stride, argmax)


def maxpool_backward_naive(dout, cache):
    """Loop reference of maxpool_backward: dx (N, C, H, W)."""
    x_shape, size, stride, argmax = cache
    dx = np.zeros(x_shape, dtype=dout.dtype)
    n, c, ho, wo = dout.shape
    for b in range(n):
        for ch in range(c):
            for r in range(ho):
                for s in range(wo):
                    i, j = divmod(int(argmax[b, ch, r, s]), size)
                    dx[b, ch, r * stride + i, s * stride + j] += dout[b, ch, r, s]
    return dx


def avgpool_forward_naive(x, size=2, stride=2):
    """Loop reference of avgpool_forward (same arguments, output and cache)."""
    ho, wo = pool_output_size(x.shape, size, stride, "avgpool")
    out = np.empty(x.shape[:2] + (ho, wo), dtype=x.dtype)
    for r in range(ho):
        for s in range(wo):
            window = x[:, :, r * stride : r * stride + size, s * stride : s * stride + size]
            out[:, :, r, s] = window.mean(axis=(2, 3))
    return out, AvgPoolCache(x.shape, size, stride)


def avgpool_backward_naive(dout, cache):
    """Loop reference of avgpool_backward: dx (N, C, H, W)."""
    x_shape, size, stride = cache
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for r in range(dout.shape[2]):
        for s in range(dout.shape[3]):
            window = dx[:, :, r * stride : r * stride + size, s * stride : s * stride + size]
            window += dout[:, :, r, s, None, None] / (size * size)
    return dx
