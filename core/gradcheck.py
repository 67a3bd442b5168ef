"""Centered finite differences: the independent check of every backward pass.

For a function ``f(x) -> out`` and an upstream gradient ``dout`` the scalar
``L = sum(f(x) * dout)`` has ``dL/dx = backward(dout)``. The numerical
gradient perturbs one entry of ``x`` at a time by ``±h`` (in float64) and
takes ``(L(x + h) - L(x - h)) / 2h``; its error is O(h^2).
"""

import numpy as np


def numerical_gradient(f, x, dout, h=1e-5):
    """dL/dx for ``L = sum(f(x) * dout)`` by centered differences.

    f:    a function of the array ``x`` (called with ``x`` modified in place,
          restored afterwards), returning an array shaped like ``dout``.
    x:    float64 array, any shape.
    dout: float64 array shaped like ``f(x)``.
    Returns an array shaped like ``x``.
    """
    grad = np.zeros_like(x)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)  # views: writes reach x
    for i in range(flat_x.size):
        old = flat_x[i]
        flat_x[i] = old + h
        plus = np.sum(f(x) * dout)
        flat_x[i] = old - h
        minus = np.sum(f(x) * dout)
        flat_x[i] = old
        flat_grad[i] = (plus - minus) / (2 * h)
    return grad


def rel_error(a, b):
    """Relative error ``||a - b|| / (||a|| + ||b||)`` of two arrays (0 when both are 0).

    A norm-wise measure: unlike an element-wise one it is not dominated by
    entries whose true gradient is (nearly) zero.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)
