"""Mixed precision's arithmetic on NumPy float16 (core/learn/precision.py, the float16 paths of
layers/batchnorm.py and layers/dropout.py, core/learn/train.py mixed_step).

--precision mixed runs on the GPU only; everything it computes is array arithmetic in the
library of its arrays, so the loss scaling (overflow detection, halving, doubling, the count
of skipped steps) and a whole mixed step are checked here on the CPU, in NumPy's float16.
"""

import dataclasses

import numpy as np
import pytest

from core.learn import precision
from core.learn.config import TrainConfig
from core.learn.prepare import TrainData
from core.learn.runs import RunState, log_columns, make_run
from core.learn.train import mixed_step, train_step
from core.progress import epoch_line
from data.normalization import Normalization
from layers.batchnorm import (
    batchnorm_backward,
    batchnorm_backward_parts,
    batchnorm_forward,
    batchnorm_forward_parts,
)
from layers.dropout import dropout_forward
from model.blueprints import validate_blueprint
from model.initialize_parameters import initialize_parameters

# -- the loss scaling --------------------------------------------------------------------------


def test_a_step_with_gradients_that_are_not_finite_halves_the_scale_and_is_counted():
    scaling = precision.Scaling(2.0**10, scale_streak=7, skipped=2)
    assert precision.next_scaling(scaling, finite=False) == (2.0**9, 0, 3)


def test_finite_steps_grow_the_streak_and_double_the_scale_after_the_growth_interval():
    scaling = precision.Scaling()
    assert scaling == (2.0**16, 0, 0)
    for _ in range(precision.GROWTH_INTERVAL - 1):
        scaling = precision.next_scaling(scaling, finite=True)
    assert scaling == (2.0**16, precision.GROWTH_INTERVAL - 1, 0)
    assert precision.next_scaling(scaling, finite=True) == (2.0**17, 0, 0)


def test_the_scaling_is_read_from_a_run_state_and_written_back():
    state = RunState(loss_scale=128.0, scale_streak=5, skipped=1)
    scaling = precision.scaling_of(state)
    assert scaling == (128.0, 5, 1)
    after = state._replace(**precision.next_scaling(scaling, finite=False)._asdict())
    assert (after.loss_scale, after.scale_streak, after.skipped) == (64.0, 0, 2)


def test_scaled_gradients_are_float16_and_an_overflow_becomes_inf_without_a_warning():
    dscores = np.array([[0.25, -0.5], [1e-3, 2.0]], np.float32)
    out = precision.scaled(dscores, 2.0**8)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, (dscores * 256).astype(np.float16))
    huge = precision.scaled(dscores, 2.0**16)  # 2 * 65536 is past float16's 65504
    assert huge.dtype == np.float16 and np.isinf(huge[1, 1]) and np.isfinite(huge[0]).all()


def test_unscaled_gradients_are_float32_divided_by_the_scale_and_their_finiteness_checked():
    grads = {"a.W": np.array([256.0, -512.0], np.float16), "b.gamma": np.ones(3, np.float32)}
    out, finite = precision.unscaled(grads, 256.0)
    assert finite and all(g.dtype == np.float32 for g in out.values())
    np.testing.assert_array_equal(out["a.W"], [1.0, -2.0])
    np.testing.assert_array_equal(out["b.gamma"], np.full(3, 1 / 256, np.float32))
    for bad in (np.inf, -np.inf, np.nan):
        _, finite = precision.unscaled({**grads, "a.b": np.array([1.0, bad], np.float16)}, 256.0)
        assert not finite
    assert precision.unscaled({}, 2.0) == ({}, True)


# -- what computes in float16 ------------------------------------------------------------------

TINY = validate_blueprint(
    [
        {"type": "conv", "name": "conv1", "filters": 4, "kernel": 3, "pad": 1},
        {"type": "batchnorm", "name": "bn1"},
        {"type": "relu"},
        {"type": "maxpool", "size": 2},
        {"type": "flatten"},
        {"type": "dropout", "p": 0.25},
        {"type": "fc", "name": "fc1", "units": 3},
    ]
)
IN_SHAPE = (1, 8, 8)


def test_the_float16_arrays_are_the_weighted_layers_and_batch_norm_stays_float32():
    keys = precision.half_keys(TINY)
    assert keys == ["conv1.W", "conv1.b", "fc1.W", "fc1.b"]
    params = initialize_parameters(TINY, IN_SHAPE, np.random.default_rng(0))
    half = precision.half_copies(params, keys)
    assert {k for k, a in half.items() if a.dtype == np.float16} == set(keys)
    assert all(half[k] is params[k] for k in params if k not in keys)  # the same arrays
    assert all(params[k].dtype == np.float32 for k in params)  # the masters are untouched


@pytest.mark.parametrize("shape", [(16, 3, 5, 5), (32, 6)])
def test_batch_norm_takes_float16_in_float32_and_gives_float16_back(shape):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    c = shape[1]
    gamma, beta = (
        rng.uniform(0.5, 1.5, c).astype(np.float32),
        rng.standard_normal(c).astype(np.float32),
    )
    stats = np.zeros(c, np.float32), np.ones(c, np.float32)
    dout = rng.standard_normal(shape).astype(np.float32)
    out32, mean32, var32, cache32 = batchnorm_forward(x, gamma, beta, *stats, train=True)
    out16, mean16, var16, cache16 = batchnorm_forward(
        x.astype(np.float16), gamma, beta, *stats, train=True
    )
    assert out16.dtype == np.float16 and mean16.dtype == var16.dtype == np.float32
    assert cache16.xhat.dtype == np.float32  # the statistics and xhat in float32
    np.testing.assert_allclose(out16, out32, atol=2e-2)
    np.testing.assert_allclose(mean16, mean32, rtol=1e-3, atol=1e-3)
    dx16, dgamma16, dbeta16 = batchnorm_backward(dout.astype(np.float16), cache16)
    dx32, dgamma32, dbeta32 = batchnorm_backward(dout, cache32)
    assert dx16.dtype == np.float16 and dgamma16.dtype == dbeta16.dtype == np.float32
    np.testing.assert_allclose(dx16, dx32, atol=3e-2)
    np.testing.assert_allclose(dgamma16, dgamma32, rtol=2e-2, atol=2e-2)
    # the parts version (the threads executor's) does the same, part by part
    parts = [x[:5].astype(np.float16), x[5:].astype(np.float16)]
    outs, mean_p, _, caches = batchnorm_forward_parts(parts, gamma, beta, *stats)
    assert [o.dtype for o in outs] == [np.float16] * 2 and mean_p.dtype == np.float32
    np.testing.assert_array_equal(np.concatenate(outs), out16)
    dxs, dgamma_p, _ = batchnorm_backward_parts([dout[:5].astype(np.float16),
                                                 dout[5:].astype(np.float16)], caches)  # fmt: skip
    assert [d.dtype for d in dxs] == [np.float16] * 2 and dgamma_p.dtype == np.float32
    np.testing.assert_allclose(np.concatenate(dxs), dx16, atol=2e-3)


def test_batch_norm_in_one_dtype_is_computed_as_before():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 3, 4, 4))  # float64, as the gradient checks run it
    gamma, beta, mean, var = np.ones(3), np.zeros(3), np.zeros(3), np.ones(3)
    out, _, _, cache = batchnorm_forward(x, gamma, beta, mean, var, train=False)
    assert out.dtype == np.float64 and cache.xhat.dtype == np.float64
    np.testing.assert_array_equal(out, x * (1 / np.sqrt(1 + 1e-5)))


def test_float16_dropout_drops_the_units_a_float32_run_drops():
    x = np.ones((6, 50), np.float32)
    out32, _ = dropout_forward(x, 0.3, np.random.default_rng(4), train=True)
    out16, _ = dropout_forward(x.astype(np.float16), 0.3, np.random.default_rng(4), train=True)
    assert out16.dtype == np.float16
    np.testing.assert_array_equal(out16 == 0, out32 == 0)


# -- a whole mixed step ------------------------------------------------------------------------


def tiny_run(**changes):
    """A Run of the TINY network on 16 random 1x8x8 images of 3 classes."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, *IN_SHAPE)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    norm = Normalization.from_arrays([0.0], [1.0])
    data = TrainData(x, y, x[:4], y[:4], norm, np.zeros(1, np.float32), dataset=None)
    config = dataclasses.replace(TrainConfig(), batch_size=16, precision="mixed", **changes)
    return make_run(config, data, TINY), x, y


def test_a_mixed_step_updates_the_float32_weights_as_a_float32_step_does_up_to_rounding():
    run, x, y = tiny_run(optimizer="sgd")  # a move proportional to the gradient (Adam's is not)
    params = initialize_parameters(TINY, IN_SHAPE, np.random.default_rng(0))
    opt_state = run.optimizer.init(params)
    args = (x, y, run, 0, 0.1)
    p32, s32, loss32, _ = train_step(params, opt_state, *args, np.random.default_rng(6))
    scaling = precision.Scaling(2.0**8)
    p16, s16, loss16, _, after = mixed_step(
        params, opt_state, *args, np.random.default_rng(6), scaling
    )
    assert after == (2.0**8, 1, 0)  # a finite step: the streak grows
    assert all(p16[k].dtype == np.float32 for k in p16) and all(
        s16[k].dtype == np.float32 for k in s16
    )
    assert loss16 == pytest.approx(loss32, rel=1e-2)
    moves16, moves32 = ({k: p[k] - params[k] for k in params} for p in (p16, p32))
    largest = max(np.abs(move).max() for move in moves32.values())
    for key in params:  # the moves agree to float16's rounding (conv1.b's, before a batch
        # norm, are rounding alone: its exact gradient is 0)
        assert np.abs(moves16[key] - moves32[key]).max() <= 2e-2 * largest, key


def test_a_mixed_step_whose_gradients_overflow_is_skipped_and_halves_the_scale():
    run, x, y = tiny_run()
    params = initialize_parameters(TINY, IN_SHAPE, np.random.default_rng(0))
    opt_state = run.optimizer.init(params)
    scaling = precision.Scaling(2.0**40, scale_streak=3, skipped=4)  # float16 overflows
    new, state, loss, _, after = mixed_step(
        params, opt_state, x, y, run, 0, 1e-2, np.random.default_rng(6), scaling
    )
    assert np.isfinite(loss)
    assert after == (2.0**39, 0, 5)
    trained = [k for k in params if not k.startswith("bn1.running")]
    assert all(new[k] is params[k] for k in trained)  # no update: the very same arrays
    assert all(state[k] is opt_state[k] for k in opt_state)
    assert new["bn1.running_mean"] is not params["bn1.running_mean"]  # statistics still kept


def test_a_mixed_run_logs_its_skipped_steps():
    mixed = TrainConfig(precision="mixed")
    assert log_columns(mixed)[-1] == "skipped_steps"
    assert "skipped_steps" not in log_columns(TrainConfig())
    row = {"epoch": 1, "lr": 1e-3, "train_loss": 0.5, "train_acc": 0.9, "val_loss": 0.4,
           "val_acc": 0.91, "seconds": 2.0, "images_per_s": 1000.0}  # fmt: skip
    assert "skipped" not in epoch_line("cross_entropy", row)
    assert epoch_line("cross_entropy", {**row, "skipped_steps": 3}).endswith(", 3 steps skipped")
