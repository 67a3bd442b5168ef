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


def check_layer(forward, backward, inputs, rng):
    """Relative errors of a layer's analytic gradients against centered differences.

    forward:  function(*inputs) -> (out, cache).
    backward: function(dout, cache) -> one gradient or a tuple, one per input.
    inputs:   list of float64 arrays, the ones to differentiate with respect to.
    Returns a list of relative errors, one per input.
    """
    out, cache = forward(*inputs)
    dout = rng.standard_normal(out.shape)
    grads = backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    errors = []
    for i, (x, g) in enumerate(zip(inputs, grads, strict=True)):

        def f(xi, i=i):
            return forward(*inputs[:i], xi, *inputs[i + 1 :])[0]

        errors.append(rel_error(g, numerical_gradient(f, x, dout)))
    return errors


def _layer_cases(rng):
    """(layer, input shape, names of the gradients, forward, backward, inputs) to check."""
    import layers as L
    from core.loss import mse, softmax_cross_entropy

    def normal(*shape):
        return rng.standard_normal(shape)

    def distinct(*shape):  # no ties and no values near 0: max and ReLU are smooth here
        values = rng.permutation(np.prod(shape)).reshape(shape) + 0.5
        return (values - np.prod(shape) / 2) / np.prod(shape) * 4

    labels = rng.integers(0, 5, 4)
    target = normal(4, 5)
    conv = (L.conv_forward, L.conv_backward)
    return [
        (
            "conv 3x3 s1 p1",
            (2, 3, 6, 5),
            "dx dW db",
            *conv,
            [normal(2, 3, 6, 5), normal(4, 3, 3, 3), normal(4)],
            {},
        ),
        (
            "conv 3x2 s2 p2",
            (2, 2, 7, 6),
            "dx dW db",
            *conv,
            [normal(2, 2, 7, 6), normal(3, 2, 3, 2), normal(3)],
            {"stride": 2, "pad": 2},
        ),
        (
            "maxpool 2/2",
            (2, 3, 6, 4),
            "dx",
            L.maxpool_forward,
            L.maxpool_backward,
            [distinct(2, 3, 6, 4)],
            {},
        ),
        (
            "maxpool 3/2",
            (2, 2, 7, 7),
            "dx",
            L.maxpool_forward,
            L.maxpool_backward,
            [distinct(2, 2, 7, 7)],
            {"size": 3, "stride": 2},
        ),
        (
            "avgpool 2/2",
            (2, 3, 6, 4),
            "dx",
            L.avgpool_forward,
            L.avgpool_backward,
            [normal(2, 3, 6, 4)],
            {},
        ),
        (
            "fc",
            (3, 7),
            "dx dW db",
            L.fc_forward,
            L.fc_backward,
            [normal(3, 7), normal(7, 4), normal(4)],
            {},
        ),
        ("relu", (3, 8), "dx", L.relu_forward, L.relu_backward, [distinct(3, 8)], {}),
        (
            "leaky_relu",
            (3, 8),
            "dx",
            L.leaky_relu_forward,
            L.leaky_relu_backward,
            [distinct(3, 8)],
            {},
        ),
        ("sigmoid", (3, 8), "dx", L.sigmoid_forward, L.sigmoid_backward, [normal(3, 8)], {}),
        ("tanh", (3, 8), "dx", L.tanh_forward, L.tanh_backward, [normal(3, 8)], {}),
        (
            "flatten",
            (2, 3, 2, 2),
            "dx",
            L.flatten_forward,
            L.flatten_backward,
            [normal(2, 3, 2, 2)],
            {},
        ),
        (
            "dropout p=0.3",
            (4, 6),
            "dx",
            lambda x: L.dropout_forward(x, 0.3, np.random.default_rng(0), True),
            L.dropout_backward,
            [normal(4, 6)],
            {},
        ),
        (
            "batchnorm (N, D)",
            (5, 4),
            "dx dgamma dbeta",
            lambda x, g, b: _bn(L, x, g, b),
            L.batchnorm_backward,
            [normal(5, 4), normal(4), normal(4)],
            {},
        ),
        (
            "batchnorm (N, C, H, W)",
            (3, 2, 3, 2),
            "dx dgamma dbeta",
            lambda x, g, b: _bn(L, x, g, b),
            L.batchnorm_backward,
            [normal(3, 2, 3, 2), normal(2), normal(2)],
            {},
        ),
        (
            "softmax cross-entropy",
            (4, 5),
            "dscores",
            lambda s: _as_layer(softmax_cross_entropy(s, labels)),
            _loss_backward,
            [normal(4, 5)],
            {},
        ),
        (
            "mse",
            (4, 5),
            "dpred",
            lambda p: _as_layer(mse(p, target)),
            _loss_backward,
            [normal(4, 5)],
            {},
        ),
    ]


def _bn(L, x, gamma, beta):
    c = gamma.shape
    out, _, _, cache = L.batchnorm_forward(x, gamma, beta, np.zeros(c), np.ones(c), True)
    return out, cache


def _as_layer(loss_and_grad):
    """A loss as a 'layer' whose output is the scalar loss and whose cache is its gradient."""
    loss, grad = loss_and_grad
    return np.array(loss), grad


def _loss_backward(dout, grad):
    return grad * dout


def gradient_report(seed=0, tolerance=1e-7):
    """Every layer's gradients against centered differences in float64, as a table.

    Returns a pandas DataFrame: layer, input shape, gradient, relative error, ok.
    """
    import functools

    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for name, shape, grad_names, fwd, bwd, inputs, hyper in _layer_cases(rng):
        errors = check_layer(functools.partial(fwd, **hyper) if hyper else fwd, bwd, inputs, rng)
        for grad_name, err in zip(grad_names.split(), errors, strict=True):
            rows.append((name, "x".join(map(str, shape)), grad_name, err, err < tolerance))
    return pd.DataFrame(rows, columns=["layer", "input shape", "gradient", "relative error", "ok"])
