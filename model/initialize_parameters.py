"""Fresh parameters for a blueprint: one flat dict ``{"<layer name>.<param>": array}``."""

import numpy as np

from model.blueprints import validate_blueprint
from model.layer_kinds import LAYER_KINDS
from model.shapes import trace_shapes

_ACTIVATIONS = {"relu": "he", "leaky_relu": "he", "sigmoid": "glorot", "tanh": "glorot"}
_WEIGHTED = {"conv", "fc"}


def _init_rule(blueprint, i):
    """How to scale the weights of layer i: by the activation that follows it.

    "he" before ReLU, "glorot" before sigmoid/tanh, "output" for the layer that
    produces the scores (no activation follows): small, so that the first
    predictions are near uniform and the first loss is about ln(n_classes).
    """
    for spec in blueprint[i + 1 :]:
        if spec["type"] in _ACTIVATIONS:
            return _ACTIVATIONS[spec["type"]]
        if spec["type"] in _WEIGHTED:
            break
    return "output"


def _weight_std(rule, shape):
    """He: sqrt(2 / fan_in); Glorot: sqrt(2 / (fan_in + fan_out)); output: Glorot / 10."""
    receptive = int(np.prod(shape[2:])) if len(shape) == 4 else 1  # conv: KH*KW
    fan_in = (shape[1] if len(shape) == 4 else shape[0]) * receptive
    fan_out = (shape[0] if len(shape) == 4 else shape[1]) * receptive
    if rule == "he":
        return np.sqrt(2.0 / fan_in)
    glorot = np.sqrt(2.0 / (fan_in + fan_out))
    return glorot if rule == "glorot" else glorot / 10


def initialize_parameters(blueprint, input_shape, rng, dtype=np.float32):
    """Parameters for ``blueprint`` fed examples of ``input_shape``.

    blueprint: list of layer specs (see model/blueprints.py).
    input_shape: one example's shape, (C, H, W) or (D,).
    rng: np.random.Generator, the only source of randomness.
    Returns {"conv1.W": (F, C, KH, KW), "conv1.b": (F,), "fc5.W": (D, M), ...,
    "bn1.gamma", "bn1.beta", "bn1.running_mean", "bn1.running_var": (C,)} in ``dtype``.
    Weights are normal with the He or Glorot scale (see _init_rule); biases and
    betas 0; gammas and running variances 1; running means 0.
    Raises UserError naming the layer when the blueprint cannot take the input.
    """
    rows = trace_shapes(blueprint, input_shape)
    blueprint = [row.spec for row in rows]
    params = {}
    for i, row in enumerate(rows):
        for key, shape in row.param_shapes.items():
            local = key.rsplit(".", 1)[1]
            if local == "W":
                std = _weight_std(_init_rule(blueprint, i), shape)
                params[key] = (rng.standard_normal(shape) * std).astype(dtype)
            elif local in ("gamma", "running_var"):
                params[key] = np.ones(shape, dtype=dtype)
            else:
                params[key] = np.zeros(shape, dtype=dtype)
    return params


def trainable_keys(blueprint):
    """The parameter keys that get gradients, in blueprint order."""
    return [
        f"{spec['name']}.{local}"
        for spec in validate_blueprint(blueprint)
        for local in LAYER_KINDS[spec["type"]].trainable
    ]
