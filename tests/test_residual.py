"""Residual nodes, grouped convolutions and global average pooling inside whole networks:
the blueprint format, its errors, float64 finite differences through the walk, and the
threads-over-shards executor against the plain walk."""

import numpy as np
import pytest
from test_model import numerical_loss_gradient

from core.learn.gradcheck import check_kind, rel_error
from core.learn.loss import softmax_cross_entropy
from data.errors import UserError
from model.backward import backward
from model.blueprints import PRESETS, mobilenet, resnet, validate_blueprint
from model.executor import PLAIN
from model.forward import forward
from model.initialize_parameters import initialize_parameters, trainable_keys
from model.shapes import trace_shapes
from model.shards import THREADS, get_threads, set_threads
from model.summary import format_summary
from model.walk import KINDS, iter_layers


def conv(name, filters, kernel=3, stride=1, pad=1, groups=1):
    return {
        "type": "conv",
        "name": name,
        "filters": filters,
        "kernel": kernel,
        "stride": stride,
        "pad": pad,
        "groups": groups,
    }


def bn(name):
    return {"type": "batchnorm", "name": name}


TANH = {"type": "tanh"}


def nested_net():
    """A residual node whose body holds another residual node (identity shortcut), then a
    projection node with a grouped conv, global average pooling and an FC layer."""
    inner = {"type": "residual", "name": "inner", "body": [conv("i1", 4), TANH]}
    return [
        conv("stem", 4),
        TANH,
        {"type": "residual", "name": "outer", "body": [inner, conv("o1", 4, groups=2), TANH]},
        {
            "type": "residual",
            "name": "down",
            "body": [conv("d1", 6, stride=2, groups=2), TANH, conv("d2", 6, groups=6)],
            "shortcut": [conv("p1", 6, kernel=1, stride=2, pad=0), TANH],
        },
        {"type": "global_avgpool"},
        {"type": "fc", "name": "fc", "units": 5},
    ]


SMALL_RESNET = resnet(5, widths=(4, 6, 8), blocks=1)
SMALL_MOBILENET = mobilenet(5, stages=((6, 1), (8, 2)))


def float64_params(blueprint, input_shape, rng):
    """Random float64 parameters, biases and betas away from 0, gammas and running
    statistics away from 1 and 0 (so that eval mode's use of them shows)."""
    params = initialize_parameters(blueprint, input_shape, rng, dtype=np.float64)
    for key, array in params.items():
        if key.endswith((".b", ".beta", ".running_mean")):
            params[key] = 0.1 * rng.standard_normal(array.shape)
        elif key.endswith((".gamma", ".running_var")):
            params[key] = rng.uniform(0.5, 1.5, array.shape)
    return params


def cancelled_biases(specs):
    """Biases right before a batch norm in the same list (nodes' lists included):
    training-mode batch norm subtracts the batch mean, so their true gradient is exactly 0."""
    found = set()
    for spec, after in zip(specs, specs[1:], strict=False):
        if spec["type"] in ("conv", "fc") and after["type"] == "batchnorm":
            found.add(f"{spec['name']}.b")
    for spec in specs:
        for key in KINDS[spec["type"]].nested:
            found |= cancelled_biases(spec.get(key, []))
    return found


# ---------------------------------------------------------------------------- the format


def test_a_missing_or_empty_shortcut_is_the_identity():
    rng = np.random.default_rng(0)
    body = [conv("c1", 3), TANH]
    net = [{"type": "residual", "name": "r", "body": body}]
    params = float64_params(net, (3, 5, 5), rng)
    x = rng.standard_normal((2, 3, 5, 5))
    out, _ = forward(params, x, net)
    body_out, _ = forward(params, x, body)
    np.testing.assert_array_equal(out, body_out + x)
    empty = [{"type": "residual", "name": "r", "body": body, "shortcut": []}]
    np.testing.assert_array_equal(forward(params, x, empty)[0], out)


def test_the_output_is_body_plus_shortcut_and_keys_stay_flat():
    net = nested_net()
    params = float64_params(net, (2, 6, 6), np.random.default_rng(0))
    assert {key.split(".")[0] for key in params} == {"stem", "i1", "o1", "d1", "d2", "p1", "fc"}
    down = net[3]
    x = np.random.default_rng(1).standard_normal((2, 4, 6, 6))
    out, _ = forward(params, x, [down])
    body, _ = forward(params, x, down["body"])
    shortcut, _ = forward(params, x, down["shortcut"])
    np.testing.assert_array_equal(out, body + shortcut)


def test_a_body_that_does_not_fit_its_shortcut_names_the_node_and_both_shapes():
    net = [
        {"type": "residual", "name": "res9", "body": [conv("c1", 8, stride=2)]},
    ]
    with pytest.raises(UserError) as info:
        trace_shapes(net, (4, 8, 8))
    message = str(info.value)
    for text in ("res9", "(8, 4, 4)", "(4, 8, 8)", "projection"):
        assert text in message, message


@pytest.mark.parametrize(
    "blueprint,expected",
    [
        ([{"type": "residual", "name": "r", "body": [conv("c", 2)]}, conv("c", 2)], "twice"),
        ([{"type": "residual", "body": [conv("c", 2)]}], "name"),
        ([{"type": "residual", "name": "r", "body": []}], "body"),
        ([{"type": "residual", "name": "r", "body": [{"type": "relux"}]}], "relux"),
        ([{"type": "residual", "name": "r", "body": [conv("c", 2)], "short": []}], "short"),
        ([conv("c", 4, groups=3)], "groups"),
    ],
)
def test_bad_nodes_are_refused_with_the_layer_named(blueprint, expected):
    with pytest.raises(UserError, match=expected):
        trace_shapes(blueprint, (2, 6, 6))


def test_summary_indents_the_layers_of_a_node_under_it():
    text = format_summary(nested_net(), (2, 6, 6))
    lines = text.splitlines()
    assert any(line.startswith("outer ") for line in lines)
    assert any(line.startswith("  inner ") for line in lines)
    assert any(line.startswith("    i1 ") for line in lines)
    assert any(line.startswith("  p1 ") and "(shortcut)" in line for line in lines)


def test_presets_resnet_and_mobilenet_fit_28_and_32_pixel_images():
    for name in ("resnet", "mobilenet"):
        for shape in ((1, 28, 28), (3, 32, 32)):
            rows = trace_shapes(PRESETS[name](), shape)
            assert rows[-1].out_shape == (10,)
    kinds = {spec["type"] for spec in iter_layers(validate_blueprint(resnet()))}
    assert {"residual", "global_avgpool", "batchnorm"} <= kinds
    depthwise = [s for s in iter_layers(validate_blueprint(mobilenet())) if s.get("groups", 1) > 1]
    assert depthwise and all(s["kernel"] == 3 for s in depthwise)


# ------------------------------------------------------------------ finite differences


@pytest.mark.parametrize("case", KINDS["residual"].gradcheck, ids=lambda c: c.label)
def test_residual_node_cases_match_finite_differences(case):
    for name, err in check_kind("residual", case, np.random.default_rng(0)):
        assert err < 1e-7, (name, err)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(
    "name,blueprint,input_shape",
    [
        ("nested", nested_net(), (2, 6, 6)),
        pytest.param("resnet", SMALL_RESNET, (1, 8, 8), marks=pytest.mark.slow),
        pytest.param("mobilenet", SMALL_MOBILENET, (1, 8, 8), marks=pytest.mark.slow),
    ],
)
def test_whole_network_gradients_match_finite_differences(name, blueprint, input_shape, train):
    rng = np.random.default_rng(0)
    params = float64_params(blueprint, input_shape, rng)
    x = rng.standard_normal((3, *input_shape))
    y = rng.integers(0, 5, 3)

    def loss_of():
        return softmax_cross_entropy(forward(params, x, blueprint, train=train)[0], y)[0]

    scores, caches = forward(params, x, blueprint, train=train)
    grads = backward(softmax_cross_entropy(scores, y)[1], caches, blueprint)
    cancelled = cancelled_biases(blueprint) if train else set()
    assert grads.keys() == set(trainable_keys(blueprint, input_shape))
    for key in grads:
        size = params[key].size
        indices = np.arange(size) if size <= 30 else rng.choice(size, 30, replace=False)
        numeric = numerical_loss_gradient(loss_of, params[key], indices)
        analytic = grads[key].reshape(-1)[indices]
        if key in cancelled:
            assert np.abs(analytic).max() < 1e-9 and np.abs(numeric).max() < 1e-9, key
        else:
            assert rel_error(analytic, numeric) < 1e-7, (key, rel_error(analytic, numeric))


# ---------------------------------------------------------------------------------- shards


@pytest.mark.parametrize("blueprint", [nested_net(), SMALL_RESNET, SMALL_MOBILENET])
def test_sharded_passes_equal_the_plain_walk(blueprint):
    """Nested residual nodes on shards: the plain walk's numbers (PLAIN), bit for bit on one
    thread and up to rounding on three."""
    shape = (2, 6, 6) if blueprint[0]["name"] == "stem" and blueprint[1] == TANH else (1, 8, 8)
    rng = np.random.default_rng(0)
    params = float64_params(blueprint, shape, rng)
    x = rng.standard_normal((7, *shape))
    y = rng.integers(0, 5, 7)
    before = get_threads()
    results = {}
    try:
        for threads, executor in ((0, PLAIN), (1, THREADS), (3, THREADS)):
            set_threads(max(threads, 1))
            for train in (True, False):
                scores, caches = forward(params, x, blueprint, train=train, executor=executor)
                grads = backward(softmax_cross_entropy(scores, y)[1], caches, blueprint)
                results[threads, train] = scores, grads, caches.running_stats
    finally:
        set_threads(before)
    for train in (True, False):
        plain = results[0, train]
        for threads in (1, 3):
            sharded = results[threads, train]
            assert_same(sharded[0], plain[0], threads == 1)
            for part in (1, 2):
                assert sharded[part].keys() == plain[part].keys()
                for key in plain[part]:
                    assert_same(sharded[part][key], plain[part][key], threads == 1)


def assert_same(got, wanted, exact):
    if exact:
        np.testing.assert_array_equal(got, wanted)
    else:
        np.testing.assert_allclose(got, wanted, rtol=1e-10, atol=1e-12)
