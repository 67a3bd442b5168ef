"""Batch normalization: gradients in both modes, running statistics, dtypes, errors. The
version on a batch held as parts is tested against this one in test_layers_parts.py."""

import numpy as np
import pytest

from core.learn.gradcheck import numerical_gradient, rel_error
from layers.batchnorm import batchnorm_backward, batchnorm_forward

SHAPES = [(6, 4), (1, 3), (3, 2, 4, 5), (1, 3, 2, 3)]


def make_inputs(rng, shape, dtype=np.float64):
    """x plus gamma, beta, running mean and (positive) running variance of shape (C,)."""
    c = shape[1]
    x = 2.0 + 3.0 * rng.standard_normal(shape)  # off-centre, not unit scale
    gamma, beta = rng.uniform(0.5, 2.0, c), rng.standard_normal(c)
    running_mean, running_var = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    return [a.astype(dtype) for a in (x, gamma, beta, running_mean, running_var)]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES)
def test_gradients_match_finite_differences(shape, train):
    rng = np.random.default_rng(0)
    x, gamma, beta, running_mean, running_var = make_inputs(rng, shape)

    def forward(x, gamma, beta):
        return batchnorm_forward(x, gamma, beta, running_mean, running_var, train)

    out, _, _, cache = forward(x, gamma, beta)
    dout = rng.standard_normal(out.shape)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    assert rel_error(dx, numerical_gradient(lambda x: forward(x, gamma, beta)[0], x, dout)) < 1e-7
    numeric_dgamma = numerical_gradient(lambda g: forward(x, g, beta)[0], gamma, dout)
    numeric_dbeta = numerical_gradient(lambda b: forward(x, gamma, b)[0], beta, dout)
    assert rel_error(dgamma, numeric_dgamma) < 1e-7
    assert rel_error(dbeta, numeric_dbeta) < 1e-7


@pytest.mark.parametrize("shape", [(50, 3), (8, 3, 5, 4)])
def test_training_output_is_normalized_per_channel(shape):
    rng = np.random.default_rng(1)
    x, _, _, running_mean, running_var = make_inputs(rng, shape)
    c = shape[1]
    out, _, _, _ = batchnorm_forward(x, np.ones(c), np.zeros(c), running_mean, running_var, True)
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    np.testing.assert_allclose(out.mean(axis=axes), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=axes), 1, rtol=1e-4)  # var / (var + eps)


@pytest.mark.parametrize("shape", [(7, 3), (4, 3, 2, 5)])
def test_running_statistics_are_returned_new_and_never_mutated(shape):
    rng = np.random.default_rng(2)
    x, gamma, beta, running_mean, running_var = make_inputs(rng, shape)
    mean_before, var_before = running_mean.copy(), running_var.copy()
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    _, new_mean, new_var, _ = batchnorm_forward(
        x, gamma, beta, running_mean, running_var, train=True, momentum=0.8
    )
    np.testing.assert_array_equal(running_mean, mean_before)
    np.testing.assert_array_equal(running_var, var_before)
    np.testing.assert_allclose(new_mean, 0.8 * mean_before + 0.2 * x.mean(axis=axes))
    np.testing.assert_allclose(new_var, 0.8 * var_before + 0.2 * x.var(axis=axes))  # biased


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 4)])
def test_eval_mode_uses_the_running_statistics(shape):
    rng = np.random.default_rng(3)
    x, gamma, beta, running_mean, running_var = make_inputs(rng, shape)
    out, new_mean, new_var, _ = batchnorm_forward(
        x, gamma, beta, running_mean, running_var, train=False, eps=1e-3
    )
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    expected = gamma.reshape(bshape) * (x - running_mean.reshape(bshape)) / np.sqrt(
        running_var.reshape(bshape) + 1e-3
    ) + beta.reshape(bshape)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert new_mean is running_mean and new_var is running_var


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4, 4)])
def test_float32_stays_float32(shape, train):
    x, *rest = make_inputs(np.random.default_rng(4), shape, np.float32)
    out, new_mean, new_var, cache = batchnorm_forward(x, *rest, train)
    grads = batchnorm_backward(np.ones_like(out), cache)
    arrays = (out, new_mean, new_var, *grads)
    assert all(a.dtype == np.float32 for a in arrays)
    assert [g.shape for g in grads] == [shape, (3,), (3,)]


@pytest.mark.parametrize(
    "x_shape,c",
    [((4, 3), 2), ((2, 3, 4, 4), 4), ((2, 3, 4), 3)],
)
def test_bad_shapes_raise_user_error_naming_them(x_shape, c):
    ones = np.ones(c)
    with pytest.raises(ValueError) as info:
        batchnorm_forward(np.zeros(x_shape), ones, ones, ones, ones, train=True)
    assert str(x_shape) in str(info.value) and str((c,)) in str(info.value)


@pytest.mark.parametrize("shape", [(9, 4), (6, 3, 2, 5)])
def test_training_forward_and_backward_are_the_textbook_formulas(shape):
    """batchnorm_forward and batchnorm_backward (training) against the formulas written with
    NumPy's own mean and var, in float64."""
    rng = np.random.default_rng(7)
    x, gamma, beta, running_mean, running_var = make_inputs(rng, shape)
    dout = rng.standard_normal(shape)
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    xhat = (x - mean) / np.sqrt(var + 1e-5)
    g = gamma.reshape(bshape)
    mean_dout = dout.mean(axis=axes, keepdims=True)
    mean_dout_xhat = (dout * xhat).mean(axis=axes, keepdims=True)
    expected_dx = g / np.sqrt(var + 1e-5) * (dout - mean_dout - xhat * mean_dout_xhat)
    out, _, _, cache = batchnorm_forward(x, gamma, beta, running_mean, running_var, True)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    tight = {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(out, g * xhat + beta.reshape(bshape), **tight)
    np.testing.assert_allclose(dx, expected_dx, **tight)
    np.testing.assert_allclose(dgamma, (dout * xhat).sum(axis=axes), **tight)
    np.testing.assert_allclose(dbeta, dout.sum(axis=axes), **tight)
