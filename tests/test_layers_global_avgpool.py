"""Global average pooling: a loop reference, finite differences, dtypes, errors."""

import numpy as np
import pytest

from core.learn.gradcheck import check_layer
from layers import global_avgpool_backward, global_avgpool_forward


def global_avgpool_loop(x):
    """The mean of each map, summed pixel by pixel."""
    N, C, H, W = x.shape
    out = np.zeros((N, C))
    for n in range(N):
        for c in range(C):
            total = 0.0
            for i in range(H):
                for j in range(W):
                    total += x[n, c, i, j]
            out[n, c] = total / (H * W)
    return out


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 1, 1), (3, 2, 7, 1)])
def test_forward_equals_loop_and_backward_spreads_evenly(shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    out, cache = global_avgpool_forward(x)
    assert out.shape == shape[:2]
    np.testing.assert_allclose(out, global_avgpool_loop(x), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx = global_avgpool_backward(dout, cache)
    assert dx.shape == shape
    H, W = shape[2:]
    for i in range(H):
        for j in range(W):
            np.testing.assert_allclose(dx[:, :, i, j], dout / (H * W), rtol=1e-15)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 2, 3, 1)])
def test_backward_matches_finite_differences(shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    errors = check_layer(global_avgpool_forward, global_avgpool_backward, [x], rng)
    assert errors[0] < 1e-7


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(dtype):
    x = np.random.default_rng(2).standard_normal((2, 3, 5, 4)).astype(dtype)
    out, cache = global_avgpool_forward(x)
    dx = global_avgpool_backward(np.ones_like(out), cache)
    assert out.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(out, x.astype(np.float64).mean(axis=(2, 3)), rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 3, 4, 5, 6), (6,)])
def test_non_4d_input_raises_with_the_shape(shape):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)") as info:
        global_avgpool_forward(np.zeros(shape))
    assert str(shape) in str(info.value)


def test_wrong_dout_shape_raises():
    _, cache = global_avgpool_forward(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        global_avgpool_backward(np.zeros((2, 4)), cache)
