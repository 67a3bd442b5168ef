"""Tests of core/learn/optim.py: every optimizer against plain-formula references, purity,
pass-through of untrained keys, dtype, weight-decay rules, convergence, clipping,
saving the state, and the errors of make_optimizer."""

import copy
import math

import numpy as np
import pytest

from core.learn.optim import OPTIMIZERS, Optimizer, clip_by_global_norm, make_optimizer
from data.errors import UserError

NAMES = list(OPTIMIZERS)
TRAINED = ("fc.W", "fc.b", "bn.gamma")


def tiny_params(dtype=np.float64, seed=0):
    """A dict like a model's: two weights-ish arrays, a bias, gamma, and a running stat."""
    rng = np.random.default_rng(seed)
    return {
        "fc.W": rng.normal(size=(2, 3)).astype(dtype),
        "fc.b": rng.normal(size=3).astype(dtype),
        "bn.gamma": (1.0 + 0.1 * rng.normal(size=3)).astype(dtype),
        "bn.running_mean": rng.normal(size=3).astype(dtype),
    }


def tiny_grads(params, seed):
    """Random gradients for the trained keys only, in each parameter's dtype."""
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=params[k].shape).astype(params[k].dtype) for k in TRAINED}


# ---- independent references: one key, one step, plain formulas, float64 ------------------


def reference_run(name, params, grads_per_step, lr, wd, hyper):
    """Run ``name`` for len(grads_per_step) steps with textbook formulas; return params."""
    mu = hyper.get("momentum", 0.9)
    rho, eps = hyper.get("decay", 0.99), hyper.get("eps", 1e-8)
    b1, b2 = hyper.get("beta1", 0.9), hyper.get("beta2", 0.999)
    out = {k: v.copy() for k, v in params.items()}
    for key in TRAINED:
        p = params[key].astype(np.float64)
        vel, m, v, acc = 0.0, 0.0, 0.0, 0.0  # velocity, moments, squared-gradient accumulator
        decay = wd if key.endswith(".W") else 0.0
        for t, grads in enumerate(grads_per_step, start=1):
            g = grads[key].astype(np.float64)
            if name != "adamw":
                g = g + decay * p  # classic L2
            if name == "sgd":
                p = p - lr * g
            elif name == "momentum":  # CS231n's form: velocity in parameter units
                vel = mu * vel - lr * g
                p = p + vel
            elif name == "nesterov":  # CS231n's look-ahead form
                vel_prev = vel
                vel = mu * vel - lr * g
                p = p - mu * vel_prev + (1 + mu) * vel
            elif name == "rmsprop":
                acc = rho * acc + (1 - rho) * g**2
                p = p - lr * g / (np.sqrt(acc) + eps)
            elif name == "adagrad":
                acc = acc + g**2
                p = p - lr * g / (np.sqrt(acc) + eps)
            else:  # adam, adamw
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * g**2
                m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
                adam_step = lr * m_hat / (np.sqrt(v_hat) + eps)
                p = p - lr * decay * p - adam_step if name == "adamw" else p - adam_step
        out[key] = p
    return out


def run_steps(opt, params, grads_per_step, lr):
    """Apply opt.update once per gradient dict, steps 1, 2, ...; return (params, state)."""
    state = opt.init(params)
    for t, grads in enumerate(grads_per_step, start=1):
        params, state = opt.update(params, grads, state, t, lr)
    return params, state


# The numeric hyper-parameters each optimizer takes besides weight_decay.
HYPER_NAMES = {
    "sgd": (),
    "momentum": ("momentum",),
    "nesterov": ("momentum",),
    "rmsprop": ("decay", "eps"),
    "adagrad": ("eps",),
    "adam": ("beta1", "beta2", "eps"),
    "adamw": ("beta1", "beta2", "eps"),
}


@pytest.mark.parametrize("wd", [0.0, 0.1])
@pytest.mark.parametrize("name", NAMES)
def test_three_steps_match_the_reference(name, wd):
    hyper = {"momentum": 0.8, "decay": 0.9, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6}
    opt = make_optimizer(name, weight_decay=wd, **{k: hyper[k] for k in HYPER_NAMES[name]})
    params = tiny_params()
    grads_per_step = [tiny_grads(params, seed) for seed in (1, 2, 3)]
    got, _ = run_steps(opt, params, grads_per_step, lr=0.05)
    want = reference_run(name, params, grads_per_step, 0.05, wd, hyper)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-12, err_msg=key)
    assert not np.allclose(got["fc.W"], params["fc.W"])  # the test is not vacuous


def test_default_hyper_parameters_match_the_reference_defaults():
    params = tiny_params()
    grads_per_step = [tiny_grads(params, seed) for seed in (4, 5)]
    for name in NAMES:
        got, _ = run_steps(make_optimizer(name), params, grads_per_step, lr=0.01)
        want = reference_run(name, params, grads_per_step, 0.01, 0.0, {})
        for key in TRAINED:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-12, err_msg=f"{name} {key}")


# ---- purity, pass-through, dtype ---------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_inputs_are_not_mutated(name):
    opt = make_optimizer(name, weight_decay=0.1)
    params = tiny_params()
    state = opt.init(params)
    params, state = opt.update(params, tiny_grads(params, 1), state, 1, 0.1)  # non-zero state
    grads = tiny_grads(params, 2)
    before = copy.deepcopy((params, grads, state))
    new_params, new_state = opt.update(params, grads, state, 2, 0.1)
    for original, kept in zip((params, grads, state), before, strict=True):
        assert original.keys() == kept.keys()
        for key in kept:
            np.testing.assert_array_equal(original[key], kept[key], err_msg=key)
    for key in TRAINED:  # updated arrays are fresh, so later writes cannot reach the inputs
        assert not np.shares_memory(new_params[key], params[key])
        assert not any(np.shares_memory(new_params[key], s) for s in state.values())
    assert new_params is not params and new_state is not state


@pytest.mark.parametrize("name", NAMES)
def test_keys_without_gradient_pass_through(name):
    opt = make_optimizer(name, weight_decay=0.5)
    params = tiny_params()
    state = opt.init(params)
    new_params, new_state = opt.update(params, tiny_grads(params, 1), state, 1, 0.1)
    assert new_params.keys() == params.keys()
    assert new_params["bn.running_mean"] is params["bn.running_mean"]
    for key in new_state:
        if key.endswith("bn.running_mean"):
            assert new_state[key] is state[key]


@pytest.mark.parametrize("name", NAMES)
def test_float32_stays_float32(name):
    opt = make_optimizer(name, weight_decay=0.1)
    params = tiny_params(np.float32)
    state = opt.init(params)
    grads64 = {k: g.astype(np.float64) for k, g in tiny_grads(params, 1).items()}
    for step, grads in enumerate((tiny_grads(params, 2), grads64), start=1):
        # NumPy scalars (float64 lr, int64 step) must not upcast float32 arrays either
        params, state = opt.update(params, grads, state, np.int64(step), np.float64(0.01))
    assert all(p.dtype == np.float32 for p in params.values())
    assert all(s.dtype == np.float32 for s in state.values())


# ---- weight decay ------------------------------------------------------------------------


def zero_grads(params):
    return {k: np.zeros_like(params[k]) for k in TRAINED}


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov"])
def test_l2_decay_touches_only_weights(name):
    params = tiny_params()
    opt = make_optimizer(name, weight_decay=0.1)
    new, _ = opt.update(params, zero_grads(params), opt.init(params), 1, 0.5)
    # first step from zero velocity: p - lr * wd * p for all three (nesterov: (1 + mu) times)
    factor = 1.9 if name == "nesterov" else 1.0
    np.testing.assert_allclose(new["fc.W"], params["fc.W"] * (1 - 0.5 * 0.1 * factor))
    np.testing.assert_array_equal(new["fc.b"], params["fc.b"])
    np.testing.assert_array_equal(new["bn.gamma"], params["bn.gamma"])


def test_adamw_decay_is_decoupled_and_adam_decay_is_l2():
    params = tiny_params()
    lr, wd = 0.01, 0.1
    adamw, adam = make_optimizer("adamw", weight_decay=wd), make_optimizer("adam", weight_decay=wd)
    decoupled, _ = adamw.update(params, zero_grads(params), adamw.init(params), 1, lr)
    # AdamW: a zero gradient gives a zero adaptive step; the weights shrink by 1 - lr * wd.
    np.testing.assert_allclose(decoupled["fc.W"], params["fc.W"] * (1 - lr * wd), rtol=1e-15)
    # Adam: the L2 term wd * W goes through the normalisation, so the first step is
    # lr * sign(W) whatever wd's size.
    coupled, _ = adam.update(params, zero_grads(params), adam.init(params), 1, lr)
    np.testing.assert_allclose(
        coupled["fc.W"], params["fc.W"] - lr * np.sign(params["fc.W"]), atol=1e-6
    )  # eps / abs(wd * W) ~ 1e-6
    for new in (decoupled, coupled):
        np.testing.assert_array_equal(new["fc.b"], params["fc.b"])
        np.testing.assert_array_equal(new["bn.gamma"], params["bn.gamma"])


def test_decay_if_chooses_the_decayed_keys():
    params = tiny_params()
    opt = make_optimizer("sgd", weight_decay=0.1, decay_if=lambda key: key == "fc.b")
    new, _ = opt.update(params, zero_grads(params), {}, 1, 1.0)
    np.testing.assert_array_equal(new["fc.W"], params["fc.W"])
    np.testing.assert_allclose(new["fc.b"], 0.9 * params["fc.b"])


# ---- convergence -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, lr",
    [
        ("sgd", 0.1),
        ("momentum", 0.05),
        ("nesterov", 0.05),
        ("rmsprop", 0.01),
        ("adagrad", 0.5),
        ("adam", 0.05),
        ("adamw", 0.05),
    ],
)
def test_minimizes_a_quadratic(name, lr):
    rng = np.random.default_rng(7)
    target = {"a.W": rng.normal(size=(4, 5)), "a.b": rng.normal(size=5)}
    params = {k: np.zeros_like(t) for k, t in target.items()}
    opt = make_optimizer(name)
    state = opt.init(params)
    for step in range(1, 301):
        grads = {k: 2.0 * (params[k] - target[k]) for k in params}  # f = sum((p - target)^2)
        params, state = opt.update(params, grads, state, step, lr)
    for key in target:
        np.testing.assert_allclose(params[key], target[key], atol=1e-2, err_msg=key)


# ---- clipping ----------------------------------------------------------------------------


def test_clip_scales_to_max_norm_and_returns_pre_clip_norm():
    grads = tiny_grads(tiny_params(np.float32), 3)
    want_norm = np.linalg.norm(np.concatenate([g.ravel() for g in grads.values()]))
    clipped, norm = clip_by_global_norm(grads, 0.5)
    assert isinstance(norm, float)
    assert norm == pytest.approx(float(want_norm), rel=1e-6)
    assert norm > 0.5
    clipped_norm = math.sqrt(
        sum(float(np.sum(g.astype(np.float64) ** 2)) for g in clipped.values())
    )
    assert clipped_norm == pytest.approx(0.5, rel=1e-6)
    for key, g in grads.items():
        assert clipped[key].dtype == np.float32
        np.testing.assert_allclose(clipped[key], g * (0.5 / norm), rtol=1e-6)  # same direction


def test_clip_leaves_small_gradients_unchanged():
    grads = tiny_grads(tiny_params(), 3)
    before = copy.deepcopy(grads)
    clipped, norm = clip_by_global_norm(grads, 1e3)
    assert norm < 1e3
    for key in grads:
        np.testing.assert_array_equal(clipped[key], before[key])
        np.testing.assert_array_equal(grads[key], before[key])


def test_clip_passes_non_finite_gradients_through_with_their_norm():
    grads = {"a.W": np.array([1.0, np.inf]), "a.b": np.array([2.0])}
    clipped, norm = clip_by_global_norm(grads, 1.0)
    assert norm == math.inf
    assert clipped["a.W"] is grads["a.W"] and clipped["a.b"] is grads["a.b"]
    _, norm = clip_by_global_norm({"a.W": np.array([np.nan])}, 1.0)
    assert math.isnan(norm)


def test_clip_does_not_mutate_and_rejects_bad_max_norm():
    grads = tiny_grads(tiny_params(), 3)
    before = copy.deepcopy(grads)
    clip_by_global_norm(grads, 0.1)
    for key in grads:
        np.testing.assert_array_equal(grads[key], before[key])
    for bad in (0.0, -1.0, float("nan"), "1"):
        with pytest.raises(UserError, match="max_norm"):
            clip_by_global_norm(grads, bad)


# ---- state saving ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trips_through_npz(name, tmp_path):
    opt = make_optimizer(name)
    params = tiny_params(np.float32)
    params, state = run_steps(opt, params, [tiny_grads(params, s) for s in (1, 2)], 0.01)
    assert all(isinstance(v, np.ndarray) for v in state.values())
    path = tmp_path / "state.npz"
    np.savez(path, **state)
    with np.load(path, allow_pickle=False) as f:
        loaded = {k: f[k] for k in f.files}
    assert loaded.keys() == state.keys()
    for key in state:
        np.testing.assert_array_equal(loaded[key], state[key])
        assert loaded[key].dtype == state[key].dtype
    grads = tiny_grads(params, 9)
    a, _ = opt.update(params, grads, state, 3, 0.01)
    b, _ = opt.update(params, grads, loaded, 3, 0.01)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_state_keys_are_slot_dot_param_key():
    params = tiny_params()
    assert set(make_optimizer("adam").init(params)) == {
        f"{slot}.{key}" for slot in ("m", "v") for key in params
    }
    assert make_optimizer("sgd").init(params) == {}


# ---- the front door and its errors -------------------------------------------------------


def test_make_optimizer_binds_hyper_parameters():
    opt = make_optimizer("momentum", momentum=0.5)
    assert isinstance(opt, Optimizer) and opt.name == "momentum"
    params = tiny_params()
    grads = tiny_grads(params, 1)
    state = opt.init(params)
    _, state = opt.update(params, grads, state, 1, 0.1)
    bound, _ = opt.update(params, grads, state, 2, 0.1)
    direct, _ = OPTIMIZERS["momentum"](momentum=0.5).update(params, grads, state, 2, 0.1)
    default, _ = OPTIMIZERS["momentum"]().update(params, grads, state, 2, 0.1)
    np.testing.assert_array_equal(bound["fc.W"], direct["fc.W"])
    assert not np.array_equal(bound["fc.W"], default["fc.W"])


def test_optimizers_that_keep_the_same_slots_share_one_init():
    assert OPTIMIZERS["nesterov"]().init is OPTIMIZERS["momentum"]().init
    assert OPTIMIZERS["adamw"]().init is OPTIMIZERS["adam"]().init
    params = tiny_params()
    assert set(OPTIMIZERS["nesterov"]().init(params)) == {f"v.{key}" for key in params}


def test_the_factories_check_their_values_without_make_optimizer():
    with pytest.raises(UserError, match="optimizer 'adam': beta1"):
        OPTIMIZERS["adam"](beta1=1.0)


def test_unknown_optimizer_lists_the_known_names():
    with pytest.raises(UserError) as err:
        make_optimizer("adamax")
    assert "adamax" in str(err.value)
    assert all(name in str(err.value) for name in NAMES)


@pytest.mark.parametrize(
    "name, hyper, word",
    [
        ("sgd", {"momentum": 0.9}, "momentum"),
        ("adam", {"lr": 0.1}, "lr"),
        ("momentum", {"momentum": 1.0}, "momentum"),
        ("nesterov", {"momentum": -0.1}, "momentum"),
        ("rmsprop", {"decay": float("nan")}, "decay"),
        ("rmsprop", {"eps": 0.0}, "eps"),
        ("adagrad", {"eps": float("inf")}, "eps"),
        ("adam", {"beta1": 1.5}, "beta1"),
        ("adamw", {"beta2": "0.999"}, "beta2"),
        ("adam", {"weight_decay": -1e-4}, "weight_decay"),
        ("sgd", {"weight_decay": True}, "weight_decay"),
        ("sgd", {"decay_if": ".W"}, "decay_if"),
    ],
)
def test_bad_hyper_parameters_raise_user_error_naming_them(name, hyper, word):
    with pytest.raises(UserError, match=word):
        make_optimizer(name, **hyper)


def test_mismatched_grads_and_state_raise_value_error():
    opt = make_optimizer("adam")
    params = tiny_params()
    state = opt.init(params)
    grads = tiny_grads(params, 1)
    # a bug in the caller, not the user's mistake: a plain ValueError, not a UserError
    with pytest.raises(ValueError, match="conv9.W") as caught:
        opt.update(params, {**grads, "conv9.W": np.zeros(2)}, state, 1, 0.1)
    assert not isinstance(caught.value, UserError)
    with pytest.raises(ValueError, match=r"fc\.b.*\(2,\)"):
        opt.update(params, {**grads, "fc.b": np.zeros(2)}, state, 1, 0.1)
    with pytest.raises(ValueError, match="m.fc.W"):
        opt.update(params, grads, make_optimizer("rmsprop").init(params), 1, 0.1)


def test_adam_rejects_step_zero():
    opt = make_optimizer("adam")
    params = tiny_params()
    with pytest.raises(ValueError, match="1-based"):
        opt.update(params, tiny_grads(params, 1), opt.init(params), 0, 0.1)
