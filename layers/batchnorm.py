"""Batch normalization, per feature on (N, D) and per channel on (N, C, H, W).

Training normalizes with the statistics of the batch; evaluation with the running
statistics, which training returns updated (never modified in place):
    new = momentum * old + (1 - momentum) * batch_statistic
(momentum=0.9 here weights the OLD value; it corresponds to PyTorch's momentum=0.1).
The running variance is updated with the BIASED batch variance (divide by the
number of values m, the same variance the batch was normalized with), not with
PyTorch's unbiased m / (m - 1) correction; for m in the thousands the two agree
to a fraction of a percent.

Under mixed precision (core/learn/precision.py) x comes in float16 and the layer's arrays
stay float32: the statistics, the normalization and the gradients are computed in float32
(a float16 sum over a batch's pixels would lose digits, or overflow), and out and dx go back
to float16.
"""

from typing import NamedTuple

import numpy as np

from layers.arraylib import array_module
from layers.parts import in_order_sum, serial_map


class BatchNormCache(NamedTuple):
    """xhat: normalized x, shape of x; gamma (C,); inv_std: 1 / sqrt(var + eps) with
    keepdims shape (1, C) or (1, C, 1, 1) (batch var in training, running var in eval);
    train: which statistics the forward used (they have different backwards)."""

    xhat: np.ndarray
    gamma: np.ndarray
    inv_std: np.ndarray
    train: bool


def _per_channel_sum(a, b=None):
    """(C,) sums of a (or of a * b) over the batch, and for images also height and width.

    a, b (N, C) or (N, C, H, W). einsum sums the products without a temporary array
    and, on the contiguous (N, C, H*W) view, about three times faster than a.sum(axis=...).
    """
    xp = array_module(a)
    a3 = a.reshape(a.shape[0], a.shape[1], -1)
    if b is None:
        return xp.einsum("nci->c", a3)
    return xp.einsum("nci,nci->c", a3, b.reshape(a3.shape))


def _widened(a, gamma):
    """``a`` in gamma's dtype if it is float16 (mixed precision), else ``a`` itself."""
    return a.astype(gamma.dtype, copy=False) if a.dtype == np.float16 else a


def _check_shapes(x, gamma, beta, running_mean, running_var):
    """ValueError naming every shape unless x is (N, C) or (N, C, H, W) and the rest (C,)."""
    shapes = {
        "gamma": gamma.shape,
        "beta": beta.shape,
        "running_mean": running_mean.shape,
        "running_var": running_var.shape,
    }
    if x.ndim not in (2, 4) or any(s != x.shape[1:2] for s in shapes.values()):
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(
            f"batchnorm: shapes do not fit: x {x.shape}, {listed}; expected x (N, C) or "
            "(N, C, H, W) and every parameter and running statistic of shape (C,)"
        )


def _stat_shape(x):
    """The keepdims shape of a per-channel statistic: (1, C) or (1, C, 1, 1)."""
    return (1, -1) if x.ndim == 2 else (1, -1, 1, 1)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, train, momentum=0.9, eps=1e-5):
    """out = gamma * (x - mean) / sqrt(var + eps) + beta, per feature / channel.

    x (N, C) or (N, C, H, W); gamma, beta, running_mean, running_var (C,); all one dtype, or
    x float16 with float32 arrays (mixed precision: computed in float32, out in float16).
    train: True normalizes with the batch mean and biased variance over axes (0,) or
    (0, 2, 3) and returns updated running statistics (new arrays); False normalizes
    with running_mean / running_var and returns those same arrays unchanged.
    Returns (out shaped like x, new_running_mean (C,), new_running_var (C,), cache),
    cache = BatchNormCache(xhat, gamma, inv_std, train).
    """
    _check_shapes(x, gamma, beta, running_mean, running_var)
    shape = _stat_shape(x)  # broadcasts (C,) against x
    in_dtype, x = x.dtype, _widened(x, gamma)
    if train:
        m = x.size // x.shape[1]  # values per feature / channel
        mean = _per_channel_sum(x).reshape(shape) / m
        xhat = x - mean  # centered here, normalized in place below
        var = _per_channel_sum(xhat, xhat).reshape(shape) / m  # biased, two-pass
        new_mean = momentum * running_mean + (1 - momentum) * mean.reshape(-1)
        new_var = momentum * running_var + (1 - momentum) * var.reshape(-1)
    else:
        xhat = x - running_mean.reshape(shape)
        var, new_mean, new_var = running_var.reshape(shape), running_mean, running_var
    inv_std = 1 / array_module(var).sqrt(var + eps)
    xhat *= inv_std
    out = xhat * gamma.reshape(shape)
    out += beta.reshape(shape)
    out = out.astype(in_dtype, copy=False)
    return out, new_mean, new_var, BatchNormCache(xhat, gamma, inv_std, train)


def batchnorm_forward_parts(
    parts, gamma, beta, running_mean, running_var, momentum=0.9, eps=1e-5, map_parts=serial_map
):
    """Training batchnorm_forward of one batch held as parts, cut along the batch axis.

    parts: [x_0, x_1, ...], each (n_i, C) or (n_i, C, H, W); the batch is their
    concatenation, and its statistics are summed over the parts in order (two passes:
    the mean, then the variance of the centered values): the same numbers as
    batchnorm_forward(train=True) of the whole batch up to rounding, and with one part
    exactly. batchnorm_forward is the definition; this is the fast path of the
    threads-over-shards executor (model/shards.py), which keeps each part where it lies.
    map_parts(function, items) -> [function(item) ...]: how the per-part work runs
    (serial_map, or the executor's worker threads).
    Returns ([out per part], new_running_mean (C,), new_running_var (C,),
    [BatchNormCache per part]).
    """
    for x in parts:
        _check_shapes(x, gamma, beta, running_mean, running_var)
    in_dtype, parts = parts[0].dtype, [_widened(x, gamma) for x in parts]
    stat_shape = _stat_shape(parts[0])  # broadcasts (C,) against x
    m = sum(x.size for x in parts) // parts[0].shape[1]  # values per feature / channel
    mean = in_order_sum(map_parts(_per_channel_sum, parts)).reshape(stat_shape) / m

    def center(x):
        xc = x - mean  # normalized in place below
        return xc, _per_channel_sum(xc, xc)

    centered = map_parts(center, parts)
    var = in_order_sum([squares for _, squares in centered]).reshape(stat_shape) / m  # two-pass
    new_mean = momentum * running_mean + (1 - momentum) * mean.reshape(-1)
    new_var = momentum * running_var + (1 - momentum) * var.reshape(-1)
    inv_std = 1 / array_module(var).sqrt(var + eps)

    def normalize(xhat):
        xhat *= inv_std
        out = xhat * gamma.reshape(stat_shape)
        out += beta.reshape(stat_shape)
        return out.astype(in_dtype, copy=False), BatchNormCache(xhat, gamma, inv_std, True)

    results = map_parts(normalize, [xc for xc, _ in centered])
    return [out for out, _ in results], new_mean, new_var, [cache for _, cache in results]


def batchnorm_backward(dout, cache):
    """Gradients of batchnorm_forward, in the mode the forward ran in.

    dout shaped like x; cache = BatchNormCache from the forward.
    Returns dx (shape of x), dgamma (C,), dbeta (C,), in dout's dtype (a float16 dout: dx
    in float16, dgamma and dbeta in gamma's float32).

    Training (the batch statistics depend on x), with m values per channel:
        dx = gamma * inv_std * (dout - mean(dout) - xhat * mean(dout * xhat)),
    the means per channel, i.e. dbeta / m and dgamma / m.
    Evaluation (fixed statistics, an affine map): dx = gamma * inv_std * dout.
    """
    xhat, gamma, inv_std, train = cache
    out_dtype, dout = dout.dtype, _widened(dout, gamma)
    dbeta = _per_channel_sum(dout)
    dgamma = _per_channel_sum(dout, xhat)
    scale = gamma.reshape(inv_std.shape) * inv_std
    if not train:
        return (dout * scale).astype(out_dtype, copy=False), dgamma, dbeta
    m = dout.size // dbeta.size  # values per feature / channel
    mean_dout = dbeta.reshape(inv_std.shape) / m
    mean_dout_xhat = dgamma.reshape(inv_std.shape) / m
    dx = (dout - xhat * mean_dout_xhat - mean_dout) * scale
    return dx.astype(out_dtype, copy=False), dgamma, dbeta


def batchnorm_backward_parts(douts, caches, need_dx=True, map_parts=serial_map):
    """Training batchnorm_backward of a batch held as parts (batchnorm_forward_parts).

    douts: [dout_0, dout_1, ...] shaped like the parts; caches: their BatchNormCaches.
    need_dx: False skips dx (the layer's input is the data).
    Returns ([dx per part] or None, dgamma (C,), dbeta (C,)), the sums over the parts
    added in order: batchnorm_backward's numbers up to rounding, with one part exactly.
    """
    out_dtype = douts[0].dtype
    pairs = [
        (_widened(dout, cache.gamma), cache) for dout, cache in zip(douts, caches, strict=True)
    ]

    def parameter_gradients(pair):
        dout, cache = pair
        return _per_channel_sum(dout), _per_channel_sum(dout, cache.xhat)

    sums = map_parts(parameter_gradients, pairs)
    dbeta = in_order_sum([s for s, _ in sums])
    dgamma = in_order_sum([s for _, s in sums])
    if not need_dx:
        return None, dgamma, dbeta
    m = sum(dout.size for dout, _ in pairs) // dbeta.size

    def input_gradient(pair):
        dout, (xhat, gamma, inv_std, _) = pair
        dx = xhat * (dgamma.reshape(inv_std.shape) / -m)
        dx += dout
        dx -= dbeta.reshape(inv_std.shape) / m
        dx *= gamma.reshape(inv_std.shape) * inv_std
        return dx.astype(out_dtype, copy=False)

    return map_parts(input_gradient, pairs), dgamma, dbeta
