"""Fresh parameters for a blueprint: one flat dict ``{"<layer name>.<param>": array}``."""

import numpy as np

from model.shapes import trace_shapes
from model.walk import KINDS, iter_layers


def _init_rules(specs, drawn, after=()):
    """{layer name: rule} for every named layer: how to scale its weights.

    The rule comes from the activation that follows the layer, looking past
    layers without drawn weights (pooling, batch norm, ...) and out of a
    composite into what follows it: "he" before ReLU, "glorot" before
    sigmoid/tanh (each activation's record says), "output" when a layer with
    drawn weights or the end of the network comes first (the scores: small
    weights, so the first predictions are near uniform and the first loss is
    about ln(n_classes)). drawn: the names of the layers with drawn weights (an
    array whose Param has init "weight": conv, fc).
    """
    rules = {}
    for i, spec in enumerate(specs):
        following = [*specs[i + 1 :], *after]
        for key in KINDS[spec["type"]].nested:
            rules.update(_init_rules(spec[key], drawn, following))
        if "name" in spec:
            rules[spec["name"]] = _rule(following, drawn)
    return rules


def _rule(following, drawn):
    for spec in iter_layers(following):
        kind = KINDS[spec["type"]]
        if kind.init_rule:
            return kind.init_rule
        if spec.get("name") in drawn:
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
    "bn1.gamma", "bn1.beta", "bn1.running_mean", "bn1.running_var": (C,)} in ``dtype``,
    each array as its kind's record says: weights normal with the He or Glorot
    scale (see _init_rules), the rest zeros or ones.
    Raises UserError naming the layer when the blueprint cannot take the input.
    """
    rows = trace_shapes(blueprint, input_shape)
    drawn = {
        row.spec["name"] for row in rows if any(p.init == "weight" for p in row.params.values())
    }
    rules = _init_rules([row.spec for row in rows if row.depth == 0], drawn)
    params = {}
    for row in rows:
        for key, p in row.params.items():
            if p.init == "weight":
                std = _weight_std(rules[row.spec["name"]], p.shape)
                params[key] = (rng.standard_normal(p.shape) * std).astype(dtype)
            else:
                params[key] = getattr(np, p.init)(p.shape, dtype=dtype)
    return params


def trainable_keys(blueprint, input_shape):
    """The parameter keys that get gradients, in blueprint order."""
    rows = trace_shapes(blueprint, input_shape)
    return [key for row in rows for key, p in row.params.items() if p.trainable]
