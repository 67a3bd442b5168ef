"""The loop references and the small helpers of layers/, held to the fast layers' contract.

A mutation run (docs/testing.md) found what the comparisons of tests/test_layers_*.py leave
open, since they call the references with explicit arguments, in float64, on depthwise
convolutions only: the references' defaults, their dtypes, the layer they name in an error,
a grouped convolution with several filters per group, the padding helper on its own, the
activations' values at the kink, and the CuPy path of the window view, which NumPy can run.
"""

import numpy as np
import pytest

from layers import (
    arraylib,
    avgpool_backward,
    avgpool_backward_naive,
    avgpool_forward,
    avgpool_forward_naive,
    batchnorm_backward,
    batchnorm_backward_parts,
    batchnorm_forward,
    batchnorm_forward_parts,
    conv_backward,
    conv_backward_naive,
    conv_forward,
    conv_forward_naive,
    leaky_relu_backward,
    leaky_relu_forward,
    maxpool_backward,
    maxpool_backward_naive,
    maxpool_forward,
    maxpool_forward_naive,
    sigmoid_forward,
)
from layers.arraylib import gpu_missing, strided_windows, window_view
from layers.conv_naive import pad_images

RNG = np.random.default_rng(0)
POOLS = [
    (maxpool_forward_naive, maxpool_backward_naive, maxpool_forward, maxpool_backward),
    (avgpool_forward_naive, avgpool_backward_naive, avgpool_forward, avgpool_backward),
]


@pytest.mark.parametrize("naive, naive_backward, fast, fast_backward", POOLS)
def test_a_pool_reference_has_the_fast_layers_defaults_and_keeps_float32(
    naive, naive_backward, fast, fast_backward
):
    x = RNG.standard_normal((2, 3, 7, 6)).astype(np.float32)
    out, cache = naive(x)  # size 2, stride 2, as the fast layer's defaults
    expected, fast_cache = fast(x)
    assert out.shape == (2, 3, 3, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    dout = RNG.standard_normal(out.shape).astype(np.float32)
    dx = naive_backward(dout, cache)
    assert dx.dtype == np.float32
    np.testing.assert_allclose(dx, fast_backward(dout, fast_cache), rtol=1e-6)


def test_the_max_pool_reference_records_integer_positions_equal_to_the_fast_layers():
    x = RNG.standard_normal((2, 2, 6, 6))
    _, cache = maxpool_forward_naive(x, 3, 1)
    _, fast_cache = maxpool_forward(x, 3, 1)
    assert cache.argmax.dtype.kind in "iu"
    np.testing.assert_array_equal(cache.argmax, fast_cache.argmax)


@pytest.mark.parametrize("naive, name", [(maxpool_forward_naive, "maxpool"),
                                         (avgpool_forward_naive, "avgpool")])  # fmt: skip
def test_a_pool_reference_names_its_layer_when_the_window_does_not_fit(naive, name):
    with pytest.raises(ValueError, match=rf"^{name}: window size 3 does not fit the 2x2"):
        naive(np.zeros((1, 1, 2, 2)), 3, 1)


def test_the_conv_reference_has_the_fast_layers_defaults_and_keeps_float32():
    x = RNG.standard_normal((2, 3, 6, 5)).astype(np.float32)
    W = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(4).astype(np.float32)
    out, cache = conv_forward_naive(x, W, b)  # stride 1, no padding, one group
    expected, fast_cache = conv_forward(x, W, b)
    assert out.shape == (2, 4, 4, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    dout = RNG.standard_normal(out.shape).astype(np.float32)
    grads = conv_backward_naive(dout, cache)
    assert [g.dtype for g in grads] == [np.float32] * 3
    for got, want in zip(grads, conv_backward(dout, fast_cache), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_a_grouped_conv_with_several_filters_per_group_equals_the_fast_layer():
    # depthwise (one filter per group) cannot tell a group's filters from the rest of them
    x = RNG.standard_normal((2, 4, 5, 5))
    W = RNG.standard_normal((6, 2, 3, 3))  # 2 groups: 2 channels and 3 filters each
    b = RNG.standard_normal(6)
    out, cache = conv_forward_naive(x, W, b, stride=1, pad=1, groups=2)
    expected, fast_cache = conv_forward(x, W, b, stride=1, pad=1, groups=2)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    dout = RNG.standard_normal(out.shape)
    for got, want in zip(
        conv_backward_naive(dout, cache), conv_backward(dout, fast_cache), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pad", [0, 1, 2])
def test_pad_images_is_a_zero_border_of_pad_pixels_in_the_same_dtype(pad):
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    padded = pad_images(x, pad)
    assert padded.dtype == np.float32
    np.testing.assert_array_equal(padded, np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))))


def test_leaky_relu_defaults_to_a_slope_of_0_01_and_takes_it_below_zero_and_at_zero():
    x = np.array([-2.0, 0.0, 3.0])
    out, cache = leaky_relu_forward(x)
    np.testing.assert_array_equal(out, [-0.02, 0.0, 3.0])
    # at the kink the slope below it, as PyTorch's leaky_relu backward (x > 0 passes dout)
    np.testing.assert_array_equal(leaky_relu_backward(np.ones(3), cache), [0.01, 0.01, 1.0])


def test_batchnorm_backward_of_a_float16_gradient_computes_in_gamma_s_dtype():
    # mixed precision: x and dout are float16, gamma and the statistics float32
    x = RNG.standard_normal((8, 3, 2, 2)).astype(np.float16)
    gamma, beta = RNG.standard_normal(3).astype(np.float32), np.zeros(3, np.float32)
    stats = np.zeros(3, np.float32), np.ones(3, np.float32)
    dout = RNG.standard_normal(x.shape).astype(np.float16)
    *_, cache = batchnorm_forward(x, gamma, beta, *stats, train=True)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    want = batchnorm_backward(dout.astype(np.float32), cache)
    assert dx.dtype == np.float16 and dgamma.dtype == dbeta.dtype == np.float32
    np.testing.assert_allclose(dx, want[0].astype(np.float16), rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(dgamma, want[1])
    parts = [x[:4], x[4:]]
    _, _, _, caches = batchnorm_forward_parts(parts, gamma, beta, *stats)
    dxs, dgamma_parts, _ = batchnorm_backward_parts([dout[:4], dout[4:]], caches)
    assert [d.dtype for d in dxs] == [np.float16] * 2
    np.testing.assert_allclose(dgamma_parts, want[1], rtol=1e-5)


def test_batchnorm_backward_parts_refuses_a_gradient_per_part_that_does_not_match():
    x = RNG.standard_normal((8, 3))
    gamma, beta, stats = np.ones(3), np.zeros(3), (np.zeros(3), np.ones(3))
    _, _, _, caches = batchnorm_forward_parts([x[:4], x[4:]], gamma, beta, *stats)
    with pytest.raises(ValueError, match="zip"):
        batchnorm_backward_parts([x[:4]], caches)


def test_the_sigmoid_is_one_half_at_zero_from_either_side():
    out, _ = sigmoid_forward(np.array([-1e-300, 0.0, 1e-300]))
    np.testing.assert_array_equal(out, [0.5, 0.5, 0.5])


@pytest.mark.parametrize("shape, size", [((2, 3, 5, 4), 2), ((1, 2, 3, 3), 3)])
def test_the_cupy_window_view_sees_what_numpy_s_sliding_window_view_sees(shape, size):
    x = RNG.standard_normal(shape)
    windows = window_view(x, size)
    assert not windows.flags.writeable  # read-only unless asked
    np.testing.assert_array_equal(strided_windows(x, size), windows)
    writeable = strided_windows(x, size, writeable=True)
    writeable[0, 0, 0, 0, 0, 0] = 7.0  # the view is x's own memory
    assert x[0, 0, 0, 0] == 7.0


def test_the_cupy_window_view_refuses_to_write_through_a_copy():
    x = RNG.standard_normal((2, 3, 5, 4)).transpose(0, 1, 3, 2)
    np.testing.assert_array_equal(strided_windows(x, 2), window_view(x, 2))
    with pytest.raises(ValueError, match="^window_view: a writeable view needs a C-contiguous"):
        strided_windows(x, 2, writeable=True)


class FakeRuntime:
    class CUDARuntimeError(Exception):
        pass

    def __init__(self, devices):
        self.devices = devices

    def getDeviceCount(self):  # noqa: N802 (CuPy's name)
        if isinstance(self.devices, Exception):
            raise self.devices
        return self.devices


class FakeCupy:
    """What gpu_missing asks of CuPy: its runtime's count of CUDA devices."""

    def __init__(self, devices):
        self.cuda = type("cuda", (), {"runtime": FakeRuntime(devices)})


@pytest.mark.parametrize(
    "cupy, says",
    [
        (None, 'CuPy is not installed (pip install -e ".[gpu]")'),
        (FakeCupy(0), "CuPy finds no CUDA device"),
        (
            FakeCupy(FakeRuntime.CUDARuntimeError("no driver")),
            "CuPy finds no CUDA device (no driver)",
        ),
        (FakeCupy(2), ""),
    ],
)
def test_gpu_missing_says_what_keeps_the_gpu_from_use(cupy, says, monkeypatch):
    monkeypatch.setattr(arraylib, "cupy", cupy)
    assert gpu_missing() == says
