"""Optimizers as pure functions on flat parameter dicts.

Each optimizer is a pair ``init_<name>(params) -> state`` and
``<name>_update(params, grads, state, step, lr, **hyper) -> (params, state)``.
``make_optimizer(name, **hyper)`` checks the hyper-parameters once and returns an
``Optimizer(name, init, update)`` whose ``update(params, grads, state, step, lr)``
has them bound.

Conventions shared by every optimizer:

- ``params``: ``{"conv1.W": array, "bn1.running_mean": array, ...}``; ``grads``
  holds only the trained keys. A key not in ``grads`` (running statistics) is
  passed through untouched: the very same array object.
- Nothing passed in is mutated. The returned dicts are new; the arrays of
  updated keys are freshly allocated (the other arrays are shared).
- ``state``: a flat dict of arrays named ``"<slot>.<param key>"`` (e.g.
  ``"m.conv1.W"``), each shaped and typed like its parameter, so it saves to
  ``.npz`` beside the parameters and loads back with ``allow_pickle=False``.
  ``init_*`` makes a zero slot for every key of the dict it is given (slots of
  keys that never get a gradient simply stay zero).
- ``step``: the 1-based number of this update (Adam's bias correction uses it).
- dtype: the arithmetic runs in each parameter's dtype (a float64 gradient is
  cast to a float32 parameter's dtype); scalars are Python floats, which NumPy
  never lets upcast a float32 array.
- Weight decay (``weight_decay=0``) touches only the keys for which
  ``decay_if(key)`` is true; the default ``is_weight`` picks keys ending in
  ``".W"`` (conv and dense weights), never biases or batch-norm gamma/beta.
  It is classic L2 (``wd * param`` added to the gradient) in every optimizer
  except ``adamw``, which decays the weights directly (``param -= lr * wd *
  param``), decoupled from the adaptive step.
"""

import functools
import inspect
import math
from collections.abc import Callable
from numbers import Real
from typing import NamedTuple

import numpy as np

from data.errors import UserError


class Optimizer(NamedTuple):
    """An optimizer with its hyper-parameters bound.

    name:   the registry name, e.g. ``"adam"``.
    init:   ``init(params) -> state`` (zero slots shaped like the parameters).
    update: ``update(params, grads, state, step, lr) -> (params, state)``.
    """

    name: str
    init: Callable
    update: Callable


def is_weight(key):
    """The default weight-decay rule: True for keys ending in ``".W"``.

    key: a parameter name such as ``"conv1.W"`` (True) or ``"bn1.gamma"`` (False).
    """
    return key.endswith(".W")


# ---- shared machinery ---------------------------------------------------


def _zero_slots(params, slots):
    """State with one zero array per (slot, parameter), shaped and typed like it."""
    return {f"{slot}.{key}": np.zeros_like(p) for slot in slots for key, p in params.items()}


def _apply(params, grads, state, slots, kernel, weight_decay, decay_if):
    """Run ``kernel`` on every trained key; return the new (params, state) dicts.

    kernel(p, g, wd, *old_slots) -> (new_p, *new_slots): ``g`` is already in
    ``p``'s dtype, ``wd`` is this key's weight decay (0.0 where ``decay_if`` is
    false). The kernel must not write into ``p``, ``g`` or the old slots.
    """
    unknown = grads.keys() - params.keys()
    if unknown:
        raise UserError(
            f"gradients for {sorted(unknown)} have no parameter; the gradient dict must "
            "use the keys of the parameter dict"
        )
    new_params, new_state = dict(params), dict(state)
    for key, g in grads.items():
        p = params[key]
        if g.shape != p.shape:
            raise UserError(
                f"gradient of '{key}' has shape {g.shape} but the parameter has shape {p.shape}"
            )
        names = [f"{slot}.{key}" for slot in slots]
        missing = [n for n in names if n not in state]
        if missing:
            raise UserError(
                f"optimizer state has no {missing}: it was made for other parameters or "
                "another optimizer; build it with this optimizer's init(params)"
            )
        wd = weight_decay if weight_decay and decay_if(key) else 0.0
        new_p, *new_slots = kernel(p, g.astype(p.dtype, copy=False), wd, *(state[n] for n in names))
        new_params[key] = new_p
        new_state.update(zip(names, new_slots, strict=True))
    return new_params, new_state


def _with_l2(g, p, wd):
    """``g + wd * p`` as a new array, or ``g`` itself (not to be written) when wd is 0."""
    if not wd:
        return g
    out = np.multiply(p, wd)
    out += g
    return out


def _descend(p, direction, lr, out=None):
    """``p - lr * direction``, written into ``out`` (pass ``out=direction`` when that
    array is a fresh temporary: one allocation fewer) or into a new array."""
    out = np.multiply(direction, lr, out=out)
    return np.subtract(p, out, out=out)


# ---- the optimizers -------------------------------------------------------


def init_sgd(params):
    """Plain SGD keeps no state: returns ``{}``. params: dict of arrays (unused)."""
    return {}


def sgd_update(params, grads, state, step, lr, *, weight_decay=0.0, decay_if=is_weight):
    """``p -= lr * (g + wd * p)``.

    params, grads, state: dicts as in the module docstring; step: 1-based (unused);
    lr: float learning rate. Returns (new params, new state).
    """
    lr = float(lr)

    def kernel(p, g, wd):
        direction = _with_l2(g, p, wd)
        # the caller's g must not be written; a fresh L2 sum may be
        return (_descend(p, direction, lr, out=None if direction is g else direction),)

    return _apply(params, grads, state, (), kernel, float(weight_decay), decay_if)


def init_momentum(params):
    """Velocity slots ``"v.<key>"``, zeros like each parameter. params: dict of arrays."""
    return _zero_slots(params, ("v",))


def momentum_update(
    params, grads, state, step, lr, *, momentum=0.9, weight_decay=0.0, decay_if=is_weight
):
    """Heavy-ball momentum: ``v = momentum * v + g``; ``p -= lr * v``.

    The velocity is kept in gradient units (PyTorch's form), so a change of ``lr``
    by the schedule takes effect at once. With a constant ``lr`` this equals
    CS231n's ``v = mu * v - lr * g; p += v``. Arguments and return as ``sgd_update``.
    """
    lr, mu = float(lr), float(momentum)

    def kernel(p, g, wd, v_old):
        v = np.multiply(v_old, mu)
        v += _with_l2(g, p, wd)
        return _descend(p, v, lr), v

    return _apply(params, grads, state, ("v",), kernel, float(weight_decay), decay_if)


def init_nesterov(params):
    """Velocity slots ``"v.<key>"`` as in ``init_momentum``. params: dict of arrays."""
    return _zero_slots(params, ("v",))


def nesterov_update(
    params, grads, state, step, lr, *, momentum=0.9, weight_decay=0.0, decay_if=is_weight
):
    """Nesterov momentum: ``v = momentum * v + g``; ``p -= lr * (g + momentum * v)``.

    The step looks ahead along the new velocity (Sutskever et al. 2013, in
    PyTorch's form). Arguments and return as ``sgd_update``.
    """
    lr, mu = float(lr), float(momentum)

    def kernel(p, g, wd, v_old):
        g = _with_l2(g, p, wd)
        v = np.multiply(v_old, mu)
        v += g
        direction = np.multiply(v, mu)
        direction += g
        return _descend(p, direction, lr, out=direction), v

    return _apply(params, grads, state, ("v",), kernel, float(weight_decay), decay_if)


def init_rmsprop(params):
    """Mean-square slots ``"sq.<key>"``, zeros like each parameter. params: dict of arrays."""
    return _zero_slots(params, ("sq",))


def rmsprop_update(
    params, grads, state, step, lr, *, decay=0.99, eps=1e-8, weight_decay=0.0, decay_if=is_weight
):
    """RMSprop: ``sq = decay * sq + (1 - decay) * g**2``; ``p -= lr * g / (sqrt(sq) + eps)``.

    Arguments and return as ``sgd_update``.
    """
    lr, rho, eps = float(lr), float(decay), float(eps)

    def kernel(p, g, wd, sq_old):
        g = _with_l2(g, p, wd)
        sq = np.multiply(sq_old, rho)
        scratch = np.multiply(g, g)
        scratch *= 1.0 - rho
        sq += scratch
        np.sqrt(sq, out=scratch)
        scratch += eps
        np.divide(g, scratch, out=scratch)
        return _descend(p, scratch, lr, out=scratch), sq

    return _apply(params, grads, state, ("sq",), kernel, float(weight_decay), decay_if)


def init_adagrad(params):
    """Sum-of-squares slots ``"sum_sq.<key>"``, zeros like each parameter. params: dict."""
    return _zero_slots(params, ("sum_sq",))


def adagrad_update(
    params, grads, state, step, lr, *, eps=1e-8, weight_decay=0.0, decay_if=is_weight
):
    """Adagrad: ``sum_sq += g**2``; ``p -= lr * g / (sqrt(sum_sq) + eps)``.

    Arguments and return as ``sgd_update``.
    """
    lr, eps = float(lr), float(eps)

    def kernel(p, g, wd, sum_sq_old):
        g = _with_l2(g, p, wd)
        sum_sq = np.multiply(g, g)
        sum_sq += sum_sq_old
        scratch = np.sqrt(sum_sq)
        scratch += eps
        np.divide(g, scratch, out=scratch)
        return _descend(p, scratch, lr, out=scratch), sum_sq

    return _apply(params, grads, state, ("sum_sq",), kernel, float(weight_decay), decay_if)


def init_adam(params):
    """First- and second-moment slots ``"m.<key>"``, ``"v.<key>"``, zeros. params: dict."""
    return _zero_slots(params, ("m", "v"))


def _adam(params, grads, state, step, lr, beta1, beta2, eps, weight_decay, decay_if, decoupled):
    """Adam's update; ``decoupled`` picks AdamW's weight decay over L2."""
    if step < 1:
        raise ValueError(
            f"Adam's step is 1-based (bias correction divides by 1 - beta^step); got {step}"
        )
    lr, b1, b2, eps = float(lr), float(beta1), float(beta2), float(eps)
    # lr * m_hat / (sqrt(v_hat) + eps) == step_size * m / (sqrt(v) + eps_hat): the bias
    # corrections fold into two scalars, saving two array passes.
    root_bc2 = math.sqrt(1.0 - b2**step)
    step_size = float(lr * root_bc2 / (1.0 - b1**step))  # a Python float: never upcasts
    eps_hat = eps * root_bc2

    def kernel(p, g, wd, m_old, v_old):
        if not decoupled:
            g = _with_l2(g, p, wd)
        m = np.multiply(m_old, b1)
        scratch = np.multiply(g, 1.0 - b1)
        m += scratch
        v = np.multiply(v_old, b2)
        np.multiply(g, g, out=scratch)
        scratch *= 1.0 - b2
        v += scratch
        np.sqrt(v, out=scratch)
        scratch += eps_hat
        np.divide(m, scratch, out=scratch)
        scratch *= step_size
        if decoupled and wd:
            new_p = np.multiply(p, 1.0 - lr * wd)  # decay from the old weights
            new_p -= scratch
        else:
            new_p = np.subtract(p, scratch, out=scratch)
        return new_p, m, v

    return _apply(params, grads, state, ("m", "v"), kernel, float(weight_decay), decay_if)


def adam_update(
    params,
    grads,
    state,
    step,
    lr,
    *,
    beta1=0.9,
    beta2=0.999,
    eps=1e-8,
    weight_decay=0.0,
    decay_if=is_weight,
):
    """Adam (Kingma & Ba 2015) with L2 weight decay added to the gradient.

    ``m = b1 m + (1-b1) g``; ``v = b2 v + (1-b2) g**2``;
    ``p -= lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - b1**step)``,
    ``v_hat = v / (1 - b2**step)``. step: 1-based, >= 1 (ValueError otherwise).
    Other arguments and return as ``sgd_update``.
    """
    return _adam(params, grads, state, step, lr, beta1, beta2, eps, weight_decay, decay_if, False)


def init_adamw(params):
    """Moment slots as in ``init_adam``. params: dict of arrays."""
    return _zero_slots(params, ("m", "v"))


def adamw_update(
    params,
    grads,
    state,
    step,
    lr,
    *,
    beta1=0.9,
    beta2=0.999,
    eps=1e-8,
    weight_decay=0.0,
    decay_if=is_weight,
):
    """AdamW (Loshchilov & Hutter 2019): Adam plus ``p -= lr * weight_decay * p``.

    The decay is applied to the weights themselves, not through the adaptive
    denominator, so every decayed weight shrinks by the same factor
    ``1 - lr * weight_decay`` per step. Arguments and return as ``adam_update``.
    """
    return _adam(params, grads, state, step, lr, beta1, beta2, eps, weight_decay, decay_if, True)


OPTIMIZERS = {
    "sgd": (init_sgd, sgd_update),
    "momentum": (init_momentum, momentum_update),
    "nesterov": (init_nesterov, nesterov_update),
    "rmsprop": (init_rmsprop, rmsprop_update),
    "adagrad": (init_adagrad, adagrad_update),
    "adam": (init_adam, adam_update),
    "adamw": (init_adamw, adamw_update),
}

# The valid values of each numeric hyper-parameter: (description, test of a finite number).
_HYPER_RANGES = {
    "momentum": ("in [0, 1)", lambda x: 0 <= x < 1),
    "decay": ("in [0, 1)", lambda x: 0 <= x < 1),
    "beta1": ("in [0, 1)", lambda x: 0 <= x < 1),
    "beta2": ("in [0, 1)", lambda x: 0 <= x < 1),
    "eps": ("> 0", lambda x: x > 0),
    "weight_decay": (">= 0", lambda x: x >= 0),
}


def _check_hyper(name, key, value):
    """Raise UserError unless ``value`` is a valid setting of hyper-parameter ``key``."""
    if key == "decay_if":
        if not callable(value):
            raise UserError(
                f"optimizer '{name}': decay_if must be a function key -> bool, got {value!r}"
            )
        return
    rule, test = _HYPER_RANGES[key]
    if isinstance(value, bool) or not isinstance(value, Real):
        raise UserError(f"optimizer '{name}': {key} must be a number {rule}, got {value!r}")
    if not (math.isfinite(value) and test(value)):
        raise UserError(f"optimizer '{name}': {key}={value!r} is invalid; it must be {rule}")


def make_optimizer(name, **hyper):
    """The optimizer ``name`` with its hyper-parameters checked and bound.

    name:  one of ``OPTIMIZERS`` ("sgd", "momentum", "nesterov", "rmsprop",
           "adagrad", "adam", "adamw").
    hyper: keyword hyper-parameters of ``<name>_update`` (defaults otherwise),
           e.g. ``make_optimizer("adamw", weight_decay=5e-4)``.
    Returns an ``Optimizer(name, init, update)``.
    Raises UserError for an unknown name, an unknown hyper-parameter or a value
    out of range (momentum, decay, beta1, beta2 in [0, 1); eps > 0; weight_decay >= 0).
    """
    if name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer '{name}'; choose one of {', '.join(OPTIMIZERS)}")
    init, update = OPTIMIZERS[name]
    allowed = [
        p.name
        for p in inspect.signature(update).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    for key, value in hyper.items():
        if key not in allowed:
            raise UserError(
                f"optimizer '{name}' has no hyper-parameter '{key}'; it takes {', '.join(allowed)}"
            )
        _check_hyper(name, key, value)
    return Optimizer(name, init, functools.partial(update, **hyper))


def clip_by_global_norm(grads, max_norm):
    """Scale all gradients together so that their joint L2 norm is at most ``max_norm``.

    grads:    dict of arrays (any shapes, float dtype).
    max_norm: float > 0.
    Returns (clipped grads, norm): a new dict whose arrays are the inputs times
    ``min(1, max_norm / norm)`` (the same array objects when no scaling is
    needed), and the pre-clip global norm ``sqrt(sum of all g**2)`` as a Python
    float. A non-finite norm (an inf or nan gradient) is returned with the
    gradients unchanged, for the caller to detect.
    Raises UserError if max_norm is not a positive number.
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, Real) or not max_norm > 0:
        raise UserError(f"clip max_norm must be a positive number, got {max_norm!r}")
    # Summed in float64: float32 squares of large gradients could overflow.
    norm = math.sqrt(
        sum(
            float(np.dot(f, f))
            for f in (g.astype(np.float64, copy=False).ravel() for g in grads.values())
        )
    )
    if not math.isfinite(norm) or norm <= max_norm:
        return dict(grads), norm
    scale = float(max_norm) / norm
    return {key: g * scale for key, g in grads.items()}, norm
