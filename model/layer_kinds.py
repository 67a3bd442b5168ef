"""What each layer ``type`` of a blueprint means: one record per kind, built with keywords.

A ``LayerKind`` holds everything the program knows about a kind:
- ``hyper``: its hyper-parameters, each a ``Hyper`` with its default (or
  ``REQUIRED``) and the check of its value;
- ``params(spec, in_shape) -> {local name: Param}``: its arrays' shapes and
  how to initialize them, given one input example's shape (no batch axis);
- ``out_shape(spec, in_shape)``: one output example's shape, by arithmetic
  on the shapes (ValueError when the input does not fit);
- ``forward(spec, p, x, train, rng) -> (out, cache, new_stats)`` and
  ``backward(spec, dout, cache, need_dx) -> (dx, {local name: gradient})``: the
  adapters between a spec and the layer's functions in ``layers/``. ``p`` holds the
  layer's arrays by local name; ``new_stats`` is ``{}`` or batch norm's updated
  running statistics; ``need_dx`` is False for a network's first layer (the
  convolution then skips dx and returns None). Most are made by
  ``forward_adapter`` and ``backward_adapter`` from the layer's function pair, whose
  backward returns its gradients in the order of the forward's inputs;
- ``forward_parts(spec, p, parts, rng, map_parts) -> (out parts, cache, new_stats)``
  and ``backward_parts(spec, dout parts, cache, need_dx, map_parts) -> (dx parts
  or None, {local name: gradient})``: for a kind whose training forward must see
  the whole batch (batch norm's statistics; dropout, so that its masks do not
  depend on how the batch is cut), the same layer on a batch held as parts cut
  along its first axis, one per worker thread (model/shards.py), with the
  per-part work run by ``map_parts`` (layers/parts.py). Such a kind is
  ``whole_batch``;
- ``gradcheck``: the small cases its finite-difference check runs
  (core/learn/gradcheck.py);
- ``init_rule``: for an activation, how the weights of the layer before it
  are scaled ("he" before ReLU, "glorot" before sigmoid and tanh).

What the rest of the program asks of a kind is in its record too, so that no code
outside the records tests a layer's type by name:
- ``out_axis``: for a weighted kind (its weight ``W`` multiplies the input, ``b`` is
  added), the axis of ``W`` that indexes the output channels (conv 0, fc 1);
- ``folds_batchnorm``: a batch norm right after it joins its ``W`` and ``b`` for
  inference (model/fold.py); ``eval_affine``: for batch norm, its evaluation form as a
  per-channel affine map, what folding needs;
- ``pruned``: magnitude pruning ranks its ``W`` (core/compress/prune.py);
- ``quantized_as``: the type of the int8 kind that replaces it (model/quantize.py);
  ``quantized``: it is such an int8 kind, so its model runs inference only;
- ``pools``: it pools its maps, so Grad-CAM looks at the maps before it;
- ``image_filters``: as a network's first layer, its ``W`` (F, C, KH, KW) are filters
  over the picture, drawn as images.

Composite kinds (a residual node, whose body is itself a blueprint) are
records of the same form, defined with the walk in model/walk.py.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data.checks import is_real, is_whole
from layers import (
    avgpool_backward,
    avgpool_forward,
    batchnorm_backward,
    batchnorm_backward_parts,
    batchnorm_forward,
    batchnorm_forward_parts,
    conv_backward,
    conv_forward,
    dropout_backward,
    dropout_forward,
    dropout_forward_parts,
    fc_backward,
    fc_forward,
    flatten_backward,
    flatten_forward,
    global_avgpool_backward,
    global_avgpool_forward,
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
from layers.arraylib import array_module
from layers.conv import conv_output_size
from layers.pool import pool_output_size

REQUIRED = object()  # the default of a hyper-parameter that every spec must give


@dataclass(frozen=True, kw_only=True)
class Hyper:
    """One hyper-parameter: its default (or REQUIRED) and the check of a value."""

    default: Any = REQUIRED
    check: Any = None  # value -> bool
    wanted: str = ""  # what a valid value is, for the error message


@dataclass(frozen=True, kw_only=True)
class Param:
    """One array of a layer: its shape and initialization.

    init: "weight" (normal, scaled by the activation that follows: see
    model/initialize_parameters.py), "zeros" or "ones". Arrays that are not
    trainable (batch norm's running statistics) get no gradient and are
    updated by the forward pass instead.
    dtype: "float" (any floating type in a file, float32 in memory) or "int8" (a
    quantized layer's weights, exactly int8 in [-127, 127]); positive: every value must be
    > 0 (a quantization scale); non_negative: every value must be >= 0 (a running
    variance). model/params_io.py checks them when it loads a file.
    """

    shape: tuple
    init: str
    trainable: bool = True
    dtype: str = "float"
    positive: bool = False
    non_negative: bool = False


@dataclass(frozen=True, kw_only=True)
class GradCase:
    """A finite-difference case: hyper-parameters, the input's shape (batch axis
    included), and ``distinct`` inputs (no ties, away from 0) for kinks like max and ReLU."""

    label: str
    hyper: dict = field(default_factory=dict)
    in_shape: tuple
    distinct: bool = False


@dataclass(frozen=True, kw_only=True)
class LayerKind:
    """Everything the program knows about one layer type (the module docstring says each field)."""

    hyper: dict
    out_shape: Any  # (spec, in_shape) -> out_shape
    forward: Any  # (spec, p, x, train, rng) -> (out, cache, new_stats)
    backward: Any  # (spec, dout, cache, need_dx) -> (dx, {local name: gradient})
    gradcheck: tuple
    params: Any = None  # (spec, in_shape) -> {local name: Param}; None: no arrays
    forward_parts: Any = None  # training on a batch held as parts: see the module docstring
    backward_parts: Any = None
    nested: tuple = ()  # spec keys that hold blueprints (composite kinds)
    init_rule: str | None = None  # activations: how it scales the weights before it ("he", ...)
    out_axis: int | None = None  # weighted kinds: the output-channel axis of W
    folds_batchnorm: bool = False  # a batch norm right after it folds into its W and b
    eval_affine: Any = None  # batch norm: (spec, p) -> (mean, scale, shift), see _bn_eval_affine
    pruned: bool = False  # magnitude pruning ranks its W
    quantized_as: str | None = None  # the type of its int8 kind
    quantized: bool = False  # an int8 kind: inference only
    pools: bool = False  # pools its maps away: Grad-CAM looks at the maps before it
    image_filters: bool = False  # as the first layer, its W are filters drawn as pictures

    def __post_init__(self):
        if self.folds_batchnorm and not self.weighted:
            raise ValueError(
                "a kind that folds a batch norm needs out_axis, the axis of W it scales"
            )

    @property
    def whole_batch(self):
        """True when the training forward must see the whole batch (it has forward_parts)."""
        return self.forward_parts is not None

    @property
    def weighted(self):
        """True when its weight ``W`` multiplies the input (it has an output-channel axis)."""
        return self.out_axis is not None

    def param_specs(self, spec, in_shape):
        """``{local name: Param}`` of a layer fed examples of ``in_shape``."""
        return self.params(spec, in_shape) if self.params else {}

    def along_out_channels(self, values, ndim):
        """``values`` (channels,) shaped to broadcast along the output-channel axis of a
        weight with ``ndim`` axes: conv (F,) -> (F, 1, 1, 1), fc (M,) -> (1, M)."""
        shape = [1] * ndim
        shape[self.out_axis] = -1
        return values.reshape(shape)


def forward_adapter(layer_forward, weights=(), keywords=()):
    """The record's ``forward`` for ``layer_forward(x, *weights, **keywords) -> (out, cache)``.

    weights: the local names of the layer's arrays, in the order the function takes them
    (("W", "b")); keywords: the hyper-parameters it takes by name, read from the spec.
    """

    def forward(spec, p, x, train, rng):
        arrays = [p[name] for name in weights]
        out, cache = layer_forward(x, *arrays, **{key: spec[key] for key in keywords})
        return out, cache, {}

    return forward


def backward_adapter(layer_backward, weights=(), takes_need_dx=False):
    """The record's ``backward`` for ``layer_backward(dout, cache) -> dx`` (no weights) or
    ``-> (dx, *weight gradients)``, the gradients in the order of the forward's inputs, so
    that they zip with ``weights``. takes_need_dx: the function takes ``need_dx`` (the
    conv's skips dx for a network's first layer)."""

    def backward(spec, dout, cache, need_dx):
        if takes_need_dx:
            grads = layer_backward(dout, cache, need_dx=need_dx)
        else:
            grads = layer_backward(dout, cache)
        if not weights:
            return grads, {}
        dx, *dweights = grads
        return dx, dict(zip(weights, dweights, strict=True))

    return backward


def whole(minimum, default=REQUIRED):
    """A hyper-parameter that is a whole number >= minimum."""
    return Hyper(
        default=default,
        check=lambda v: is_whole(v, minimum),
        wanted=f"a whole number >= {minimum}",
    )


def fraction(default=REQUIRED, low=0.0, high=1.0):
    """A hyper-parameter that is a number in [low, high)."""
    return Hyper(
        default=default,
        check=lambda v: is_real(v, low, high, high_open=True),
        wanted=f"a number in [{low:g}, {high:g})",
    )


def _is_kernel(value):
    return is_whole(value, 1) or (
        isinstance(value, list | tuple) and len(value) == 2 and all(is_whole(k, 1) for k in value)
    )


def kernel_size(spec):
    """(KH, KW) from a conv spec's ``kernel``: an int or a pair."""
    k = spec["kernel"]
    return (k, k) if is_whole(k) else tuple(k)


def _same_shape(spec, in_shape):
    return tuple(in_shape)


# -- convolution ------------------------------------------------------------------------


def _conv_weight_shape(spec, in_shape):
    """(F, C/groups, KH, KW)"""
    return (spec["filters"], in_shape[0] // spec["groups"], *kernel_size(spec))


def _conv_params(spec, in_shape):
    return {
        "W": Param(shape=_conv_weight_shape(spec, in_shape), init="weight"),
        "b": Param(shape=(spec["filters"],), init="zeros"),
    }


def _conv_out_shape(spec, in_shape):
    if len(in_shape) != 3:
        raise ValueError(f"needs images (C, H, W), got examples of shape {tuple(in_shape)}")
    w_shape = _conv_weight_shape(spec, in_shape)
    ho, wo = conv_output_size(in_shape, w_shape, spec["stride"], spec["pad"], spec["groups"])
    return (spec["filters"], ho, wo)


CONV = LayerKind(
    hyper={
        "filters": whole(1),
        "kernel": Hyper(check=_is_kernel, wanted="a whole number >= 1 or a pair of them"),
        "stride": whole(1, default=1),
        "pad": whole(0, default=0),
        "groups": whole(1, default=1),
    },
    params=_conv_params,
    out_shape=_conv_out_shape,
    forward=forward_adapter(conv_forward, ("W", "b"), ("stride", "pad", "groups")),
    backward=backward_adapter(conv_backward, ("W", "b"), takes_need_dx=True),
    out_axis=0,
    folds_batchnorm=True,
    pruned=True,
    quantized_as="qconv",
    image_filters=True,
    gradcheck=(
        GradCase(
            label="conv 3x3 s1 p1",
            hyper={"filters": 4, "kernel": 3, "pad": 1},
            in_shape=(2, 3, 6, 5),
        ),
        GradCase(
            label="conv 3x2 s2 p2",
            hyper={"filters": 3, "kernel": [3, 2], "stride": 2, "pad": 2},
            in_shape=(2, 2, 7, 6),
        ),
        GradCase(
            label="conv 3x3 groups 2",
            hyper={"filters": 4, "kernel": 3, "pad": 1, "groups": 2},
            in_shape=(2, 4, 5, 5),
        ),
        GradCase(
            label="conv depthwise 3x3 s2 p1",
            hyper={"filters": 3, "kernel": 3, "stride": 2, "pad": 1, "groups": 3},
            in_shape=(2, 3, 6, 7),
        ),
    ),
)

# -- fully connected ----------------------------------------------------------------------


def _fc_params(spec, in_shape):
    return {
        "W": Param(shape=(in_shape[0], spec["units"]), init="weight"),
        "b": Param(shape=(spec["units"],), init="zeros"),
    }


def _fc_out_shape(spec, in_shape):
    if len(in_shape) != 1:
        raise ValueError(
            f"needs flat examples (D,), got {tuple(in_shape)}: put a flatten layer before it, "
            "or, for a network of vectors such as mlp, give the vectors' input shape "
            "(e.g. --input-shape 2)"
        )
    return (spec["units"],)


FC = LayerKind(
    hyper={"units": whole(1)},
    params=_fc_params,
    out_shape=_fc_out_shape,
    forward=forward_adapter(fc_forward, ("W", "b")),
    backward=backward_adapter(fc_backward, ("W", "b")),
    out_axis=1,
    folds_batchnorm=True,
    pruned=True,
    quantized_as="qfc",
    gradcheck=(GradCase(label="fc", hyper={"units": 4}, in_shape=(3, 7)),),
)

# -- batch normalization -------------------------------------------------------------------


def _bn_params(spec, in_shape):
    c = (in_shape[0],)
    return {
        "gamma": Param(shape=c, init="ones"),
        "beta": Param(shape=c, init="zeros"),
        "running_mean": Param(shape=c, init="zeros", trainable=False),
        "running_var": Param(shape=c, init="ones", trainable=False, non_negative=True),
    }


def _bn_out_shape(spec, in_shape):
    if len(in_shape) not in (1, 3):
        raise ValueError(f"needs (D,) vectors or (C, H, W) images, got {tuple(in_shape)}")
    return tuple(in_shape)


def _bn_forward(spec, p, x, train, rng):
    out, mean, var, cache = batchnorm_forward(
        x,
        p["gamma"],
        p["beta"],
        p["running_mean"],
        p["running_var"],
        train,
        momentum=spec["momentum"],
        eps=spec["eps"],
    )
    return out, cache, ({"running_mean": mean, "running_var": var} if train else {})


def _bn_forward_parts(spec, p, parts, rng, map_parts):
    outs, mean, var, caches = batchnorm_forward_parts(
        parts,
        p["gamma"],
        p["beta"],
        p["running_mean"],
        p["running_var"],
        momentum=spec["momentum"],
        eps=spec["eps"],
        map_parts=map_parts,
    )
    return outs, caches, {"running_mean": mean, "running_var": var}


def _bn_backward_parts(spec, douts, caches, need_dx, map_parts):
    dxs, dgamma, dbeta = batchnorm_backward_parts(douts, caches, need_dx, map_parts)
    return dxs, {"gamma": dgamma, "beta": dbeta}


def _bn_eval_affine(spec, p):
    """(mean, scale, shift), float64 (C,): in evaluation mode batch norm is
    ``(x - mean) * scale + shift``, with scale = gamma / sqrt(running_var + eps)."""
    gamma, beta, mean, var = (
        p[k].astype(np.float64) for k in ("gamma", "beta", "running_mean", "running_var")
    )
    return mean, gamma / array_module(var).sqrt(var + spec["eps"]), beta


BATCHNORM = LayerKind(
    hyper={
        "momentum": fraction(default=0.9),
        "eps": Hyper(
            default=1e-5,
            check=lambda v: is_real(v, 1e-12, 1, high_open=True),
            wanted="a small positive number",
        ),
    },
    params=_bn_params,
    out_shape=_bn_out_shape,
    forward=_bn_forward,
    backward=backward_adapter(batchnorm_backward, ("gamma", "beta")),
    forward_parts=_bn_forward_parts,
    backward_parts=_bn_backward_parts,
    eval_affine=_bn_eval_affine,
    gradcheck=(
        GradCase(label="batchnorm (N, D)", in_shape=(5, 4)),
        GradCase(label="batchnorm (N, C, H, W)", in_shape=(3, 2, 3, 2)),
    ),
)

# -- dropout --------------------------------------------------------------------------------


def _dropout_forward(spec, p, x, train, rng):
    out, cache = dropout_forward(x, spec["p"], rng, train)
    return out, cache, {}


def _dropout_forward_parts(spec, p, parts, rng, map_parts):
    outs, masks = dropout_forward_parts(parts, spec["p"], rng, map_parts)
    return outs, masks, {}


def _dropout_backward_parts(spec, douts, masks, need_dx, map_parts):
    pairs = list(zip(douts, masks, strict=True))
    return map_parts(lambda pair: dropout_backward(*pair), pairs), {}


DROPOUT = LayerKind(
    hyper={"p": fraction()},
    out_shape=_same_shape,
    forward=_dropout_forward,
    backward=backward_adapter(dropout_backward),
    forward_parts=_dropout_forward_parts,
    backward_parts=_dropout_backward_parts,
    gradcheck=(GradCase(label="dropout p=0.3", hyper={"p": 0.3}, in_shape=(4, 6)),),
)

# -- pooling --------------------------------------------------------------------------------


def _pool_kind(name, forward, backward, cases):
    def out_shape(spec, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"needs images (C, H, W), got examples of shape {tuple(in_shape)}")
        ho, wo = pool_output_size((1, *in_shape), spec["size"], spec["stride"], name)
        return (in_shape[0], ho, wo)

    return LayerKind(
        hyper={"size": whole(1, default=2), "stride": whole(1, default=2)},
        out_shape=out_shape,
        forward=forward_adapter(forward, keywords=("size", "stride")),
        backward=backward_adapter(backward),
        gradcheck=cases,
        pools=True,
    )


MAXPOOL = _pool_kind(
    "maxpool",
    maxpool_forward,
    maxpool_backward,
    (
        GradCase(label="maxpool 2/2", in_shape=(2, 3, 6, 4), distinct=True),
        GradCase(
            label="maxpool 3/2",
            hyper={"size": 3, "stride": 2},
            in_shape=(2, 2, 7, 7),
            distinct=True,
        ),
    ),
)
AVGPOOL = _pool_kind(
    "avgpool",
    avgpool_forward,
    avgpool_backward,
    (GradCase(label="avgpool 2/2", in_shape=(2, 3, 6, 4)),),
)

# -- global average pooling ------------------------------------------------------------------


def _global_avgpool_out_shape(spec, in_shape):
    if len(in_shape) != 3:
        raise ValueError(f"needs images (C, H, W), got examples of shape {tuple(in_shape)}")
    return (in_shape[0],)


GLOBAL_AVGPOOL = LayerKind(
    hyper={},
    out_shape=_global_avgpool_out_shape,
    forward=forward_adapter(global_avgpool_forward),
    backward=backward_adapter(global_avgpool_backward),
    gradcheck=(GradCase(label="global_avgpool", in_shape=(2, 3, 4, 5)),),
    pools=True,
)

# -- element-wise activations and flatten ----------------------------------------------------


def elementwise(forward, backward, label, hyper=None, distinct=False, init_rule=None):
    """An activation: a kind without arrays, its output shaped like its input, whose forward
    takes ``x`` and its hyper-parameters by name."""
    hyper = hyper or {}
    return LayerKind(
        hyper=hyper,
        out_shape=_same_shape,
        forward=forward_adapter(forward, keywords=tuple(hyper)),
        backward=backward_adapter(backward),
        gradcheck=(GradCase(label=label, in_shape=(3, 8), distinct=distinct),),
        init_rule=init_rule,
    )


def _flat_shape(spec, in_shape):
    return (math.prod(in_shape),)


FLATTEN = LayerKind(
    hyper={},
    out_shape=_flat_shape,
    forward=forward_adapter(flatten_forward),
    backward=backward_adapter(flatten_backward),
    gradcheck=(GradCase(label="flatten", in_shape=(2, 3, 2, 2)),),
)

LAYER_KINDS = {
    "conv": CONV,
    "fc": FC,
    "batchnorm": BATCHNORM,
    "dropout": DROPOUT,
    "maxpool": MAXPOOL,
    "avgpool": AVGPOOL,
    "global_avgpool": GLOBAL_AVGPOOL,
    "relu": elementwise(relu_forward, relu_backward, "relu", distinct=True, init_rule="he"),
    "leaky_relu": elementwise(
        leaky_relu_forward,
        leaky_relu_backward,
        "leaky_relu",
        hyper={
            "alpha": Hyper(
                default=0.01,
                check=lambda v: is_real(v, 0, 1e6, high_open=True),
                wanted="a number >= 0",
            )
        },
        distinct=True,
        init_rule="he",
    ),
    "sigmoid": elementwise(sigmoid_forward, sigmoid_backward, "sigmoid", init_rule="glorot"),
    "tanh": elementwise(tanh_forward, tanh_backward, "tanh", init_rule="glorot"),
    "flatten": FLATTEN,
}
