"""Inverted dropout: drop units at random while training, identity at evaluation."""

import numpy as np

from layers.arraylib import array_module
from layers.parts import serial_map


def dropout_forward(x, p, rng, train):
    """Zero each unit with probability p and scale the kept ones by 1 / (1 - p).

    x (any shape) float; p: probability of DROPPING a unit, 0 <= p < 1;
    rng: np.random.Generator (required when train and p > 0); train: bool.
    Training: out = x * mask, where mask (shape and dtype of x) holds
    1 / (1 - p) for kept units and 0 for dropped ones, so E[out] = x.
    Not training (or p == 0): out is x itself (no copy).
    Returns (out, cache); cache = mask, or None when the layer is the identity.
    """
    mask = _mask(array_module(x), x.shape, x.dtype, p, rng) if train else _check_p(p)
    return (x, None) if mask is None else (x * mask, mask)


def dropout_forward_parts(parts, p, rng, map_parts=serial_map):
    """Training dropout_forward of one batch held as parts, cut along the batch axis.

    parts: [x_0, x_1, ...], each (n_i, ...). One mask is drawn for the whole batch,
    as dropout_forward draws it, and cut like the parts: the result is dropout_forward's
    of the whole batch, cut like the parts, bit for bit. map_parts: see layers/parts.py.
    Returns ([out per part], [mask per part, or None when p == 0]).
    """
    shape = (sum(len(x) for x in parts), *parts[0].shape[1:])
    mask = _mask(array_module(parts[0]), shape, parts[0].dtype, p, rng)
    if mask is None:
        return list(parts), [None] * len(parts)
    masks = array_module(mask).split(mask, np.cumsum([len(x) for x in parts])[:-1].tolist())
    return map_parts(lambda pair: pair[0] * pair[1], list(zip(parts, masks, strict=True))), masks


def _check_p(p):
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p (the drop probability) must be in [0, 1), got p={p!r}")


def _mask(xp, shape, dtype, p, rng):
    """The training mask of x (shape, dtype) in x's array library ``xp``: 1 / (1 - p) kept,
    0 dropped; None if p == 0. The uniforms come from the NumPy generator ``rng`` whatever
    the library, so a GPU run drops the units a CPU run drops."""
    _check_p(p)
    if p == 0:
        return None
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"dropout: training with p={p} needs rng = np.random.default_rng(seed), got {rng!r}"
        )
    # float32 uniforms for float32 x: half the random bits and no float64 temporaries; for
    # float16 x (mixed precision) too, so that it drops the units a float32 run drops
    uniform_dtype = np.float32 if dtype in (np.float16, np.float32) else np.float64
    mask = xp.asarray(rng.random(shape, dtype=uniform_dtype) >= p).astype(dtype)
    mask *= 1.0 / (1.0 - p)
    return mask


def dropout_backward(dout, cache):
    """Gradient of dropout_forward: dx = dout * mask (dout itself when cache is None)."""
    mask = cache
    return dout if mask is None else dout * mask
