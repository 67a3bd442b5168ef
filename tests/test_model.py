"""The whole blueprint-driven network: presets, derived shapes, parameters, whole-network
gradient check, training / evaluation modes, dtypes, sanity checks, overfitting, bad blueprints."""

import gzip
import json
import math
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from core.learn.gradcheck import rel_error
from core.learn.loss import softmax_cross_entropy
from core.learn.optim import make_optimizer
from data.errors import UserError
from layers import conv_forward
from model.backward import backward
from model.blueprints import PRESETS, load_blueprint, minivgg, validate_blueprint
from model.forward import forward
from model.initialize_parameters import initialize_parameters, trainable_keys
from model.shapes import trace_shapes
from model.shards import (
    get_threads,
    segment_ranges,
    set_threads,
    shard_bounds,
    sharded_backward,
    sharded_forward,
)
from model.summary import format_summary, summary_table
from model.walk import walk_backward, walk_forward

MNIST = Path(__file__).resolve().parents[1] / "data" / "mnist"
IMAGE = (1, 28, 28)
SMALL_IMAGE = (1, 12, 12)  # the smallest square map every image preset can take (lenet5)


def preset_input(name, image_shape=IMAGE):
    """The shape of one example a preset is fed: a 2-D point for "mlp", a number for
    "mlp_regression", else an image."""
    return {"mlp": (2,), "mlp_regression": (1,)}.get(name, image_shape)


# ------------------------------------------------------------------- presets and shapes


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_validates_traces_initializes_and_summarizes(name):
    blueprint = PRESETS[name]()
    checked = validate_blueprint(blueprint)
    assert len(checked) == len(blueprint)
    for spec, given in zip(checked, blueprint, strict=True):  # defaults added, nothing changed
        assert spec.keys() >= given.keys()
        for key, value in given.items():
            if isinstance(value, list):  # a residual node's body or shortcut: checked too
                assert len(spec[key]) == len(value)
            else:
                assert spec[key] == value

    rows = trace_shapes(blueprint, preset_input(name))
    n_classes = blueprint[-1]["units"]
    assert rows[0].in_shape == preset_input(name) and rows[-1].out_shape == (n_classes,)
    top = [row for row in rows if row.depth == 0]  # a residual node's layers follow it
    for before, after in zip(top, top[1:], strict=False):  # each layer feeds the next
        assert after.in_shape == before.out_shape
    param_shapes = {key: shape for row in rows for key, shape in row.param_shapes.items()}

    params = initialize_parameters(blueprint, preset_input(name), np.random.default_rng(0))
    assert params.keys() == param_shapes.keys()
    for key, array in params.items():
        assert array.dtype == np.float32, key
        assert array.shape == tuple(param_shapes[key]), key
    assert set(trainable_keys(blueprint, preset_input(name))) <= params.keys()

    table = summary_table(blueprint, preset_input(name))
    assert list(table["layer"]) == ["  " * row.depth + row.label for row in rows]
    total = sum(array.size for array in params.values())
    assert table["params"].sum() == total
    assert f"total parameters: {total:,}" in format_summary(blueprint, preset_input(name))


def test_minivgg_has_218490_parameters():
    table = summary_table(minivgg(), IMAGE)
    assert table["params"].sum() == 218_490
    assert "total parameters: 218,490" in format_summary(minivgg(), IMAGE)


@pytest.mark.parametrize("input_shape,fc5_in", [((1, 8, 8), 32 * 2 * 2), ((3, 32, 32), 32 * 8 * 8)])
def test_shapes_are_derived_from_the_input(input_shape, fc5_in):
    params = initialize_parameters(minivgg(), input_shape, np.random.default_rng(0))
    assert params["conv1.W"].shape == (16, input_shape[0], 3, 3)
    assert params["fc5.W"].shape == (fc5_in, 128)


def test_initialization_depends_only_on_the_rng():
    first = initialize_parameters(minivgg(), IMAGE, np.random.default_rng(3))
    again = initialize_parameters(minivgg(), IMAGE, np.random.default_rng(3))
    other = initialize_parameters(minivgg(), IMAGE, np.random.default_rng(4))
    assert all(np.array_equal(first[key], again[key]) for key in first)
    assert not np.array_equal(first["conv1.W"], other["conv1.W"])


# ------------------------------------------------------------ whole-network gradient check


def random_float64_params(blueprint, input_shape, rng):
    """Initialized parameters in float64, with biases, betas and gammas moved off 0 and 1
    so that a backward pass that ignored them could not agree with finite differences."""
    params = initialize_parameters(blueprint, input_shape, rng, dtype=np.float64)
    for key, array in params.items():
        if key.endswith((".b", ".beta")):
            params[key] = 0.1 * rng.standard_normal(array.shape)
        elif key.endswith(".gamma"):
            params[key] = rng.uniform(0.5, 1.5, array.shape)
    return params


def numerical_loss_gradient(loss_of, array, indices, h=1e-5):
    """Centered differences (loss(a + h) - loss(a - h)) / 2h of the scalar ``loss_of()`` with
    respect to the entries ``array.flat[indices]`` (edited in place, then restored)."""
    flat = array.reshape(-1)  # a view: writes reach the array loss_of reads
    grad = np.empty(len(indices))
    for j, i in enumerate(indices):
        old = flat[i]
        flat[i] = old + h
        plus = loss_of()
        flat[i] = old - h
        minus = loss_of()
        flat[i] = old
        grad[j] = (plus - minus) / (2 * h)
    return grad


def biases_before_batchnorm(blueprint):
    """Keys of the biases a train-mode batch norm cancels (it subtracts the batch mean)."""
    checked = validate_blueprint(blueprint)
    return {
        f"{spec['name']}.b"
        for spec, after in zip(checked, checked[1:], strict=False)
        if spec["type"] in ("conv", "fc") and after["type"] == "batchnorm"
    }


# (preset, input shape, batch). lenet5 (tanh, avgpool) needs 12x12: two 2x2 pools and a
# 5x5 unpadded conv. Batch norm gets 3 examples: with 2, its FC layer's normalized values
# are exactly +-1 whatever the input. minivgg_bn_dropout also covers dropout: every
# forward draws its masks from a fresh rng of the same seed, so the loss is a fixed function.
# Seed 0 keeps every ReLU input and every max-pool runner-up far enough from a kink / tie that
# a 1e-5 step does not cross it (some other seeds cross one: e.g. seed 1 gives ~1e-6 on
# bn1.gamma for minivgg_bn, and a step of 1e-7 brings it back to ~1e-8).
GRADCHECK_CASES = [
    ("minivgg", (1, 8, 8), 2),
    pytest.param("minivgg_bn", (1, 8, 8), 3, marks=pytest.mark.slow),
    pytest.param("minivgg_bn_dropout", (1, 8, 8), 3, marks=pytest.mark.slow),
    ("lenet5", SMALL_IMAGE, 2),
]


@pytest.mark.parametrize("name,input_shape,batch", GRADCHECK_CASES)
def test_whole_network_gradients_match_finite_differences(name, input_shape, batch):
    blueprint = PRESETS[name]()
    rng = np.random.default_rng(0)
    params = random_float64_params(blueprint, input_shape, rng)
    x = rng.standard_normal((batch, *input_shape))
    y = rng.integers(0, 10, batch)

    def loss_of():
        scores, _ = forward(params, x, blueprint, train=True, rng=np.random.default_rng(1))
        return softmax_cross_entropy(scores, y)[0]

    scores, caches = forward(params, x, blueprint, train=True, rng=np.random.default_rng(1))
    assert scores.dtype == np.float64
    _, dscores = softmax_cross_entropy(scores, y)
    grads = backward(dscores, caches, blueprint)
    cancelled = biases_before_batchnorm(blueprint)
    for key in trainable_keys(blueprint, input_shape):
        size = params[key].size
        # every entry of small arrays; 30 random entries of big ones (fc5.W, conv4.W, ...)
        indices = np.arange(size) if size <= 40 else rng.choice(size, 30, replace=False)
        numeric = numerical_loss_gradient(loss_of, params[key], indices)
        analytic = grads[key].reshape(-1)[indices]
        if key in cancelled:  # true gradient exactly 0: a relative error would compare noise
            assert np.abs(analytic).max() < 1e-9 and np.abs(numeric).max() < 1e-9, key
        else:
            assert rel_error(analytic, numeric) < 1e-7, key


# ------------------------------------------------------------- modes, state and dtypes


def small_batch(rng, input_shape, batch, dtype=np.float32):
    """Random normal examples and labels in 0..9."""
    x = rng.standard_normal((batch, *input_shape)).astype(dtype)
    return x, rng.integers(0, 10, batch)


@pytest.mark.parametrize("name", list(PRESETS))
def test_backward_returns_exactly_the_trainable_gradients(name):
    blueprint = PRESETS[name]()
    input_shape = preset_input(name, SMALL_IMAGE)
    rng = np.random.default_rng(0)
    params = initialize_parameters(blueprint, input_shape, rng)
    x, _ = small_batch(rng, input_shape, 2)
    scores, caches = forward(params, x, blueprint, train=True, rng=rng)
    n_classes = blueprint[-1]["units"]
    _, dscores = softmax_cross_entropy(scores, rng.integers(0, n_classes, 2))
    grads = backward(dscores, caches, blueprint)
    assert sorted(grads) == sorted(trainable_keys(blueprint, input_shape))
    assert not [key for key in grads if "running" in key]
    for key, grad in grads.items():
        assert grad.shape == params[key].shape and grad.dtype == np.float32, key


def test_training_forward_returns_running_stats_and_does_not_mutate_params():
    blueprint = PRESETS["minivgg_bn"]()
    rng = np.random.default_rng(0)
    params = initialize_parameters(blueprint, SMALL_IMAGE, rng, dtype=np.float64)
    params["bn1.running_mean"] = rng.standard_normal(16)
    params["bn1.running_var"] = rng.uniform(0.5, 2.0, 16)
    before = {key: array.copy() for key, array in params.items()}
    objects = dict(params)
    x, y = small_batch(rng, SMALL_IMAGE, 4, np.float64)

    scores, caches = forward(params, x, blueprint, train=True)
    backward(softmax_cross_entropy(scores, y)[1], caches, blueprint)

    bn_layers = [spec["name"] for spec in blueprint if spec["type"] == "batchnorm"]
    assert len(bn_layers) == 5
    expected_keys = {f"{bn}.{stat}" for bn in bn_layers for stat in ("running_mean", "running_var")}
    assert caches.running_stats.keys() == expected_keys
    # bn1 sees conv1's output: its new statistics are 0.9 * old + 0.1 * batch (biased) statistic
    conv1, _ = conv_forward(x, params["conv1.W"], params["conv1.b"], 1, 1)
    np.testing.assert_allclose(
        caches.running_stats["bn1.running_mean"],
        0.9 * before["bn1.running_mean"] + 0.1 * conv1.mean(axis=(0, 2, 3)),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        caches.running_stats["bn1.running_var"],
        0.9 * before["bn1.running_var"] + 0.1 * conv1.var(axis=(0, 2, 3)),
        rtol=1e-12,
    )
    # nothing was changed in place, nothing added or removed
    assert params.keys() == before.keys()
    for key, array in params.items():
        assert array is objects[key] and np.array_equal(array, before[key]), key

    _, eval_caches = forward(params, x, blueprint, train=False)
    assert eval_caches.running_stats == {}


def test_eval_mode_normalizes_with_the_running_statistics():
    blueprint = [{"type": "fc", "name": "f", "units": 3}, {"type": "batchnorm", "name": "bn"}]
    rng = np.random.default_rng(0)
    params = initialize_parameters(blueprint, (4,), rng, dtype=np.float64)
    params.update(
        {
            "bn.gamma": rng.uniform(0.5, 2.0, 3),
            "bn.beta": rng.standard_normal(3),
            "bn.running_mean": rng.standard_normal(3),
            "bn.running_var": rng.uniform(0.5, 2.0, 3),
        }
    )
    x = rng.standard_normal((5, 4))
    h = x @ params["f.W"] + params["f.b"]
    expected = (h - params["bn.running_mean"]) / np.sqrt(params["bn.running_var"] + 1e-5)
    expected = params["bn.gamma"] * expected + params["bn.beta"]
    scores, _ = forward(params, x, blueprint, train=False)
    np.testing.assert_allclose(scores, expected, rtol=1e-12)

    # training mode uses the batch: the running statistics do not change its output
    train_scores, _ = forward(params, x, blueprint, train=True)
    moved = {**params, "bn.running_mean": params["bn.running_mean"] + 5.0}
    np.testing.assert_array_equal(forward(moved, x, blueprint, train=True)[0], train_scores)
    assert not np.allclose(train_scores, scores)


def test_eval_mode_scores_do_not_depend_on_the_rest_of_the_batch():
    blueprint = PRESETS["minivgg_bn_dropout"]()
    rng = np.random.default_rng(0)
    params = initialize_parameters(blueprint, SMALL_IMAGE, rng, dtype=np.float64)
    x, _ = small_batch(rng, SMALL_IMAGE, 4, np.float64)
    whole, _ = forward(params, x, blueprint, train=False)
    alone, _ = forward(params, x[:1], blueprint, train=False)
    np.testing.assert_allclose(alone, whole[:1], rtol=1e-10, atol=1e-12)
    # the contrast: in training, batch norm's statistics come from the batch (same params:
    # dropout has none)
    no_dropout = PRESETS["minivgg_bn"]()
    train_whole, _ = forward(params, x, no_dropout, train=True)
    train_part, _ = forward(params, x[:2], no_dropout, train=True)
    assert not np.allclose(train_part[:1], train_whole[:1])


# ------------------------------------------------------------------- shards and threads


@pytest.fixture
def restore_threads():
    """Give the model back the thread count it had before the test."""
    before = get_threads()
    yield
    set_threads(before)


@pytest.mark.parametrize("n_items,threads", [(64, 2), (10, 3), (2, 4), (1, 2), (7, 1)])
def test_shard_bounds_cover_the_batch_in_near_equal_shards(restore_threads, n_items, threads):
    set_threads(threads)
    bounds = shard_bounds(n_items)
    assert len(bounds) == max(1, min(threads, n_items))
    assert bounds[0][0] == 0 and bounds[-1][1] == n_items
    assert all(hi == next_lo for (_, hi), (next_lo, _) in pairwise(bounds))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_segments_isolate_the_layers_that_need_the_whole_batch():
    blueprint = validate_blueprint(PRESETS["minivgg_bn_dropout"]())
    types = [spec["type"] for spec in blueprint]
    ranges = segment_ranges(blueprint, train=True)
    assert [i for start, stop, _ in ranges for i in range(start, stop)] == list(range(len(types)))
    for start, stop, whole_batch in ranges:
        coupled = [types[i] in ("batchnorm", "dropout") for i in range(start, stop)]
        assert whole_batch == any(coupled)
        assert not whole_batch or stop - start == 1
    assert segment_ranges(blueprint, train=False) == [(0, len(types), False)]


@pytest.mark.parametrize("name", ["minivgg_bn_dropout", "lenet5"])
def test_any_thread_count_gives_the_same_scores_and_gradients(restore_threads, name):
    """Shards change the order of the gradient sums, nothing else: batch norm still sees the
    whole batch (per-shard statistics would change the scores by far more than rounding)
    and dropout draws the same masks."""
    blueprint = PRESETS[name]()
    rng = np.random.default_rng(0)
    params = initialize_parameters(blueprint, SMALL_IMAGE, rng, dtype=np.float64)
    x, y = small_batch(rng, SMALL_IMAGE, 7, np.float64)
    results = {}
    for threads in (1, 2, 3):
        set_threads(threads)
        scores, caches = forward(params, x, blueprint, train=True, rng=np.random.default_rng(1))
        _, dscores = softmax_cross_entropy(scores, y)
        results[threads] = scores, backward(dscores, caches, blueprint), caches.running_stats
    scores_1, grads_1, stats_1 = results[1]
    for threads in (2, 3):
        scores, grads, stats = results[threads]
        np.testing.assert_allclose(scores, scores_1, rtol=1e-12, atol=1e-12)
        assert sorted(grads) == sorted(grads_1) and sorted(stats) == sorted(stats_1)
        for key in grads:
            np.testing.assert_allclose(grads[key], grads_1[key], rtol=1e-10, atol=1e-13)
        for key in stats:
            np.testing.assert_allclose(stats[key], stats_1[key], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape", [(6, 6, 4, 3), (6, 7), (7, 16, 5, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_on_shards_equals_the_whole_layer(restore_threads, shape, dtype):
    """In training, batch norm works on the shards where they lie: its statistics are summed
    over the shards, so every number (output, running statistics, dx, dgamma, dbeta) is the
    whole layer's up to rounding, and on one thread bit for bit."""
    specs = validate_blueprint([{"type": "batchnorm", "name": "bn"}])
    rng = np.random.default_rng(0)
    c = shape[1]
    params = {
        "bn.gamma": rng.uniform(0.5, 1.5, c).astype(dtype),
        "bn.beta": rng.standard_normal(c).astype(dtype),
        "bn.running_mean": rng.standard_normal(c).astype(dtype),
        "bn.running_var": rng.uniform(0.5, 2, c).astype(dtype),
    }
    x = (3 * rng.standard_normal(shape) + 1).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    whole_out, whole_caches, whole_stats = walk_forward(params, x, specs, train=True)
    whole_dx, whole_grads = walk_backward(dout, whole_caches, specs)
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-5}
    for threads in (1, 2, 3):
        set_threads(threads)
        out, segments, stats = sharded_forward(params, x, specs, train=True)
        assert [segment.whole for segment in segments] == [True]
        assert len(segments[0].caches) == threads  # one cache per shard
        dx, grads = sharded_backward(dout, segments, specs)
        assert out.dtype == dx.dtype == dtype
        assert sorted(grads) == ["bn.beta", "bn.gamma"]
        pairs = [(out, whole_out), (dx, whole_dx)]
        pairs += [(stats[key], whole_stats[key]) for key in whole_stats]
        pairs += [(grads[key], whole_grads[key]) for key in grads]
        for got, wanted in pairs:
            if threads == 1:
                assert np.array_equal(got, wanted)
            else:
                np.testing.assert_allclose(got, wanted, **tol)


def test_residual_nodes_add_their_branches_shard_by_shard(restore_threads):
    """A residual net in training keeps its batch cut from the first layer to the last, and
    gives the one-thread numbers up to rounding."""
    blueprint = PRESETS["resnet"]()
    rng = np.random.default_rng(0)
    params = initialize_parameters(blueprint, SMALL_IMAGE, rng, dtype=np.float64)
    x, y = small_batch(rng, SMALL_IMAGE, 5, np.float64)
    results = {}
    for threads in (1, 2):
        set_threads(threads)
        scores, caches = forward(params, x, blueprint, train=True)
        _, dscores = softmax_cross_entropy(scores, y)
        results[threads] = scores, backward(dscores, caches, blueprint)
    np.testing.assert_allclose(results[2][0], results[1][0], rtol=1e-11, atol=1e-12)
    for key, grad in results[1][1].items():
        np.testing.assert_allclose(results[2][1][key], grad, rtol=1e-9, atol=1e-12)


def test_inference_on_shards_equals_inference_example_by_example(restore_threads):
    blueprint = PRESETS["minivgg_bn"]()
    rng = np.random.default_rng(0)
    params = initialize_parameters(blueprint, SMALL_IMAGE, rng, dtype=np.float64)
    x, _ = small_batch(rng, SMALL_IMAGE, 5, np.float64)
    set_threads(2)
    scores, _ = forward(params, x, blueprint, keep_caches=False)
    for i in range(5):
        np.testing.assert_allclose(
            scores[i : i + 1], forward(params, x[i : i + 1], blueprint)[0], rtol=1e-12, atol=1e-12
        )


def test_dropout_needs_an_rng_and_the_same_seed_gives_the_same_forward():
    blueprint = PRESETS["minivgg_bn_dropout"]()
    rng = np.random.default_rng(0)
    params = initialize_parameters(blueprint, SMALL_IMAGE, rng)
    x, _ = small_batch(rng, SMALL_IMAGE, 3)
    first, _ = forward(params, x, blueprint, train=True, rng=np.random.default_rng(7))
    again, _ = forward(params, x, blueprint, train=True, rng=np.random.default_rng(7))
    other, _ = forward(params, x, blueprint, train=True, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    with pytest.raises(ValueError, match="rng"):
        forward(params, x, blueprint, train=True)
    # evaluation needs no rng and is deterministic
    np.testing.assert_array_equal(
        forward(params, x, blueprint)[0], forward(params, x, blueprint)[0]
    )


@pytest.mark.parametrize("name", ["minivgg_bn_dropout", "lenet5"])
def test_float32_in_float32_out(name):
    blueprint = PRESETS[name]()
    rng = np.random.default_rng(0)
    params = initialize_parameters(blueprint, SMALL_IMAGE, rng)
    x, y = small_batch(rng, SMALL_IMAGE, 3)
    scores, caches = forward(params, x, blueprint, train=True, rng=rng)
    _, dscores = softmax_cross_entropy(scores, y)
    grads = backward(dscores, caches, blueprint)
    assert scores.dtype == np.float32 and dscores.dtype == np.float32
    assert all(grad.dtype == np.float32 for grad in grads.values())
    assert all(stat.dtype == np.float32 for stat in caches.running_stats.values())
    assert forward(params, x, blueprint)[0].dtype == np.float32


# --------------------------------------------------------------------- sanity checks


def test_initial_loss_of_a_fresh_minivgg_is_about_ln_10():
    rng = np.random.default_rng(0)
    params = initialize_parameters(minivgg(), IMAGE, rng)
    x, y = small_batch(rng, IMAGE, 64)
    scores, _ = forward(params, x, minivgg(), train=True)
    loss, _ = softmax_cross_entropy(scores, y)
    assert abs(loss - math.log(10)) < 0.1


def read_mnist_head(n):
    """The first n MNIST training images (n, 1, 28, 28) uint8 and labels (n,) int64, read
    straight from the idx files (16- and 8-byte big-endian headers)."""
    with gzip.open(MNIST / "train-images-idx3-ubyte.gz") as f:
        header = np.frombuffer(f.read(16), dtype=">i4")
        images = np.frombuffer(f.read(n * 28 * 28), dtype=np.uint8)
    with gzip.open(MNIST / "train-labels-idx1-ubyte.gz") as f:
        label_header = np.frombuffer(f.read(8), dtype=">i4")
        labels = np.frombuffer(f.read(n), dtype=np.uint8)
    assert list(header) == [2051, 60000, 28, 28] and list(label_header) == [2049, 60000]
    return images.reshape(n, 1, 28, 28), labels.astype(np.int64)


@pytest.mark.slow
def test_minivgg_overfits_100_mnist_images():
    images, y = read_mnist_head(100)
    x = ((images / 255 - 0.1307) / 0.3081).astype(np.float32)
    blueprint = minivgg()
    params = initialize_parameters(blueprint, IMAGE, np.random.default_rng(0))
    adam = make_optimizer("adam")
    state = adam.init(params)
    losses = []
    for step in range(1, 301):  # full-batch steps; stop as soon as every image is right
        scores, caches = forward(params, x, blueprint, train=True)
        loss, dscores = softmax_cross_entropy(scores, y)
        losses.append(loss)
        if np.all(scores.argmax(axis=1) == y):
            break
        params, state = adam.update(params, backward(dscores, caches, blueprint), state, step, 1e-3)
    assert np.all(scores.argmax(axis=1) == y), f"accuracy {np.mean(scores.argmax(1) == y)}"
    assert losses[-1] < 0.2 * losses[0]
    assert all(array.dtype == np.float32 for array in params.values())


# -------------------------------------------------------------------- bad blueprints


def conv(name="c1", **hyper):
    return {"type": "conv", "name": name, "filters": 4, "kernel": 3, **hyper}


POOL = {"type": "maxpool", "size": 2, "stride": 2}

BAD_BLUEPRINTS = {
    "unknown-type": ([{"type": "relu"}, {"type": "relux"}], ["layer 1", "'relux'"]),
    "missing-key": ([{"type": "conv", "name": "c1", "kernel": 3}], ["c1", "filters"]),
    "unknown-key": (
        [{"type": "conv", "name": "c1", "filter": 4, "kernel": 3}],
        ["c1", "['filter']"],
    ),
    "repeated-name": ([conv("conv1"), {"type": "relu"}, conv("conv1")], ["'conv1'", "twice"]),
    "unnamed-conv": (
        [{"type": "relu"}, {"type": "conv", "filters": 4, "kernel": 3}],
        ["layer 1 (conv)", "name"],
    ),
    # 8 -> 4 -> 2 -> 1, and the fourth pool cannot take a 1x1 map
    "pool-below-1-pixel": ([POOL, POOL, POOL, POOL], ["maxpool4", "(1, 1, 1)", "1x1"]),
    "fc-without-flatten": (
        [conv(), {"type": "fc", "name": "f1", "units": 3}],
        ["f1", "(4, 6, 6)", "flatten"],
    ),
    "kernel-larger-than-input": ([conv(kernel=9)], ["c1", "9x9", "8x8"]),
    "kernel-wider-than-input": ([conv(kernel=[3, 9])], ["c1", "3x9", "8x8"]),
    "conv-stride-0": ([conv(stride=0)], ["c1", "'stride'", "got 0"]),
}


@pytest.mark.parametrize("blueprint,expected", BAD_BLUEPRINTS.values(), ids=BAD_BLUEPRINTS)
def test_bad_blueprint_raises_user_error_naming_layer_and_numbers(blueprint, expected):
    for build in (trace_shapes, summary_table):
        with pytest.raises(UserError) as info:
            build(blueprint, (1, 8, 8))
        for text in expected:
            assert text in str(info.value), (text, str(info.value))
    with pytest.raises(UserError):
        initialize_parameters(blueprint, (1, 8, 8), np.random.default_rng(0))


def test_load_blueprint_of_a_preset_name():
    name, blueprint = load_blueprint("minivgg")
    assert name == "minivgg" and blueprint == validate_blueprint(minivgg())
    _, four_classes = load_blueprint("lenet5", n_classes=4)
    assert four_classes[-1]["units"] == 4


def test_load_blueprint_of_a_json_file(tmp_path):
    path = tmp_path / "my_net.json"
    path.write_text(json.dumps(PRESETS["lenet5"]()))
    name, blueprint = load_blueprint(str(path))
    assert name == "my_net" and blueprint == validate_blueprint(PRESETS["lenet5"]())


def test_load_blueprint_of_an_unknown_name():
    with pytest.raises(UserError) as info:
        load_blueprint("minivg")
    assert "'minivg'" in str(info.value) and "minivgg" in str(info.value)


def write_bad_blueprint_file(tmp_path, kind):
    """A .json path that cannot be loaded, and the words its error must contain."""
    path = tmp_path / f"{kind}.json"
    if kind == "invalid-json":
        path.write_text('[{"type": "relu",}]')  # trailing comma
        return path, ["not valid JSON", "line 1"]
    if kind == "missing":
        return path, ["no such file"]
    if kind == "directory":
        path.mkdir()
        return path, ["cannot read"]
    if kind == "not-utf8":
        path.write_bytes(b"\xff\xfe[\x00]\x00")  # e.g. a file saved as UTF-16
        return path, []
    if kind == "bad-layer":
        path.write_text(json.dumps([{"type": "conv", "name": "c1", "filter": 3, "kernel": 3}]))
        return path, ["c1", "['filter']"]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["invalid-json", "missing", "directory", "not-utf8", "bad-layer"])
def test_load_blueprint_of_a_bad_file_names_the_file(tmp_path, kind):
    path, expected = write_bad_blueprint_file(tmp_path, kind)
    with pytest.raises(UserError) as info:
        load_blueprint(str(path))
    assert str(path) in str(info.value)
    for text in expected:
        assert text in str(info.value), (text, str(info.value))
