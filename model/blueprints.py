"""Architectures as data: a blueprint is a JSON-serialisable list of layer specs.

A spec is a plain dict: ``type`` (a key of model.layer_kinds.LAYER_KINDS), a
unique ``name`` for layers with parameters, and that layer's hyper-parameters,
e.g. ``{"type": "conv", "name": "conv1", "filters": 16, "kernel": 3, "pad": 1}``.
Shapes are never written down: they are derived from the input shape.
"""

import json
from pathlib import Path

from data.errors import UserError
from model.layer_kinds import LAYER_KINDS


def _conv(name, filters, kernel=3, pad=1, stride=1):
    return {
        "type": "conv",
        "name": name,
        "filters": filters,
        "kernel": kernel,
        "stride": stride,
        "pad": pad,
    }


def _fc(name, units):
    return {"type": "fc", "name": name, "units": units}


RELU = {"type": "relu"}
POOL = {"type": "maxpool", "size": 2, "stride": 2}
FLATTEN = {"type": "flatten"}


def minivgg(n_classes=10, batchnorm=False):
    """Conv16-Conv16-Pool-Conv32-Conv32-Pool-FC128-FC(n_classes), 3x3 pad 1, ReLU.

    With ``batchnorm``, a batch-norm layer sits between each conv/FC and its ReLU.
    """

    def block(layer):
        bn = [{"type": "batchnorm", "name": "bn" + layer["name"][-1]}] if batchnorm else []
        return [layer, *bn, RELU]

    return [
        *block(_conv("conv1", 16)),
        *block(_conv("conv2", 16)),
        POOL,
        *block(_conv("conv3", 32)),
        *block(_conv("conv4", 32)),
        POOL,
        FLATTEN,
        *block(_fc("fc5", 128)),
        _fc("fc6", n_classes),
    ]


def minivgg_bn(n_classes=10):
    """minivgg with batch normalization after every conv and the hidden FC layer."""
    return minivgg(n_classes, batchnorm=True)


def minivgg_bn_dropout(n_classes=10, p=0.3):
    """minivgg_bn with dropout before each FC layer: the recipe of the shipped model."""
    blueprint = minivgg_bn(n_classes)
    at_flatten = blueprint.index(FLATTEN) + 1
    dropout = {"type": "dropout", "p": p}
    blueprint = [*blueprint[:at_flatten], dropout, *blueprint[at_flatten:]]
    return [*blueprint[:-1], dropout, blueprint[-1]]


def lenet5(n_classes=10):
    """LeNet-5-like: Conv6 5x5 (pad 2)-AvgPool-Conv16 5x5-AvgPool-FC120-FC84-FC, tanh."""
    tanh, avgpool = {"type": "tanh"}, {"type": "avgpool", "size": 2, "stride": 2}
    return [
        _conv("conv1", 6, kernel=5, pad=2),
        tanh,
        avgpool,
        _conv("conv2", 16, kernel=5, pad=0),
        tanh,
        avgpool,
        FLATTEN,
        _fc("fc3", 120),
        tanh,
        _fc("fc4", 84),
        tanh,
        _fc("fc5", n_classes),
    ]


def wide(n_classes=10):
    """Conv32 5x5-Pool-Conv64 5x5-Pool-FC128-FC: the net of many from-scratch projects."""
    return [
        _conv("conv1", 32, kernel=5, pad=2),
        RELU,
        POOL,
        _conv("conv2", 64, kernel=5, pad=2),
        RELU,
        POOL,
        FLATTEN,
        _fc("fc3", 128),
        RELU,
        _fc("fc4", n_classes),
    ]


def mlp(n_classes=3, hidden=64):
    """A small multi-layer perceptron for 2-D toy data (input shape (2,))."""
    return [_fc("fc1", hidden), RELU, _fc("fc2", hidden), RELU, _fc("fc3", n_classes)]


PRESETS = {
    "minivgg": minivgg,
    "minivgg_bn": minivgg_bn,
    "minivgg_bn_dropout": minivgg_bn_dropout,
    "lenet5": lenet5,
    "wide": wide,
    "mlp": mlp,
}


def layer_label(spec, index):
    """A readable name for a layer: its ``name``, else its type and position."""
    return spec.get("name") or f"{spec['type']}{index}"


def _is_int(value, minimum):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(value, low, high):
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value < high


# What each hyper-parameter may be: (check, description for the message).
_HYPER_CHECKS = {
    "filters": (lambda v: _is_int(v, 1), "a whole number >= 1"),
    "units": (lambda v: _is_int(v, 1), "a whole number >= 1"),
    "size": (lambda v: _is_int(v, 1), "a whole number >= 1"),
    "stride": (lambda v: _is_int(v, 1), "a whole number >= 1"),
    "pad": (lambda v: _is_int(v, 0), "a whole number >= 0"),
    "kernel": (
        lambda v: (
            _is_int(v, 1)
            or (isinstance(v, list | tuple) and len(v) == 2 and all(_is_int(k, 1) for k in v))
        ),
        "a whole number >= 1 or a pair of them",
    ),
    "p": (lambda v: _is_number(v, 0, 1), "a number in [0, 1)"),
    "momentum": (lambda v: _is_number(v, 0, 1), "a number in [0, 1)"),
    "eps": (lambda v: _is_number(v, 1e-12, 1), "a small positive number"),
    "alpha": (lambda v: _is_number(v, 0, 1e6), "a number >= 0"),
    "name": (
        lambda v: isinstance(v, str) and v and "." not in v and not v.startswith("__"),
        "a non-empty string without '.' that does not start with '__'",
    ),
}


def validate_blueprint(blueprint):
    """Check a blueprint and return a copy with every default hyper-parameter filled in.

    Raises UserError naming the layer for: an unknown type, a missing or unknown
    key, a hyper-parameter of the wrong type or range, a missing or repeated name
    on a layer with parameters.
    """
    if not isinstance(blueprint, list) or not blueprint:
        raise UserError("a blueprint must be a non-empty list of layer specs")
    checked, names = [], set()
    for i, spec in enumerate(blueprint):
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
            raise UserError(f"layer {i}: a layer spec must be a dict with a 'type', got {spec!r}")
        kind = LAYER_KINDS.get(spec["type"])
        label = layer_label(spec, i)
        if kind is None:
            raise UserError(
                f"layer {label}: unknown type {spec['type']!r}; known: {', '.join(LAYER_KINDS)}"
            )
        allowed = {"type", "name", *kind.required, *kind.defaults}
        if unknown := set(spec) - allowed:
            raise UserError(
                f"layer {label}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        if missing := [k for k in kind.required if k not in spec]:
            raise UserError(f"layer {label} ({spec['type']}): missing {missing}")
        if kind.trainable and "name" not in spec:
            raise UserError(f"layer {i} ({spec['type']}) has parameters and needs a unique 'name'")
        if "name" in spec:
            if spec["name"] in names:
                raise UserError(f"layer name {spec['name']!r} is used twice")
            names.add(spec["name"])
        for key, value in spec.items():
            check, wanted = _HYPER_CHECKS.get(key, (lambda v: True, ""))
            if not check(value):
                raise UserError(f"layer {label}: '{key}' must be {wanted}, got {value!r}")
        checked.append({**kind.defaults, **spec})
    return checked


def load_blueprint(arch, n_classes=10):
    """A preset's name or the path of a blueprint JSON file -> (name, validated blueprint)."""
    if arch in PRESETS:
        return arch, validate_blueprint(PRESETS[arch](n_classes))
    path = Path(arch)
    if path.suffix != ".json" and not path.exists():
        raise UserError(
            f"unknown architecture {arch!r}: not a preset ({', '.join(PRESETS)}) "
            "and not a blueprint .json file"
        )
    try:
        blueprint = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(
            f"{path}: not a UTF-8 text file; save the blueprint as UTF-8 JSON"
        ) from None
    except OSError as e:
        raise UserError(f"{path}: cannot read the blueprint file ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise UserError(
            f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
        ) from None
    try:
        return path.stem, validate_blueprint(blueprint)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
