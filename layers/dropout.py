"""Inverted dropout: drop units at random while training, identity at evaluation."""

import numpy as np


def dropout_forward(x, p, rng, train):
    """Zero each unit with probability p and scale the kept ones by 1 / (1 - p).

    x (any shape) float; p: probability of DROPPING a unit, 0 <= p < 1;
    rng: np.random.Generator (required when train and p > 0); train: bool.
    Training: out = x * mask, where mask (shape and dtype of x) holds
    1 / (1 - p) for kept units and 0 for dropped ones, so E[out] = x.
    Not training (or p == 0): out is x itself (no copy).
    Returns (out, cache); cache = mask, or None when the layer is the identity.
    """
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p (the drop probability) must be in [0, 1), got p={p!r}")
    if not train or p == 0:
        return x, None
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"dropout: training with p={p} needs rng = np.random.default_rng(seed), got {rng!r}"
        )
    # float32 uniforms for float32 x: half the random bits and no float64 temporaries
    uniform_dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
    mask = (rng.random(x.shape, dtype=uniform_dtype) >= p).astype(x.dtype)
    mask *= 1.0 / (1.0 - p)
    return x * mask, mask


def dropout_backward(dout, cache):
    """Gradient of dropout_forward: dx = dout * mask (dout itself when cache is None)."""
    mask = cache
    return dout if mask is None else dout * mask
