"""One registry entry is all a new layer kind needs: validation, shapes, initialization,
summary, the walk, sharding and the gradient check all read the record."""

import numpy as np
import pytest

from core.learn.gradcheck import check_kind, gradient_report
from data.checks import is_real
from data.errors import UserError
from model.backward import backward
from model.blueprints import validate_blueprint
from model.forward import forward
from model.initialize_parameters import initialize_parameters
from model.layer_kinds import GradCase, Hyper, LayerKind, Param
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
