"""Elementwise activations: ReLU, leaky ReLU, sigmoid, tanh.

Each *_forward(x) returns (out, cache) with out shaped and typed like x;
each *_backward(dout, cache) returns dx shaped and typed like dout.
"""

import numpy as np

from layers.arraylib import array_module


def relu_forward(x):
    """out = max(x, 0). x any shape. cache = out (out > 0 exactly where x > 0)."""
    xp = array_module(x)
    out = xp.maximum(x, 0)
    return out, out


def relu_backward(dout, cache):
    """dx = dout where x > 0, else 0 (also 0 at x == 0). cache = out of relu_forward."""
    out = cache
    return dout * (out > 0)  # float * bool keeps dout's dtype


def leaky_relu_forward(x, alpha=0.01):
    """out = x where x > 0, else alpha * x. x any shape. cache = (x, alpha)."""
    xp = array_module(x)
    return xp.where(x > 0, x, alpha * x), (x, alpha)


def leaky_relu_backward(dout, cache):
    """dx = dout where x > 0, else alpha * dout. cache = (x, alpha)."""
    x, alpha = cache
    xp = array_module(dout)
    return xp.where(x > 0, dout, alpha * dout)


def sigmoid_forward(x):
    """out = 1 / (1 + exp(-x)), any shape; cache = out.

    Stable form: exp is only taken of -|x| <= 0, so it cannot overflow (for
    x = -1e4 it underflows quietly to 0, giving out = 0 exactly, even under
    np.seterr(all="raise")).
    """
    xp = array_module(x)
    with np.errstate(under="ignore"):  # e^-|x| -> 0 is the right answer for large |x|
        e = xp.exp(-xp.abs(x))
    out = xp.where(x >= 0, 1, e) / (1 + e)  # 1/(1+e^-x) for x >= 0, e^x/(1+e^x) below
    return out, out


def sigmoid_backward(dout, cache):
    """dx = dout * out * (1 - out). cache = out of sigmoid_forward."""
    out = cache
    return dout * out * (1 - out)


def tanh_forward(x):
    """out = tanh(x), any shape; cache = out."""
    xp = array_module(x)
    out = xp.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    """dx = dout * (1 - out**2). cache = out of tanh_forward."""
    out = cache
    return dout * (1 - out * out)
