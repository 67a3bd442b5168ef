"""Centered finite differences: the independent check of every backward pass.

For a function ``f(x) -> out`` and an upstream gradient ``dout`` the scalar
``L = sum(f(x) * dout)`` has ``dL/dx = backward(dout)``. The numerical
gradient perturbs one entry of ``x`` at a time by ``±h`` (in float64) and
takes ``(L(x + h) - L(x - h)) / 2h``; its error is O(h^2).
"""

import numpy as np
import pandas as pd

from core.learn.loss import mse, softmax_cross_entropy
from model.blueprints import validate_blueprint
from model.shapes import trace_shapes
from model.walk import KINDS, walk_backward, walk_forward


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


def kind_cases():
    """``[(type, GradCase), ...]``: the gradient-check cases of every layer kind's record."""
    return [(name, case) for name, kind in KINDS.items() for case in kind.gradcheck]


def check_kind(type_name, case, rng):
    """``[(gradient name, relative error), ...]`` of one kind's case, through the walk.

    The layer (or composite) runs in training mode on float64 inputs and
    random float64 parameters; its dx and every parameter gradient are compared
    with centered differences of ``L = sum(out * dout)``. Dropout's masks are
    drawn from the same seed at every call, so the function is fixed.
    """
    specs = validate_blueprint([{"type": type_name, "name": type_name, **case.hyper}])
    params = {}
    for row in trace_shapes(specs, case.in_shape[1:]):
        for key, p in row.params.items():
            params[key] = rng.standard_normal(p.shape) if p.trainable else _fixed(p)
    x = _case_input(case, rng)

    def run(x_now):
        out, caches, _ = walk_forward(params, x_now, specs, True, np.random.default_rng(0))
        return out, caches

    out, caches = run(x)
    dout = rng.standard_normal(out.shape)
    dx, grads = walk_backward(dout, caches, specs)
    errors = [("dx", rel_error(dx, numerical_gradient(lambda xi: run(xi)[0], x, dout)))]
    for key, grad in grads.items():
        numeric = numerical_gradient(lambda _: run(x)[0], params[key], dout)
        local = key.removeprefix(f"{type_name}.")
        errors.append((f"d{local}", rel_error(grad, numeric)))
    return errors


def _fixed(p):
    """A running statistic at its initial value (zeros or ones)."""
    return getattr(np, p.init)(p.shape)


def _case_input(case, rng):
    """The float64 input of a GradCase: normal, or distinct values away from 0 and ties."""
    if not case.distinct:
        return rng.standard_normal(case.in_shape)
    n = int(np.prod(case.in_shape))
    values = rng.permutation(n).reshape(case.in_shape) + 0.5
    return (values - n / 2) / n * 4


def _loss_cases(rng):
    """(name, scores shape, gradient name, loss(scores) -> (loss, dscores))."""
    labels = rng.integers(0, 5, 4)
    target = rng.standard_normal((4, 5))
    return [
        ("softmax cross-entropy", (4, 5), "dscores", lambda s: softmax_cross_entropy(s, labels)),
        ("mse", (4, 5), "dpred", lambda p: mse(p, target)),
    ]


def gradient_report(seed=0, tolerance=1e-7):
    """Every layer kind's and loss's gradients against centered differences in float64.

    Returns a pandas DataFrame: layer, input shape, gradient, relative error, ok.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for type_name, case in kind_cases():
        for grad_name, err in check_kind(type_name, case, rng):
            rows.append((case.label, _x(case.in_shape), grad_name, err))
    for name, shape, grad_name, loss in _loss_cases(rng):
        scores = rng.standard_normal(shape)
        numeric = numerical_gradient(lambda s, loss=loss: np.array(loss(s)[0]), scores, 1.0)
        rows.append((name, _x(shape), grad_name, rel_error(loss(scores)[1], numeric)))
    report = pd.DataFrame(rows, columns=["layer", "input shape", "gradient", "relative error"])
    report["ok"] = report["relative error"] < tolerance
    return report


def _x(shape):
    return "x".join(map(str, shape))
