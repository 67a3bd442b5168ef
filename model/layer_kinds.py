"""What each layer ``type`` of a blueprint means: its parameters and its two passes.

Every kind is a ``LayerKind``:
- ``params(spec, in_shape)``: ``{local name: shape}`` of its arrays, given the
  shape of one input example (no batch axis);
- ``trainable``: the local names that get gradients (the rest, batch norm's
  running statistics, are updated by the forward pass instead);
- ``forward(spec, p, x, train, rng) -> (out, cache, new_stats)``: ``p`` holds
  the layer's arrays by local name; ``new_stats`` is ``{}`` or the updated
  running statistics;
- ``backward(spec, dout, cache, need_dx) -> (dx, {local name: gradient})``;
  ``need_dx`` is False for the first layer, whose input is the data: a layer
  may then skip computing dx (the convolution does) and return None;
- ``whole_batch``: True when the training forward must see the whole batch at
  once (batch norm's statistics; dropout, so that its random masks do not
  depend on how the batch is cut into shards). Every other layer treats the
  examples independently, so the model runs it on shards of the batch.

Hyper-parameters come from the spec (with the defaults below); arrays come
from the parameter dict. model/forward.py and model/backward.py only walk the
blueprint and call these.
"""

from collections.abc import Callable
from typing import NamedTuple

from layers import (
    avgpool_backward,
    avgpool_forward,
    batchnorm_backward,
    batchnorm_forward,
    conv_backward,
    conv_forward,
    dropout_backward,
    dropout_forward,
    fc_backward,
    fc_forward,
    flatten_backward,
    flatten_forward,
    leaky_relu_backward,
    leaky_relu_forward,
    maxpool_backward,
    maxpool_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)


class LayerKind(NamedTuple):
    required: tuple  # spec keys that must be given
    defaults: dict  # optional spec keys and their default values
    params: Callable
    trainable: tuple
    forward: Callable
    backward: Callable
    whole_batch: bool = False


def _kernel(spec):
    """(KH, KW) from ``kernel``: an int or a pair."""
    k = spec["kernel"]
    return (k, k) if isinstance(k, int) else tuple(k)


def _no_params(spec, in_shape):
    return {}


def _stateless(forward, backward, *hyper):
    """A parameter-free layer whose forward takes ``x`` and the named hyper-parameters."""

    def fwd(spec, p, x, train, rng):
        out, cache = forward(x, *(spec[h] for h in hyper))
        return out, cache, {}

    def bwd(spec, dout, cache, need_dx):
        return backward(dout, cache), {}

    return fwd, bwd


def _conv_params(spec, in_shape):
    return {"W": (spec["filters"], in_shape[0], *_kernel(spec)), "b": (spec["filters"],)}


def _conv_forward(spec, p, x, train, rng):
    out, cache = conv_forward(x, p["W"], p["b"], spec["stride"], spec["pad"])
    return out, cache, {}


def _conv_backward(spec, dout, cache, need_dx):
    dx, dW, db = conv_backward(dout, cache, need_dx)
    return dx, {"W": dW, "b": db}


def _fc_params(spec, in_shape):
    if len(in_shape) != 1:
        raise ValueError(f"needs a flat input (add a flatten layer before it), got {in_shape}")
    return {"W": (in_shape[0], spec["units"]), "b": (spec["units"],)}


def _fc_forward(spec, p, x, train, rng):
    out, cache = fc_forward(x, p["W"], p["b"])
    return out, cache, {}


def _fc_backward(spec, dout, cache, need_dx):
    dx, dW, db = fc_backward(dout, cache)
    return dx, {"W": dW, "b": db}


def _bn_params(spec, in_shape):
    c = (in_shape[0],)
    return {"gamma": c, "beta": c, "running_mean": c, "running_var": c}


def _bn_forward(spec, p, x, train, rng):
    out, mean, var, cache = batchnorm_forward(
        x,
        p["gamma"],
        p["beta"],
        p["running_mean"],
        p["running_var"],
        train,
        spec["momentum"],
        spec["eps"],
    )
    return out, cache, ({"running_mean": mean, "running_var": var} if train else {})


def _bn_backward(spec, dout, cache, need_dx):
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    return dx, {"gamma": dgamma, "beta": dbeta}


def _dropout_forward(spec, p, x, train, rng):
    out, cache = dropout_forward(x, spec["p"], rng, train)
    return out, cache, {}


def _dropout_backward(spec, dout, cache, need_dx):
    return dropout_backward(dout, cache), {}


def _stateless_kind(forward, backward, **defaults):
    fwd, bwd = _stateless(forward, backward, *defaults)
    return LayerKind((), defaults, _no_params, (), fwd, bwd)


LAYER_KINDS = {
    "conv": LayerKind(
        ("filters", "kernel"),
        {"stride": 1, "pad": 0},
        _conv_params,
        ("W", "b"),
        _conv_forward,
        _conv_backward,
    ),
    "fc": LayerKind(("units",), {}, _fc_params, ("W", "b"), _fc_forward, _fc_backward),
    "batchnorm": LayerKind(
        (),
        {"momentum": 0.9, "eps": 1e-5},
        _bn_params,
        ("gamma", "beta"),
        _bn_forward,
        _bn_backward,
        whole_batch=True,
    ),
    "dropout": LayerKind(
        ("p",), {}, _no_params, (), _dropout_forward, _dropout_backward, whole_batch=True
    ),
    "maxpool": _stateless_kind(maxpool_forward, maxpool_backward, size=2, stride=2),
    "avgpool": _stateless_kind(avgpool_forward, avgpool_backward, size=2, stride=2),
    "relu": _stateless_kind(relu_forward, relu_backward),
    "leaky_relu": _stateless_kind(leaky_relu_forward, leaky_relu_backward, alpha=0.01),
    "sigmoid": _stateless_kind(sigmoid_forward, sigmoid_backward),
    "tanh": _stateless_kind(tanh_forward, tanh_backward),
    "flatten": _stateless_kind(flatten_forward, flatten_backward),
}
