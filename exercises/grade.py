"""Grade the backward passes of exercises/backward.py: finite differences and the project's layer.

    python -m exercises.grade                  # every exercise, from the repository root
    python -m exercises.grade relu_backward    # only the ones named

Each exercise runs the project's forward pass on small random float64 inputs (away from ReLU's
kink and from max-pool ties), draws a random ``dout``, and gives the learner's backward the
forward's cache. Every gradient it returns is compared with

- the numerical gradient of ``L = sum(out * dout)`` by centered finite differences
  (core/learn/gradcheck.py, h = 1e-5: its error is O(h^2), about 1e-10 relative here), and
- the project's own layer (the fast one from layers/ where there is one), run on the same inputs,

and passes when both relative errors ``|a - b| / (|a| + |b|)`` are below TOLERANCE. The
exit status is 0 when everything passes, 1 otherwise.
"""

import sys
from typing import NamedTuple

import numpy as np

from core.learn.gradcheck import numerical_gradient, rel_error
from layers import (
    batchnorm_backward,
    batchnorm_forward,
    conv_backward,
    conv_forward,
    conv_forward_naive,
    fc_backward,
    fc_forward,
    maxpool_backward,
    maxpool_forward,
    maxpool_forward_naive,
    relu_backward,
    relu_forward,
)

TOLERANCE = 1e-7  # a right answer is near 1e-10 (finite differences) or 1e-16 (the layer)
SEED = 0


class Case(NamedTuple):
    """One graded situation of an exercise.

    label:     what is special about it ("stride 2, pad 1"), "" when nothing.
    forward:   function(*inputs) -> (out, cache), the cache the learner's backward receives.
    names:     the gradients' names, in the forward's input order ("dx", "dW", "db").
    inputs:    float64 arrays, the forward's differentiable inputs.
    reference: function(dout, *inputs) -> the project's gradients, in the same order.
    """

    label: str
    forward: object
    names: tuple
    inputs: tuple
    reference: object


class Check(NamedTuple):
    """The verdict on one gradient: its relative errors, and what is wrong ("" when nothing)."""

    gradient: str
    vs_numeric: float
    vs_layer: float
    problem: str

    @property
    def passed(self):
        return not self.problem


class Grade(NamedTuple):
    """The verdict on one exercise: a Check per gradient, or why none could be made."""

    exercise: str
    checks: tuple
    error: str

    @property
    def passed(self):
        return not self.error and all(check.passed for check in self.checks)


def _away_from_zero(rng, shape):
    """Normal values pushed at least 0.1 away from 0, so x +- h never crosses ReLU's kink."""
    x = rng.standard_normal(shape)
    return x + 0.1 * np.sign(x)


def _distinct(rng, shape):
    """Values 0.1 apart in a random order: no ties, and x +- h never changes a window's maximum."""
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.1 + rng.uniform(0, 0.01, shape)


def _conv_case(rng, label, x_shape, w_shape, stride, pad):
    def forward(x, W, b):
        return conv_forward_naive(x, W, b, stride, pad)

    def reference(dout, x, W, b):
        return conv_backward(dout, conv_forward(x, W, b, stride, pad)[1])

    inputs = (
        rng.standard_normal(x_shape),
        rng.standard_normal(w_shape),
        rng.standard_normal(w_shape[0]),
    )
    return Case(label, forward, ("dx", "dW", "db"), inputs, reference)


def _maxpool_case(rng, label, x_shape, size, stride):
    def forward(x):
        return maxpool_forward_naive(x, size, stride)

    def reference(dout, x):
        return maxpool_backward(dout, maxpool_forward(x, size, stride)[1])

    return Case(label, forward, ("dx",), (_distinct(rng, x_shape),), reference)


def _batchnorm_forward(x, gamma, beta):
    """Training-mode batch norm of x with fresh running statistics: (out, cache)."""
    c = x.shape[1]
    out, _, _, cache = batchnorm_forward(x, gamma, beta, np.zeros(c), np.ones(c), train=True)
    return out, cache


def _batchnorm_case(rng, label, x_shape):
    def reference(dout, *inputs):
        return batchnorm_backward(dout, _batchnorm_forward(*inputs)[1])

    c = x_shape[1]
    inputs = (
        rng.normal(3.0, 2.0, x_shape),  # far from mean 0 and variance 1: the statistics matter
        rng.uniform(0.5, 1.5, c),
        rng.standard_normal(c),
    )
    return Case(label, _batchnorm_forward, ("dx", "dgamma", "dbeta"), inputs, reference)


def _fc_cases(rng):
    def reference(dout, *inputs):
        return fc_backward(dout, fc_forward(*inputs)[1])

    inputs = (rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3))
    return [Case("", fc_forward, ("dx", "dW", "db"), inputs, reference)]


def _relu_cases(rng):
    def reference(dout, x):
        return relu_backward(dout, relu_forward(x)[1])

    return [Case("", relu_forward, ("dx",), (_away_from_zero(rng, (3, 4, 5)),), reference)]


def _conv_cases(rng):
    return [
        _conv_case(rng, "stride 1, pad 1", (2, 3, 5, 5), (4, 3, 3, 3), 1, 1),
        _conv_case(rng, "stride 2, pad 0, 3x2 kernel", (2, 2, 7, 6), (3, 2, 3, 2), 2, 0),
    ]


def _maxpool_cases(rng):
    return [
        _maxpool_case(rng, "2x2 windows, stride 2", (2, 3, 4, 4), 2, 2),
        _maxpool_case(rng, "3x3 windows, stride 1: they overlap", (2, 2, 5, 5), 3, 1),
    ]


def _batchnorm_cases(rng):
    return [
        _batchnorm_case(rng, "(N, D) input", (8, 4)),
        _batchnorm_case(rng, "(N, C, H, W) input", (3, 2, 3, 3)),
    ]


# exercise name -> (the file holding the project's answer, function(rng) -> [Case, ...])
EXERCISES = {
    "fc_backward": ("layers/fc.py", _fc_cases),
    "relu_backward": ("layers/activations.py", _relu_cases),
    "conv_backward_naive": ("layers/conv.py", _conv_cases),
    "maxpool_backward_naive": ("layers/pool.py", _maxpool_cases),
    "batchnorm_backward": ("layers/batchnorm.py", _batchnorm_cases),
}


def check_case(backward, case, rng):
    """[Check, ...] of one case: the learner's ``backward`` against finite differences and the layer.

    Raises what ``backward`` raises (grade() reports it).
    """
    out, cache = case.forward(*case.inputs)
    dout = rng.standard_normal(out.shape)
    grads = backward(dout.copy(), cache)  # a copy: a backward that writes into dout harms nobody
    grads = grads if isinstance(grads, tuple | list) else (grads,)
    prefix = f" ({case.label})" if case.label else ""
    if len(grads) != len(case.names):
        problem = (
            f"returned {len(grads)} arrays, expected {len(case.names)}: {', '.join(case.names)}"
        )
        return [Check(", ".join(case.names) + prefix, np.nan, np.nan, problem)]
    expected = case.reference(dout, *case.inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    checks = []
    for i, (name, grad, want) in enumerate(zip(case.names, grads, expected, strict=True)):
        grad = np.asarray(grad)
        if grad.shape != want.shape:
            checks.append(
                Check(name + prefix, np.nan, np.nan, f"shape {grad.shape}, expected {want.shape}")
            )
            continue

        def f(xi, i=i):
            return case.forward(*case.inputs[:i], xi, *case.inputs[i + 1 :])[0]

        x = case.inputs[i].copy()  # numerical_gradient moves its entries and puts them back
        vs_numeric, vs_layer = (
            rel_error(grad, numerical_gradient(f, x, dout)),
            rel_error(grad, want),
        )
        worst = max(vs_numeric, vs_layer)
        problem = (
            "" if worst < TOLERANCE else f"relative error {worst:.1e} (tolerance {TOLERANCE:.0e})"
        )
        checks.append(Check(name + prefix, vs_numeric, vs_layer, problem))
    return checks


def grade(exercise, backward, seed=SEED, file=None):
    """Grade one exercise and print the verdict per gradient; returns the Grade.

    exercise: a name of EXERCISES ("fc_backward", ...).
    backward: the learner's function(dout, cache), with the contract of exercises/backward.py.
    file:     where to print (default sys.stdout).
    """
    file = file or sys.stdout
    answer_file, make_cases = EXERCISES[exercise]
    rng = np.random.default_rng(seed)
    try:
        checks = tuple(
            check for case in make_cases(rng) for check in check_case(backward, case, rng)
        )
        error = ""
    except NotImplementedError:
        checks, error = (), "not written yet (it raises NotImplementedError)"
    except Exception as exc:  # the learner's code: any error is a verdict, not a crash
        checks, error = (), f"it raised {type(exc).__name__}: {exc}"
    verdict = "pass" if not error and all(c.passed for c in checks) else "FAIL"
    print(f"{exercise}: {verdict}" + (f", {error}" if error else ""), file=file)
    for check in checks:
        errors = (
            f"relative error {check.vs_numeric:.1e} against finite differences, "
            f"{check.vs_layer:.1e} against {answer_file}"
        )
        if check.passed:
            print(f"  {check.gradient:<40} pass   ({errors})", file=file)
        elif np.isnan(check.vs_numeric):
            print(f"  {check.gradient:<40} FAIL   {check.problem}", file=file)
        else:
            print(f"  {check.gradient:<40} FAIL   {errors}", file=file)
    return Grade(exercise, checks, error)


def grade_all(namespace, names=None, file=None):
    """Grade the functions of ``namespace`` (a module or dict) named ``names`` (default: all).

    Returns {exercise: Grade}.
    """
    get = namespace.get if isinstance(namespace, dict) else lambda n: getattr(namespace, n)
    return {name: grade(name, get(name), file=file) for name in names or EXERCISES}


def main(argv):
    """Grade exercises/backward.py's stubs named in ``argv`` (default: all); the exit status."""
    unknown = [name for name in argv if name not in EXERCISES]
    if unknown:
        print(f"exercises.grade: no exercise {unknown[0]!r}; the exercises: {', '.join(EXERCISES)}")
        return 2
    from exercises import backward

    grades = grade_all(backward, argv or None)
    passed = sum(g.passed for g in grades.values())
    print(f"{passed} of {len(grades)} exercises pass")
    return 0 if passed == len(grades) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
