"""Int8 layers for inference: symmetric quantization and exact integer sums.

A real value v is held as the int8 ``q = clip(rint(v / scale), -127, 127)``, so v is about
``q * scale`` (symmetric: zero is exactly 0, and -128 is never used, so |q| <= 127).

A quantized conv or fc layer quantizes its input with one scale (``x_scale``), multiplies it
by int8 weights that have one scale per output channel (``w_scale``), sums the products
exactly, then rescales each output channel by ``x_scale * w_scale[f]`` and adds a float bias:

    out[n, f] = x_scale * w_scale[f] * sum_k xq[n, k] * Wq[k, f] + b[f]

Why the sums are exact on a float BLAS: NumPy has no int8 matrix product (an integer matmul
runs without BLAS, tens of times slower), so the integer-valued arrays are multiplied as
floats. Each product is an integer of magnitude at most 127 * 127, so every partial sum of
K of them is an integer of magnitude at most K * 127**2; a float holds every integer up to
2**24 (float32) or 2**53 (float64) exactly, so below that bound every addition is exact, in
whatever order BLAS makes them, and the result is the integer sum itself. float32 serves
where K * 127**2 <= 2**24 (K <= 1040), float64 elsewhere (up to K of 5.5e8).
"""

import numpy as np

from layers.arraylib import array_module
from layers.conv import conv_forward

QMAX = 127  # int8 values in [-127, 127]


def quantize(x, scale, dtype=np.int8):
    """x float -> clip(rint(x / scale), -QMAX, QMAX), rounding halves to even.

    x: any shape; scale: a positive number, or an array that broadcasts against x
    (per-channel scales). dtype: int8 (the storage type), or a float type that then holds
    the same integer values exactly (what the integer products below take).
    Returns an array shaped like x, of ``dtype``.
    """
    xp = array_module(x)
    q = xp.divide(x, scale, dtype=np.result_type(x.dtype, np.float32))
    xp.rint(q, out=q)
    xp.clip(q, -QMAX, QMAX, out=q)
    return q.astype(dtype, copy=False)


def accumulator_dtype(k):
    """The float type whose BLAS product sums K int8 products exactly (module docstring)."""
    bound = k * QMAX * QMAX  # the largest partial sum's magnitude
    assert bound < 2**53, f"{k} terms of int8 products could exceed float64's exact integers"
    return np.float32 if bound <= 2**24 else np.float64


def qconv_accumulate(xq, Wq, stride=1, pad=0, groups=1):
    """The exact integer sums of a convolution of int8 values (no scales, no bias).

    xq: (N, C, H, W) int8 values (int8, or a float array holding them); Wq: (F, C/groups,
    KH, KW) int8. stride, pad, groups: as for layers.conv.conv_forward.
    Returns acc (N, F, Ho, Wo), float32 or float64 (accumulator_dtype of C/groups*KH*KW)
    holding integers: acc[n, f, i, j] = sum over (c, ki, kj) of xq * Wq, exactly.
    """
    F, Cg, KH, KW = Wq.shape
    dtype = accumulator_dtype(Cg * KH * KW)
    zeros = array_module(xq).zeros(F, dtype)
    acc, _ = conv_forward(
        xq.astype(dtype, copy=False), Wq.astype(dtype), zeros, stride, pad, groups
    )
    return acc


def qfc_accumulate(xq, Wq):
    """The exact integer sums of an affine map of int8 values: acc = xq @ Wq.

    xq: (N, D) int8 values (int8, or a float array holding them); Wq: (D, M) int8.
    Returns acc (N, M), float32 or float64 (accumulator_dtype of D) holding integers.
    """
    dtype = accumulator_dtype(Wq.shape[0])
    return xq.astype(dtype, copy=False) @ Wq.astype(dtype)


def rescale_factors(x_scale, w_scale, acc_dtype, dtype=np.float32):
    """x_scale * w_scale (channels,), computed in float64 and rounded to the wider of the
    accumulator's type and the output's ``dtype``: what each output channel's integer sum is
    multiplied by (in that wider type) before the bias is added."""
    wider = np.result_type(acc_dtype, dtype)
    return (float(x_scale) * w_scale.astype(np.float64)).astype(wider)  # x_scale: 0-d, anywhere


def _rescale(acc, x_scale, w_scale, b, channel_shape, dtype):
    """acc * (x_scale * w_scale) + b per output channel, in ``dtype`` (the product in the
    wider of acc's type and ``dtype``)."""
    scale = rescale_factors(x_scale, w_scale, acc.dtype, dtype)
    out = (acc * scale.reshape(channel_shape)).astype(dtype, copy=False)
    out += b.reshape(channel_shape).astype(dtype, copy=False)
    return out


def qconv_forward(x, Wq, w_scale, x_scale, b, stride=1, pad=0, groups=1):
    """A quantized convolution of float inputs, done in int8 arithmetic.

    x: (N, C, H, W) floats; Wq: (F, C/groups, KH, KW) int8; w_scale: (F,) positive, one per
    filter; x_scale: a positive scalar (the input's scale); b: (F,) float bias.
    Returns out (N, F, Ho, Wo) in x's dtype (see the module docstring for the formula).
    """
    dtype = accumulator_dtype(np.prod(Wq.shape[1:]))
    acc = qconv_accumulate(quantize(x, x_scale, dtype), Wq, stride, pad, groups)
    return _rescale(acc, x_scale, w_scale, b, (1, -1, 1, 1), x.dtype)


def qfc_forward(x, Wq, w_scale, x_scale, b):
    """A quantized fully connected layer of float inputs, done in int8 arithmetic.

    x: (N, D) floats; Wq: (D, M) int8; w_scale: (M,) positive, one per output unit;
    x_scale: a positive scalar; b: (M,) float bias.
    Returns out (N, M) in x's dtype.
    """
    acc = qfc_accumulate(quantize(x, x_scale, accumulator_dtype(Wq.shape[0])), Wq)
    return _rescale(acc, x_scale, w_scale, b, (1, -1), x.dtype)
