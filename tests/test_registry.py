"""One registry entry is all a new layer kind needs: validation, shapes, initialization,
summary, the walk, sharding and the gradient check all read the record, and so do folding,
pruning, quantization and the model file, for a weighted kind."""

import numpy as np
import pytest

from core.compress.prune import apply_masks, magnitude_masks, prunable_keys
from core.learn.gradcheck import check_kind, gradient_report
from core.learn.loss import softmax_cross_entropy
from data.checks import is_real
from data.errors import UserError
from model.backward import backward
from model.blueprints import validate_blueprint
from model.fold import fold_batchnorm
from model.forward import forward
from model.initialize_parameters import initialize_parameters
from model.layer_kinds import (
    GradCase,
    Hyper,
    LayerKind,
    Param,
    backward_adapter,
    forward_adapter,
)
from model.params_io import load_model, save_model
from model.quantize import calibrate, quantize_model
from model.summary import summary_table
from model.walk import KINDS


def _gain_forward(spec, p, x, train, rng):
    """out = x * g * power, per feature; g learned, power a hyper-parameter."""
    return x * p["g"] * spec["power"], (x, p["g"], spec["power"]), {}


def _gain_backward(spec, dout, cache, need_dx):
    x, g, power = cache
    return dout * g * power, {"g": (dout * x).sum(axis=0) * power}


GAIN = LayerKind(
    hyper={"power": Hyper(default=2.0, check=lambda v: is_real(v, 0), wanted="a number >= 0")},
    params=lambda spec, in_shape: {"g": Param(shape=tuple(in_shape), init="ones")},
    out_shape=lambda spec, in_shape: tuple(in_shape),
    forward=_gain_forward,
    backward=_gain_backward,
    gradcheck=(GradCase(label="gain", hyper={"power": 3.0}, in_shape=(4, 5)),),
)


@pytest.fixture
def gain_kind(monkeypatch):
    monkeypatch.setitem(KINDS, "gain", GAIN)


def net():
    return [
        {"type": "fc", "name": "f1", "units": 5},
        {"type": "gain", "name": "g1"},
        {"type": "relu"},
        {"type": "fc", "name": "f2", "units": 3},
    ]


def test_a_kind_registered_once_is_validated_initialized_and_summarized(gain_kind):
    checked = validate_blueprint(net())
    assert checked[1] == {"type": "gain", "name": "g1", "power": 2.0}  # its default filled in
    params = initialize_parameters(net(), (4,), np.random.default_rng(0))
    np.testing.assert_array_equal(params["g1.g"], np.ones(5, np.float32))
    table = summary_table(net(), (4,))
    assert list(table["type"]) == ["fc", "gain", "relu", "fc"]
    assert list(table["params"]) == [25, 5, 0, 18]
    with pytest.raises(UserError, match="g1.*'power' must be a number >= 0"):
        validate_blueprint([{"type": "gain", "name": "g1", "power": -1}])
    with pytest.raises(UserError, match=r"unknown key\(s\) \['powr'\]"):
        validate_blueprint([{"type": "gain", "name": "g1", "powr": 1}])


def test_a_kind_registered_once_trains_through_the_walk_and_its_check(gain_kind):
    rng = np.random.default_rng(0)
    params = initialize_parameters(net(), (4,), rng, dtype=np.float64)
    x = rng.standard_normal((6, 4))
    scores, caches = forward(params, x, net(), train=True)
    grads = backward(np.ones_like(scores), caches, net())
    assert grads["g1.g"].shape == (5,) and np.abs(grads["g1.g"]).sum() > 0
    errors = check_kind("gain", GAIN.gradcheck[0], rng)
    assert [name for name, _ in errors] == ["dx", "dg"]
    assert all(err < 1e-7 for _, err in errors), errors
    assert "gain" in set(gradient_report()["layer"])


def test_every_registered_kind_checks_its_gradients_within_1e_7():
    report = gradient_report()
    assert report["ok"].all(), report[~report["ok"]]
    assert set(report["layer"]) >= {
        case.label for kind in KINDS.values() for case in kind.gradcheck
    }


# -- a made-up weighted kind: its layer functions, one record and one registry line ------------


def scale_forward(x, W, b):
    """out = x * W + b, channel by channel: x (N, C, ...), W (C,), b (C,). cache = (x, W)."""
    along = (1, -1) + (1,) * (x.ndim - 2)
    return x * W.reshape(along) + b.reshape(along), (x, W)


def scale_backward(dout, cache):
    """dout like x -> (dx like x, dW (C,), db (C,)): in the order of the forward's inputs."""
    x, W = cache
    along, others = (1, -1) + (1,) * (x.ndim - 2), (0, *range(2, x.ndim))
    return dout * W.reshape(along), (dout * x).sum(axis=others), dout.sum(axis=others)


SCALE = LayerKind(
    hyper={},
    params=lambda spec, in_shape: {
        "W": Param(shape=tuple(in_shape[:1]), init="ones"),
        "b": Param(shape=tuple(in_shape[:1]), init="zeros"),
    },
    out_shape=lambda spec, in_shape: tuple(in_shape),
    forward=forward_adapter(scale_forward, ("W", "b")),
    backward=backward_adapter(scale_backward, ("W", "b")),
    gradcheck=(GradCase(label="scale", in_shape=(3, 2, 4, 3)),),
    out_axis=0,  # W (C,): its one axis is the output channels
    folds_batchnorm=True,
    pruned=True,  # and no quantized_as: it stays in float in an int8 model
)


@pytest.fixture
def scale_kind(monkeypatch):
    monkeypatch.setitem(KINDS, "scale", SCALE)  # the registry line


def scaled_net():
    return [
        {"type": "conv", "name": "c1", "filters": 3, "kernel": 3, "pad": 1},
        {"type": "scale", "name": "s1"},
        {"type": "batchnorm", "name": "n1"},
        {"type": "relu"},
        {"type": "flatten"},
        {"type": "fc", "name": "f1", "units": 4},
    ]


IN_SHAPE = (2, 5, 5)


def trained_scaled_net():
    """(params, x, y): the scaled net's float64 params after one SGD step on a batch, with
    running statistics that make its batch norm do something."""
    rng = np.random.default_rng(0)
    params = initialize_parameters(scaled_net(), IN_SHAPE, rng, dtype=np.float64)
    x, y = rng.standard_normal((8, *IN_SHAPE)), rng.integers(0, 4, 8)
    scores, caches = forward(params, x, scaled_net(), train=True)
    loss, dscores = softmax_cross_entropy(scores, y)
    grads = backward(dscores, caches, scaled_net())
    assert grads["s1.W"].shape == grads["s1.b"].shape == (3,)
    params = {k: v - 0.5 * grads[k] if k in grads else v for k, v in params.items()}
    params |= {"n1.running_mean": rng.standard_normal(3), "n1.running_var": rng.uniform(1, 2, 3)}
    assert softmax_cross_entropy(forward(params, x, scaled_net(), train=True)[0], y)[0] < loss
    return params, x, y


def test_a_weighted_kind_registered_once_initializes_trains_and_checks_its_gradients(
    scale_kind,
):
    params = initialize_parameters(scaled_net(), IN_SHAPE, np.random.default_rng(0))
    np.testing.assert_array_equal(params["s1.W"], np.ones(3, np.float32))
    assert params["c1.W"].std() > 0.1  # he before the ReLU: the scale draws no weights
    trained_scaled_net()
    errors = check_kind("scale", SCALE.gradcheck[0], np.random.default_rng(0))
    assert [name for name, _ in errors] == ["dx", "dW", "db"]
    assert all(err < 1e-7 for _, err in errors), errors


def test_a_weighted_kind_folds_is_pruned_and_quantized_as_its_record_says(scale_kind):
    params, x, _ = trained_scaled_net()
    scores = forward(params, x, scaled_net())[0]
    folded_params, folded_blueprint, folded = fold_batchnorm(
        params, validate_blueprint(scaled_net())
    )
    assert folded == ["n1"] and "n1.gamma" not in folded_params
    assert [spec["type"] for spec in folded_blueprint] == ["conv", "scale", "relu", "flatten", "fc"]
    np.testing.assert_allclose(forward(folded_params, x, folded_blueprint)[0], scores, atol=1e-12)

    assert prunable_keys(validate_blueprint(scaled_net())) == ["c1.W", "s1.W", "f1.W"]
    keys = prunable_keys(scaled_net())
    masks = magnitude_masks(params, keys, 0.5)  # the scale's W is ranked with the others
    pruned = apply_masks(params, masks)
    assert set(masks) == set(keys) and pruned["s1.W"].shape == (3,)
    zeros = sum(np.count_nonzero(pruned[k] == 0) for k in keys)
    assert zeros == round(0.5 * sum(params[k].size for k in keys))

    assert set(calibrate(folded_params, folded_blueprint, x)) == {"c1", "f1"}
    q_params, q_blueprint, _ = quantize_model(params, validate_blueprint(scaled_net()), x)
    assert [spec["type"] for spec in q_blueprint] == ["qconv", "scale", "relu", "flatten", "qfc"]
    assert q_params["c1.W"].dtype == np.int8 and q_params["s1.W"].dtype == np.float64
    q_scores = forward(q_params, x, q_blueprint)[0]
    assert np.abs(q_scores - scores).max() < 0.05 * np.abs(scores).max()


def test_a_weighted_kind_is_summarized_saved_and_loaded(scale_kind, tmp_path):
    params, _, _ = trained_scaled_net()
    table = summary_table(scaled_net(), IN_SHAPE, params)
    assert list(table["type"]) == ["conv", "scale", "batchnorm", "relu", "flatten", "fc"]
    assert list(table["params"]) == [57, 6, 12, 0, 0, 304]
    assert table["zero weights"][1] == "0.0%"
    meta = {
        "input_shape": list(IN_SHAPE),
        "dataset": "made up",
        "class_names": list("abcd"),
        "normalization": {"mean": [0.0, 0.0], "std": [1.0, 1.0]},
        "config": {"arch": "scaled"},
        "seed": 0,
    }
    path = save_model(tmp_path / "scaled.npz", params, scaled_net(), meta)
    model = load_model(path)
    assert model.blueprint == validate_blueprint(scaled_net())
    for key, value in params.items():
        np.testing.assert_array_equal(model.params[key], value.astype(np.float32))
