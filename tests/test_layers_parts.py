"""The ``_parts`` versions of the whole-batch layers against the whole-batch definitions, as
test_layers_conv tests conv against conv_naive: batch norm's forward and backward and
dropout, on a batch held as 1, 2 or 3 parts of uneven sizes. One part gives the definition's
numbers bit for bit; more parts add the statistics in another order, so they agree up to
float rounding (dropout draws its one mask for the whole batch: bit for bit always)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from layers.batchnorm import (
    batchnorm_backward,
    batchnorm_backward_parts,
    batchnorm_forward,
    batchnorm_forward_parts,
)
from layers.dropout import dropout_backward, dropout_forward, dropout_forward_parts

CUTS = {"1 part": [], "2 parts": [2], "3 parts": [4, 5]}  # of 9 examples: 9; 2+7; 4+1+4
TOLERANCE = {np.float64: {"rtol": 1e-12, "atol": 1e-12}, np.float32: {"rtol": 1e-5, "atol": 1e-5}}


def batchnorm_inputs(rng, shape, dtype):
    """x (off-centre, not unit scale), gamma, beta, running mean and variance (C,), dout."""
    c = shape[1]
    x = 2.0 + 3.0 * rng.standard_normal(shape)
    gamma, beta = rng.uniform(0.5, 2.0, c), rng.standard_normal(c)
    running_mean, running_var = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    dout = rng.standard_normal(shape)
    return [a.astype(dtype) for a in (x, gamma, beta, running_mean, running_var, dout)]


def assert_same(got, wanted, exact, dtype):
    assert got.dtype == wanted.dtype == dtype and got.shape == wanted.shape
    if exact:
        np.testing.assert_array_equal(got, wanted)
    else:
        np.testing.assert_allclose(got, wanted, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cut", CUTS.values(), ids=CUTS.keys())
@pytest.mark.parametrize("shape", [(9, 4), (9, 3, 2, 5)])
def test_batchnorm_parts_equal_the_whole_batch_layer(shape, cut, dtype):
    rng = np.random.default_rng(5)
    x, gamma, beta, running_mean, running_var, dout = batchnorm_inputs(rng, shape, dtype)
    out, mean, var, cache = batchnorm_forward(
        x, gamma, beta, running_mean, running_var, True, momentum=0.8, eps=1e-4
    )
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    outs, mean_parts, var_parts, caches = batchnorm_forward_parts(
        np.split(x, cut), gamma, beta, running_mean, running_var, momentum=0.8, eps=1e-4
    )
    dxs, dgamma_parts, dbeta_parts = batchnorm_backward_parts(np.split(dout, cut), caches)
    assert [len(part) for part in outs] == [len(part) for part in np.split(x, cut)]
    exact = not cut
    assert_same(np.concatenate(outs), out, exact, dtype)
    assert_same(np.concatenate([c.xhat for c in caches]), cache.xhat, exact, dtype)
    for got, wanted in [(mean_parts, mean), (var_parts, var), (dgamma_parts, dgamma)]:
        assert_same(got, wanted, exact, dtype)
    assert_same(dbeta_parts, dbeta, exact, dtype)
    assert_same(np.concatenate(dxs), dx, exact, dtype)
    no_dx, dgamma_only, _ = batchnorm_backward_parts(np.split(dout, cut), caches, need_dx=False)
    assert no_dx is None
    np.testing.assert_array_equal(dgamma_only, dgamma_parts)


def test_batchnorm_parts_run_through_any_map_give_the_same_numbers():
    """map_parts only says where the per-part work runs (model/shards.py: worker threads)."""
    rng = np.random.default_rng(6)
    x, gamma, beta, running_mean, running_var, _ = batchnorm_inputs(rng, (8, 3, 4, 4), np.float32)
    parts = np.split(x, 2)
    serial = batchnorm_forward_parts(
        [p.copy() for p in parts], gamma, beta, running_mean, running_var
    )
    with ThreadPoolExecutor(2) as pool:

        def threaded(function, items):
            return list(pool.map(function, items))

        parallel = batchnorm_forward_parts(
            [p.copy() for p in parts], gamma, beta, running_mean, running_var, map_parts=threaded
        )
        douts = [np.ones_like(p) for p in parts]
        grads = batchnorm_backward_parts(douts, parallel[3], map_parts=threaded)
    for a, b in zip(serial[0], parallel[0], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(serial[1], parallel[1])
    np.testing.assert_array_equal(grads[1], batchnorm_backward_parts(douts, serial[3])[1])
    assert all(out.dtype == np.float32 for out in parallel[0])


@pytest.mark.parametrize("p", [0.3, 0.0])
@pytest.mark.parametrize("cut", CUTS.values(), ids=CUTS.keys())
def test_dropout_parts_equal_the_whole_batch_layer(cut, p):
    """The same generator state draws the same whole-batch mask, cut like the parts."""
    rng = np.random.default_rng(1)
    x, dout = rng.standard_normal((9, 3, 4)), rng.standard_normal((9, 3, 4))
    out, mask = dropout_forward(x, p, np.random.default_rng(8), train=True)
    outs, masks = dropout_forward_parts(np.split(x, cut), p, np.random.default_rng(8))
    np.testing.assert_array_equal(np.concatenate(outs), out)
    dxs = [dropout_backward(d, m) for d, m in zip(np.split(dout, cut), masks, strict=True)]
    np.testing.assert_array_equal(np.concatenate(dxs), dropout_backward(dout, mask))
    if p == 0:
        assert mask is None and masks == [None] * (len(cut) + 1)
    else:
        np.testing.assert_array_equal(np.concatenate(masks), mask)
