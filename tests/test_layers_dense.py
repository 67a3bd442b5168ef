"""Fully connected, flatten, activation and dropout layers: gradients, dtypes, errors."""

import warnings

import numpy as np
import pytest

from core.learn.gradcheck import numerical_gradient, rel_error
from layers.activations import (
    leaky_relu_backward,
    leaky_relu_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from layers.dropout import dropout_backward, dropout_forward, dropout_forward_parts
from layers.fc import fc_backward, fc_forward
from layers.flatten import flatten_backward, flatten_forward

# ---------------------------------------------------------------- fully connected


@pytest.mark.parametrize("n,d,m", [(1, 3, 4), (5, 7, 2), (4, 6, 6)])
def test_fc_gradients_match_finite_differences(n, d, m):
    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal((n, d)), rng.standard_normal((d, m)), rng.standard_normal(m)
    out, cache = fc_forward(x, W, b)
    dout = rng.standard_normal((n, m))
    dx, dW, db = fc_backward(dout, cache)
    np.testing.assert_allclose(out, x @ W + b, rtol=1e-12)
    assert rel_error(dx, numerical_gradient(lambda x: fc_forward(x, W, b)[0], x, dout)) < 1e-7
    assert rel_error(dW, numerical_gradient(lambda W: fc_forward(x, W, b)[0], W, dout)) < 1e-7
    assert rel_error(db, numerical_gradient(lambda b: fc_forward(x, W, b)[0], b, dout)) < 1e-7


def test_fc_float32_stays_float32():
    rng = np.random.default_rng(1)
    x, W = rng.standard_normal((3, 5), np.float32), rng.standard_normal((5, 2), np.float32)
    out, cache = fc_forward(x, W, np.zeros(2, np.float32))
    grads = fc_backward(np.ones_like(out), cache)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    assert [g.shape for g in grads] == [(3, 5), (5, 2), (2,)]


@pytest.mark.parametrize(
    "x_shape,w_shape,b_shape",
    [((4, 5), (6, 3), (3,)), ((4, 5), (5, 3), (4,)), ((2, 3, 5), (5, 3), (3,))],
)
def test_fc_bad_shapes_raise_user_error_naming_them(x_shape, w_shape, b_shape):
    with pytest.raises(ValueError) as info:
        fc_forward(np.zeros(x_shape), np.zeros(w_shape), np.zeros(b_shape))
    assert all(str(shape) in str(info.value) for shape in (x_shape, w_shape, b_shape))


# ------------------------------------------------------------------------ flatten


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 6), (3, 2, 7)])
def test_flatten_round_trip_and_view(shape):
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    out, cache = flatten_forward(x)
    assert out.shape == (shape[0], int(np.prod(shape[1:]))) and out.dtype == np.float32
    assert np.shares_memory(out, x)  # a view, no copy
    np.testing.assert_array_equal(out[1 % shape[0]], x[1 % shape[0]].ravel())
    dx = flatten_backward(out * 2, cache)
    assert dx.shape == shape and dx.dtype == np.float32
    np.testing.assert_array_equal(dx, x * 2)


def test_flatten_needs_a_batch_axis():
    with pytest.raises(ValueError, match=r"\(5,\)"):
        flatten_forward(np.zeros(5))


# -------------------------------------------------------------------- activations

ACTIVATIONS = {
    "relu": (relu_forward, relu_backward),
    "leaky_relu": (lambda x: leaky_relu_forward(x, alpha=0.1), leaky_relu_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "tanh": (tanh_forward, tanh_backward),
}


def away_from_zero(rng, shape):
    """Values in +-[0.1, 2]: relu and leaky relu have no kink within the 1e-5 step."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(1, 5), (3, 4), (2, 3, 4, 3)])
def test_activation_gradients_match_finite_differences(name, shape):
    forward, backward = ACTIVATIONS[name]
    rng = np.random.default_rng(3)
    x = away_from_zero(rng, shape)
    out, cache = forward(x)
    dout = rng.standard_normal(shape)
    numeric = numerical_gradient(lambda x: forward(x)[0], x, dout)
    assert rel_error(backward(dout, cache), numeric) < 1e-7


def test_activation_values():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    np.testing.assert_array_equal(relu_forward(x)[0], [0, 0, 0, 0.5, 3])
    np.testing.assert_allclose(leaky_relu_forward(x, alpha=0.1)[0], [-0.2, -0.05, 0, 0.5, 3])
    np.testing.assert_allclose(sigmoid_forward(x)[0], 1 / (1 + np.exp(-x)), rtol=1e-14)
    np.testing.assert_allclose(tanh_forward(x)[0], np.tanh(x), rtol=1e-15)
    _, cache = relu_forward(x)
    np.testing.assert_array_equal(relu_backward(np.ones(5), cache), [0, 0, 0, 1, 1])


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_float32_stays_float32(name):
    forward, backward = ACTIVATIONS[name]
    x = np.random.default_rng(4).standard_normal((2, 3, 4)).astype(np.float32)
    out, cache = forward(x)
    dx = backward(np.ones_like(out), cache)
    assert out.dtype == np.float32 and dx.dtype == np.float32 and dx.shape == x.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_finite_and_silent_at_large_inputs(dtype):
    x = np.array([-1e4, -800.0, 800.0, 1e4], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        out, cache = sigmoid_forward(x)
        dx = sigmoid_backward(np.ones_like(x), cache)
    np.testing.assert_array_equal(out, [0, 0, 1, 1])
    np.testing.assert_array_equal(dx, [0, 0, 0, 0])


# ------------------------------------------------------------------------ dropout


def test_dropout_eval_and_p_zero_are_the_identity():
    x = np.random.default_rng(5).standard_normal((4, 6)).astype(np.float32)
    dout = np.ones_like(x)
    for p, rng, train in [(0.5, None, False), (0.0, None, True)]:
        out, cache = dropout_forward(x, p, rng, train)
        np.testing.assert_array_equal(out, x)
        np.testing.assert_array_equal(dropout_backward(dout, cache), dout)


def test_dropout_train_keeps_the_mean_and_drops_a_fraction_p():
    p = 0.3
    x = np.ones(200_000, dtype=np.float32)
    out, cache = dropout_forward(x, p, np.random.default_rng(6), train=True)
    assert out.dtype == np.float32 and cache.dtype == np.float32  # no float64 mask
    assert abs(out.mean() - 1.0) < 0.01  # inverted dropout: E[out] = x
    assert abs(np.mean(out == 0) - p) < 0.01
    np.testing.assert_allclose(out[out != 0], 1 / (1 - p), rtol=1e-6)


def test_dropout_is_reproducible_and_backward_uses_the_same_mask():
    rng = np.random.default_rng(7)
    x = away_from_zero(rng, (8, 10)).astype(np.float32)
    out1, cache = dropout_forward(x, 0.5, np.random.default_rng(42), train=True)
    out2, _ = dropout_forward(x, 0.5, np.random.default_rng(42), train=True)
    out3, _ = dropout_forward(x, 0.5, np.random.default_rng(43), train=True)
    np.testing.assert_array_equal(out1, out2)
    assert not np.array_equal(out1, out3)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    dx = dropout_backward(dout, cache)
    assert dx.dtype == np.float32
    np.testing.assert_allclose(dx, dout * (out1 / x), rtol=1e-6)  # out / x is the mask


def test_dropout_of_a_batch_held_as_parts_draws_the_whole_batch_mask():
    x = np.random.default_rng(1).standard_normal((7, 3, 4)).astype(np.float32)
    whole, mask = dropout_forward(x, 0.3, np.random.default_rng(8), train=True)
    outs, masks = dropout_forward_parts(np.split(x, [2, 3]), 0.3, np.random.default_rng(8))
    assert [len(out) for out in outs] == [2, 1, 4]
    np.testing.assert_array_equal(np.concatenate(outs), whole)
    np.testing.assert_array_equal(np.concatenate(masks), mask)
    parts = np.split(x, [2])
    kept, no_masks = dropout_forward_parts(parts, 0.0, None)
    assert all(a is b for a, b in zip(kept, parts, strict=True)) and no_masks == [None, None]


def test_dropout_gradient_matches_finite_differences():
    rng = np.random.default_rng(8)
    x, dout = rng.standard_normal((3, 7)), rng.standard_normal((3, 7))

    def forward(x):  # a fresh generator with one seed each call: the same mask every time
        return dropout_forward(x, 0.4, np.random.default_rng(9), train=True)

    _, cache = forward(x)
    numeric = numerical_gradient(lambda x: forward(x)[0], x, dout)
    assert rel_error(dropout_backward(dout, cache), numeric) < 1e-7


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_p_out_of_range_raises(p):
    with pytest.raises(ValueError, match="p="):
        dropout_forward(np.ones(3), p, np.random.default_rng(0), train=True)


def test_dropout_training_needs_a_generator():
    with pytest.raises(ValueError, match="rng"):
        dropout_forward(np.ones(3), 0.5, None, train=True)
