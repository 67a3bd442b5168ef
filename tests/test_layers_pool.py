"""Max and average pooling: gradients, fast == loop reference, ties, dtypes, errors."""

import numpy as np
import pytest

from core.learn.gradcheck import numerical_gradient, rel_error
from layers.pool import (
    avgpool_backward,
    avgpool_backward_naive,
    avgpool_forward,
    avgpool_forward_naive,
    maxpool_backward,
    maxpool_backward_naive,
    maxpool_forward,
    maxpool_forward_naive,
)

# (x shape, size, stride): tiled 2/2 and 4/4, overlapping 3/2 and 2/1, non-tiling 3/3 and
# 2/2 on odd maps, gaps 2/3, non-square maps, batch 1 and > 1.
CASES = [
    ((2, 3, 6, 8), 2, 2),
    ((1, 2, 8, 4), 4, 4),
    ((1, 2, 7, 9), 3, 2),
    ((2, 1, 5, 6), 2, 1),
    ((2, 2, 10, 11), 3, 3),
    ((1, 2, 7, 5), 2, 2),
    ((2, 1, 9, 7), 2, 3),
]
MAX = (maxpool_forward, maxpool_backward, maxpool_forward_naive, maxpool_backward_naive)
AVG = (avgpool_forward, avgpool_backward, avgpool_forward_naive, avgpool_backward_naive)


def distinct_values(rng, shape):
    """float64 values at least 1/size apart (>> the 1e-5 step): max pooling is smooth there."""
    size = int(np.prod(shape))
    return (rng.permutation(size).reshape(shape) - size / 2) / size


@pytest.mark.parametrize("kind", [MAX, AVG], ids=["max", "avg"])
@pytest.mark.parametrize("shape,size,stride", CASES)
def test_backward_matches_finite_differences(kind, shape, size, stride):
    forward, backward = kind[:2]
    rng = np.random.default_rng(0)
    x = distinct_values(rng, shape)
    out, cache = forward(x, size, stride)
    dout = rng.standard_normal(out.shape)
    numeric = numerical_gradient(lambda x: forward(x, size, stride)[0], x, dout)
    assert rel_error(backward(dout, cache), numeric) < 1e-7


@pytest.mark.parametrize("kind", [MAX, AVG], ids=["max", "avg"])
@pytest.mark.parametrize("shape,size,stride", CASES + [((3, 4, 12, 10), 3, 2)])
def test_fast_equals_loop_reference(kind, shape, size, stride):
    forward, backward, forward_naive, backward_naive = kind
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    out, cache = forward(x, size, stride)
    out_naive, cache_naive = forward_naive(x, size, stride)
    dout = rng.standard_normal(out.shape)
    assert out.shape == (
        shape[0],
        shape[1],
        (shape[2] - size) // stride + 1,
        (shape[3] - size) // stride + 1,
    )
    assert np.abs(out - out_naive).max() < 1e-10
    assert np.abs(backward(dout, cache) - backward_naive(dout, cache_naive)).max() < 1e-10


@pytest.mark.parametrize("kind", [MAX, AVG], ids=["max", "avg"])
def test_non_contiguous_input(kind):
    forward, backward, forward_naive, backward_naive = kind
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 8, 6, 3)).transpose(0, 3, 1, 2)  # (2, 3, 8, 6), not contiguous
    for size, stride in [(2, 2), (3, 2)]:
        out, cache = forward(x, size, stride)
        out_naive, cache_naive = forward_naive(x, size, stride)
        dout = rng.standard_normal(out.shape)
        assert np.abs(out - out_naive).max() < 1e-10
        assert np.abs(backward(dout, cache) - backward_naive(dout, cache_naive)).max() < 1e-10


@pytest.mark.parametrize("shape,size,stride", CASES)
def test_maxpool_ties_route_to_first_maximum_like_the_reference(shape, size, stride):
    rng = np.random.default_rng(3)
    # few distinct values and many zeros (as after a ReLU): ties in most windows
    x = np.maximum(rng.integers(-2, 3, size=shape), 0).astype(np.float64)
    out, cache = maxpool_forward(x, size, stride)
    out_naive, cache_naive = maxpool_forward_naive(x, size, stride)
    dout = rng.integers(-9, 10, size=out.shape).astype(np.float64)  # exact sums on overlaps
    np.testing.assert_array_equal(out, out_naive)
    np.testing.assert_array_equal(cache.argmax, cache_naive.argmax)
    np.testing.assert_array_equal(
        maxpool_backward(dout, cache), maxpool_backward_naive(dout, cache_naive)
    )


def test_maxpool_tie_gradient_goes_to_first_maximum_in_row_major_order():
    x = np.array(
        [
            [1.0, 1.0, 0.0, 5.0],
            [1.0, 1.0, 5.0, 5.0],
            [2.0, 0.0, 0.0, 0.0],
            [0.0, 2.0, 0.0, 0.0],
        ]
    ).reshape(1, 1, 4, 4)
    out, cache = maxpool_forward(x)
    dx = maxpool_backward(np.array([[10.0, 20.0], [30.0, 40.0]]).reshape(1, 1, 2, 2), cache)
    expected = np.array(
        [
            [10.0, 0.0, 0.0, 20.0],
            [0.0, 0.0, 0.0, 0.0],
            [30.0, 0.0, 40.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    np.testing.assert_array_equal(out[0, 0], [[1.0, 5.0], [2.0, 0.0]])
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_maxpool_overlapping_windows_add_gradients_on_shared_pixels():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0  # the maximum of all four 2x2 windows at stride 1
    _, cache = maxpool_forward(x, size=2, stride=1)
    dx = maxpool_backward(np.ones((1, 1, 2, 2)), cache)
    assert dx[0, 0, 1, 1] == 4.0 and dx.sum() == 4.0


def test_avgpool_values():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    out, _ = avgpool_forward(x)
    np.testing.assert_allclose(out[0, 0], [[2.5, 4.5], [10.5, 12.5]])


@pytest.mark.parametrize("kind", [MAX, AVG], ids=["max", "avg"])
@pytest.mark.parametrize("size,stride", [(2, 2), (3, 2), (3, 3)])
def test_float32_stays_float32(kind, size, stride):
    forward, backward = kind[:2]
    x = np.random.default_rng(4).standard_normal((2, 3, 8, 10)).astype(np.float32)
    out, cache = forward(x, size, stride)
    dx = backward(np.ones_like(out), cache)
    assert out.dtype == np.float32 and dx.dtype == np.float32 and dx.shape == x.shape


@pytest.mark.parametrize("forward", [maxpool_forward, avgpool_forward, maxpool_forward_naive])
@pytest.mark.parametrize(
    "shape,size,stride,match",
    [
        ((1, 1, 2, 5), 3, 1, r"size 3 .*2x5"),
        ((1, 1, 6, 2), 3, 3, r"size 3 .*6x2"),
        ((1, 1, 4, 4), 0, 2, r"size=0"),
        ((1, 1, 4, 4), 2, 0, r"stride=0"),
        ((1, 4, 4), 2, 2, r"\(1, 4, 4\)"),
    ],
)
def test_impossible_pooling_raises_user_error(forward, shape, size, stride, match):
    with pytest.raises(ValueError, match=match):
        forward(np.zeros(shape), size, stride)
