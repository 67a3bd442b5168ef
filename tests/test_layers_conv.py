"""Convolution: gradients, fast == loop reference (any chunking), dtypes, errors."""

from itertools import pairwise

import numpy as np
import pytest

import layers
import layers.conv
from core.learn.gradcheck import check_layer, numerical_gradient, rel_error
from layers import conv_backward, conv_backward_naive, conv_forward, conv_forward_naive

# (x shape (N, C, H, W), w shape (F, C, KH, KW), stride, pad): non-square maps and kernels
# (3x2, 1x3, 2x4, 2x3), strides 1-3, pads 0-2, batch 1 and > 1, C = 1 and > 1, and maps where
# H + 2*pad - KH (or the W counterpart) is not a multiple of the stride (floor output size).
CASES = [
    ((2, 3, 5, 6), (4, 3, 3, 3), 1, 1),
    ((1, 1, 7, 5), (2, 1, 3, 2), 2, 0),  # H: (7 - 3) % 2 == 0, W: (5 - 2) % 2 == 1
    ((3, 2, 6, 7), (3, 2, 1, 3), 3, 2),  # (6 + 4 - 1) % 3 == 0, (7 + 4 - 3) % 3 == 2
    ((2, 2, 5, 9), (2, 2, 2, 4), 2, 1),  # (5 + 2 - 2) % 2 == 1, (9 + 2 - 4) % 2 == 1
    ((1, 3, 8, 4), (2, 3, 3, 2), 3, 1),  # (8 + 2 - 3) % 3 == 1, (4 + 2 - 2) % 3 == 1
    ((2, 1, 4, 4), (3, 1, 4, 4), 1, 0),  # kernel covers the whole map: 1x1 output
    ((1, 2, 3, 5), (2, 2, 5, 5), 2, 2),  # kernel larger than the unpadded map
]


def expected_hw(x_shape, w_shape, stride, pad):
    """The floor output size, written out independently of the code under test."""
    return tuple(
        (size + 2 * pad - k) // stride + 1 for size, k in zip(x_shape[2:], w_shape[2:], strict=True)
    )


def make_inputs(rng, x_shape, w_shape, dtype=np.float64):
    x = rng.standard_normal(x_shape).astype(dtype)
    W = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    return x, W, b


@pytest.mark.parametrize("x_shape,w_shape,stride,pad", CASES)
def test_backward_matches_finite_differences(x_shape, w_shape, stride, pad):
    rng = np.random.default_rng(0)
    x, W, b = make_inputs(rng, x_shape, w_shape)
    out, cache = conv_forward(x, W, b, stride, pad)
    assert out.shape == (x_shape[0], w_shape[0], *expected_hw(x_shape, w_shape, stride, pad))
    dout = rng.standard_normal(out.shape)
    dx, dW, db = conv_backward(dout, cache)
    assert dx.shape == x.shape and dW.shape == W.shape and db.shape == b.shape
    numeric_dx = numerical_gradient(lambda x: conv_forward(x, W, b, stride, pad)[0], x, dout)
    numeric_dW = numerical_gradient(lambda W: conv_forward(x, W, b, stride, pad)[0], W, dout)
    numeric_db = numerical_gradient(lambda b: conv_forward(x, W, b, stride, pad)[0], b, dout)
    assert rel_error(dx, numeric_dx) < 1e-7
    assert rel_error(dW, numeric_dW) < 1e-7
    assert rel_error(db, numeric_db) < 1e-7


def assert_fast_equals_naive(x, W, b, stride, pad, dout_rng):
    """Run fast and loop conv on the same inputs; return the fast (out, dx, dW, db)."""
    out, cache = conv_forward(x, W, b, stride, pad)
    out_naive, cache_naive = conv_forward_naive(x, W, b, stride, pad)
    dout = dout_rng.standard_normal(out.shape)
    fast = (out, *conv_backward(dout, cache))
    naive = (out_naive, *conv_backward_naive(dout, cache_naive))
    for name, a, a_naive in zip(("out", "dx", "dW", "db"), fast, naive, strict=True):
        assert a.shape == a_naive.shape, name
        assert np.abs(a - a_naive).max() < 1e-10, name
    return fast


@pytest.mark.parametrize("x_shape,w_shape,stride,pad", CASES)
def test_fast_equals_loop_reference(x_shape, w_shape, stride, pad):
    x, W, b = make_inputs(np.random.default_rng(1), x_shape, w_shape)
    assert_fast_equals_naive(x, W, b, stride, pad, np.random.default_rng(2))


def test_non_contiguous_inputs_equal_loop_reference():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 5, 3)).transpose(0, 3, 1, 2)  # (2, 3, 6, 5), transposed
    W = rng.standard_normal((3, 3, 2, 5))[..., ::2]  # (3, 3, 2, 3), every other column
    b = rng.standard_normal(6)[::2]
    assert not x.flags.c_contiguous and not W.flags.c_contiguous
    assert_fast_equals_naive(x, W, b, 1, 1, rng)


@pytest.mark.parametrize("x_shape,w_shape,stride,pad", CASES[:5])
def test_one_example_per_chunk_is_bit_identical_to_one_chunk(
    monkeypatch, x_shape, w_shape, stride, pad
):
    """A 1-byte chunk budget makes every example its own chunk: a batch of 9 is 9 chunks."""
    x, W, b = make_inputs(np.random.default_rng(4), (9, *x_shape[1:]), w_shape)
    results = {}
    for budget in (1, 1 << 30):
        monkeypatch.setattr(layers.conv, "_CHUNK_BYTES", budget)
        assert len(layers.conv.chunk_bounds(9, 10**6)) == (9 if budget == 1 else 1)
        results[budget] = assert_fast_equals_naive(x, W, b, stride, pad, np.random.default_rng(5))
    for one, two in zip(results[1], results[1 << 30], strict=True):
        np.testing.assert_allclose(one, two, rtol=1e-13, atol=1e-13)
    # the forward pass never sums across examples, so its chunking changes no bit
    assert np.array_equal(results[1][0], results[1 << 30][0])


def test_default_chunking_splits_a_large_batch():
    """With the real 1 MiB budget a batch of 64 16x28x28 maps (3x3 kernel) spans several chunks."""
    per_example = 16 * 9 * 28 * 30 * 8  # C*KH*KW * Ho*Wp * itemsize, as conv.py sizes a chunk
    bounds = layers.conv.chunk_bounds(64, per_example)
    assert len(bounds) >= 4
    assert bounds[0][0] == 0 and bounds[-1][1] == 64
    assert all(hi == next_lo for (_, hi), (next_lo, _) in pairwise(bounds))
    rng = np.random.default_rng(6)
    x, W, b = make_inputs(rng, (64, 16, 28, 28), (4, 16, 3, 3))
    out, cache = conv_forward(x, W, b, 1, 1)
    dx, dW, db = conv_backward(np.ones_like(out), cache)
    # one example at a time is the same computation (no chunk mixes examples)
    out_0, cache_0 = conv_forward(x[:1], W, b, 1, 1)
    np.testing.assert_array_equal(out[:1], out_0)
    np.testing.assert_array_equal(dx[:1], conv_backward(np.ones_like(out_0), cache_0)[0])


def test_values_of_a_hand_computed_convolution():
    x = np.arange(12.0).reshape(1, 1, 3, 4)
    W = np.array([[1.0, 0.0], [0.0, -1.0]]).reshape(1, 1, 2, 2)  # x[i, j] - x[i + 1, j + 1]
    out, _ = conv_forward(x, W, np.array([0.5]), stride=1, pad=0)
    np.testing.assert_array_equal(out[0, 0], np.full((2, 3), -5.0 + 0.5))
    out, _ = conv_forward(x, W, np.array([0.0]), stride=2, pad=1)  # corners of the padding
    np.testing.assert_array_equal(out[0, 0], [[-0.0, -2.0, 0.0], [-8.0, -5.0, 7.0]])


@pytest.mark.parametrize("x_shape,w_shape,stride,pad", [CASES[0], CASES[3], CASES[4]])
def test_float32_stays_float32(x_shape, w_shape, stride, pad):
    x, W, b = make_inputs(np.random.default_rng(7), x_shape, w_shape, np.float32)
    out, cache = conv_forward(x, W, b, stride, pad)
    dx, dW, db = conv_backward(np.ones_like(out), cache)
    assert [a.dtype for a in (out, dx, dW, db)] == [np.float32] * 4
    assert dx.shape == x.shape and dW.shape == W.shape and db.shape == b.shape
    x64, W64, b64 = (a.astype(np.float64) for a in (x, W, b))
    np.testing.assert_allclose(out, conv_forward(x64, W64, b64, stride, pad)[0], atol=1e-4)


@pytest.mark.parametrize("forward", [conv_forward, conv_forward_naive])
@pytest.mark.parametrize(
    "x_shape,w_shape,stride,pad,numbers",
    [
        ((1, 1, 3, 4), (2, 1, 5, 5), 1, 0, ["5x5", "3x4"]),  # kernel taller and wider
        ((1, 1, 3, 8), (2, 1, 6, 2), 1, 1, ["6x2", "pad 1", "3x8"]),  # taller than padded map
        ((1, 1, 8, 3), (2, 1, 2, 6), 2, 1, ["2x6", "pad 1", "8x3"]),  # wider than padded map
        ((2, 3, 6, 6), (4, 2, 3, 3), 1, 1, ["3 channels", "(4, 2, 3, 3)", "expect 2"]),
        ((1, 1, 6, 6), (2, 1, 3, 3), 0, 1, ["stride=0"]),
        ((1, 1, 6, 6), (2, 1, 3, 3), 1, -1, ["pad=-1"]),
    ],
    ids=["kernel-too-big", "too-tall", "too-wide", "channels", "stride-0", "negative-pad"],
)
def test_impossible_convolution_raises_user_error_with_the_numbers(
    forward, x_shape, w_shape, stride, pad, numbers
):
    x, W, b = make_inputs(np.random.default_rng(8), x_shape, w_shape)
    with pytest.raises(ValueError) as info:
        forward(x, W, b, stride, pad)
    assert isinstance(info.value, ValueError)
    for number in numbers:
        assert number in str(info.value)


def test_every_public_layer_name_is_importable():
    names = set(layers.__all__)
    assert {
        "conv_forward",
        "conv_backward",
        "conv_forward_naive",
        "conv_backward_naive",
        "maxpool_forward",
        "maxpool_backward",
        "avgpool_forward",
        "batchnorm_forward",
        "dropout_forward",
        "fc_forward",
        "flatten_forward",
        "relu_forward",
    } <= names
    namespace = {}
    exec(f"from layers import {', '.join(sorted(names))}", namespace)  # the statement users write
    assert all(callable(namespace[name]) for name in names)


def test_need_dx_false_skips_dx_and_keeps_the_parameter_gradients():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, 6, 5))
    W = rng.standard_normal((4, 2, 3, 3))
    b = rng.standard_normal(4)
    out, cache = conv_forward(x, W, b, stride=1, pad=1)
    dout = rng.standard_normal(out.shape)
    dx, dW, db = conv_backward(dout, cache)
    no_dx, dW2, db2 = conv_backward(dout, cache, need_dx=False)
    assert no_dx is None and dx is not None
    assert np.array_equal(dW, dW2) and np.array_equal(db, db2)


# Grouped convolution: (x shape, w shape (F, C/g, KH, KW), stride, pad, groups)
GROUPED_CASES = [
    ((2, 4, 5, 6), (6, 2, 3, 2), 1, 1, 2),  # two groups, non-square kernel
    ((2, 6, 5, 5), (6, 2, 3, 3), 1, 0, 3),  # three groups
    ((2, 4, 7, 6), (4, 1, 3, 3), 2, 1, 4),  # depthwise, stride 2, pad 1
    ((2, 3, 7, 6), (6, 1, 2, 3), 2, 1, 3),  # depthwise with 2 filters per channel, 2x3 kernel
    ((1, 4, 6, 5), (4, 1, 1, 3), 3, 2, 4),  # depthwise 1x3, stride 3 (floor size)
    ((2, 4, 6, 5), (4, 4, 3, 2), 1, 1, 1),  # groups=1 through the same test
]
GROUPED_IDS = ["g2", "g3", "depthwise-s2p1", "depthwise-x2", "depthwise-1x3-s3", "g1"]


@pytest.mark.parametrize("x_shape,w_shape,stride,pad,groups", GROUPED_CASES, ids=GROUPED_IDS)
def test_grouped_fast_equals_loop_reference(x_shape, w_shape, stride, pad, groups):
    rng = np.random.default_rng(9)
    x, W, b = make_inputs(rng, x_shape, w_shape)
    out, cache = conv_forward(x, W, b, stride, pad, groups=groups)
    out_naive, cache_naive = conv_forward_naive(x, W, b, stride, pad, groups=groups)
    assert out.shape == (x_shape[0], w_shape[0], *expected_hw(x_shape, w_shape, stride, pad))
    dout = rng.standard_normal(out.shape)
    fast = (out, *conv_backward(dout, cache))
    naive = (out_naive, *conv_backward_naive(dout, cache_naive))
    for name, a, a_naive in zip(("out", "dx", "dW", "db"), fast, naive, strict=True):
        assert a.shape == a_naive.shape, name
        assert np.abs(a - a_naive).max() < 1e-10, name


@pytest.mark.parametrize(
    "x_shape,w_shape,stride,pad,groups", GROUPED_CASES[:5], ids=GROUPED_IDS[:5]
)
def test_grouped_equals_one_plain_convolution_per_group(x_shape, w_shape, stride, pad, groups):
    """An independent check of the grouping: group k is a groups=1 conv of its own slices."""
    rng = np.random.default_rng(10)
    x, W, b = make_inputs(rng, x_shape, w_shape)
    out, cache = conv_forward(x, W, b, stride, pad, groups=groups)
    dout = rng.standard_normal(out.shape)
    dx, dW, db = conv_backward(dout, cache)
    Cg, Fg = x_shape[1] // groups, w_shape[0] // groups
    for k in range(groups):
        ch, fi = slice(k * Cg, (k + 1) * Cg), slice(k * Fg, (k + 1) * Fg)
        out_k, cache_k = conv_forward(x[:, ch], W[fi], b[fi], stride, pad)
        dx_k, dW_k, db_k = conv_backward(dout[:, fi], cache_k)
        np.testing.assert_allclose(out[:, fi], out_k, rtol=0, atol=1e-12)
        np.testing.assert_allclose(dx[:, ch], dx_k, rtol=0, atol=1e-12)
        np.testing.assert_allclose(dW[fi], dW_k, rtol=0, atol=1e-12)
        np.testing.assert_allclose(db[fi], db_k, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "x_shape,w_shape,stride,pad,groups",
    [GROUPED_CASES[0], GROUPED_CASES[2], GROUPED_CASES[3]],
    ids=["grouped", "depthwise-s2p1", "depthwise-x2-s2p1"],
)
def test_grouped_backward_matches_finite_differences(x_shape, w_shape, stride, pad, groups):
    rng = np.random.default_rng(11)
    x, W, b = make_inputs(rng, x_shape, w_shape)

    def forward(x, W, b):
        return conv_forward(x, W, b, stride, pad, groups=groups)

    errors = check_layer(forward, conv_backward, [x, W, b], rng)
    assert max(errors) < 1e-7, errors


def test_groups_one_keeps_the_plain_tuple_cache_and_the_same_numbers():
    """groups=1 is the ungrouped code path itself: same cache type, identical bits."""
    x, W, b = make_inputs(np.random.default_rng(12), (2, 3, 6, 5), (4, 3, 3, 2), np.float32)
    out, cache = conv_forward(x, W, b, 2, 1)
    out_1, cache_1 = conv_forward(x, W, b, 2, 1, groups=1)
    assert type(cache) is tuple and type(cache_1) is tuple and len(cache_1) == 5
    assert np.array_equal(out, out_1)
    dout = np.random.default_rng(13).standard_normal(out.shape).astype(np.float32)
    for a, a_1 in zip(conv_backward(dout, cache), conv_backward(dout, cache_1), strict=True):
        assert np.array_equal(a, a_1)


@pytest.mark.parametrize("groups", [2, 4])
def test_grouped_float32_stays_float32_and_need_dx_false_works(groups):
    x, W, b = make_inputs(
        np.random.default_rng(14), (3, 4, 7, 6), (8, 4 // groups, 3, 3), np.float32
    )
    out, cache = conv_forward(x, W, b, 2, 1, groups=groups)
    dout = np.random.default_rng(15).standard_normal(out.shape).astype(np.float32)
    dx, dW, db = conv_backward(dout, cache)
    assert [a.dtype for a in (out, dx, dW, db)] == [np.float32] * 4
    assert dx.shape == x.shape and dW.shape == W.shape and db.shape == b.shape
    x64, W64, b64 = (a.astype(np.float64) for a in (x, W, b))
    np.testing.assert_allclose(out, conv_forward(x64, W64, b64, 2, 1, groups=groups)[0], atol=1e-4)
    no_dx, dW2, db2 = conv_backward(dout, cache, need_dx=False)
    assert no_dx is None
    assert np.array_equal(dW, dW2) and np.array_equal(db, db2)


def test_grouped_chunking_changes_no_forward_bit(monkeypatch):
    """A 1-byte budget (one example per chunk) gives the same grouped forward as one chunk."""
    x, W, b = make_inputs(np.random.default_rng(16), (5, 4, 6, 6), (4, 1, 3, 3))
    results = []
    for budget in (1, 1 << 30):
        monkeypatch.setattr(layers.conv, "_CHUNK_BYTES", budget)
        out, cache = conv_forward(x, W, b, 1, 1, groups=4)
        results.append((out, *conv_backward(np.ones_like(out), cache)))
    assert np.array_equal(results[0][0], results[1][0])
    for one, two in zip(results[0][1:], results[1][1:], strict=True):
        np.testing.assert_allclose(one, two, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("forward", [conv_forward, conv_forward_naive])
@pytest.mark.parametrize(
    "x_shape,w_shape,groups,numbers",
    [
        ((1, 6, 5, 5), (4, 2, 3, 3), 3, ["groups=3", "6 input channels", "4 filters"]),
        ((1, 4, 5, 5), (6, 1, 3, 3), 3, ["groups=3", "4 input channels", "6 filters"]),
        ((1, 4, 5, 5), (4, 1, 3, 3), 2, ["groups=2", "4 channels", "2 channels per group"]),
        ((1, 4, 5, 5), (4, 4, 3, 3), 0, ["groups=0"]),
        ((1, 4, 5, 5), (4, 2, 3, 3), 2.0, ["groups=2.0"]),
    ],
    ids=["F-not-divisible", "C-not-divisible", "wrong-W-channels", "zero", "float"],
)
def test_impossible_groups_raise_with_the_numbers(forward, x_shape, w_shape, groups, numbers):
    x, W, b = make_inputs(np.random.default_rng(17), x_shape, w_shape)
    with pytest.raises(ValueError) as info:
        forward(x, W, b, 1, 1, groups=groups)
    for number in numbers:
        assert number in str(info.value)


def test_grouped_non_contiguous_inputs_equal_loop_reference():
    rng = np.random.default_rng(18)
    x = rng.standard_normal((2, 6, 5, 4)).transpose(0, 3, 1, 2)  # (2, 4, 6, 5), transposed
    W = rng.standard_normal((8, 2, 3, 6))[..., ::2]  # (8, 2, 3, 3), every other column
    b = rng.standard_normal(16)[::2]
    assert not x.flags.c_contiguous and not W.flags.c_contiguous
    out, cache = conv_forward(x, W, b, 2, 1, groups=2)
    out_naive, cache_naive = conv_forward_naive(x, W, b, 2, 1, groups=2)
    dout = rng.standard_normal(out.shape)
    fast = (out, *conv_backward(dout, cache))
    naive = (out_naive, *conv_backward_naive(dout, cache_naive))
    for a, a_naive in zip(fast, naive, strict=True):
        assert np.abs(a - a_naive).max() < 1e-10
