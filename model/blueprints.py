"""Architectures as data: a blueprint is a JSON-serialisable list of layer specs.

A spec is a plain dict: ``type`` (a key of model.walk.KINDS), a
unique ``name`` for layers with parameters, and that layer's hyper-parameters,
e.g. ``{"type": "conv", "name": "conv1", "filters": 16, "kernel": 3, "pad": 1}``.
Shapes are never written down: they are derived from the input shape.
"""

from pathlib import Path

from data.errors import UserError
from data.json_text import read_json_file
from model.layer_kinds import REQUIRED
from model.walk import KINDS


def _conv(name, filters, kernel=3, pad=1, stride=1, groups=1):
    spec = {
        "type": "conv",
        "name": name,
        "filters": filters,
        "kernel": kernel,
        "stride": stride,
        "pad": pad,
    }
    return {**spec, "groups": groups} if groups != 1 else spec


def _conv_bn(name, filters, kernel=3, stride=1, groups=1):
    """A conv ('same' padding for odd kernels) and its batch norm, named '<name>_bn'."""
    conv = _conv(name, filters, kernel, kernel // 2, stride, groups)
    return [conv, {"type": "batchnorm", "name": f"{name}_bn"}]


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


def basic_block(name, in_filters, filters, stride=1):
    """A residual basic block: two 3x3 convs with batch norm, added to the shortcut, then ReLU.

    The shortcut is the identity, or a 1x1 conv with the block's stride and a
    batch norm (a projection) where the block changes the shape.
    """
    body = [*_conv_bn(f"{name}_conv1", filters, stride=stride), RELU]
    body += _conv_bn(f"{name}_conv2", filters)
    same = stride == 1 and in_filters == filters
    shortcut = [] if same else _conv_bn(f"{name}_proj", filters, kernel=1, stride=stride)
    return [{"type": "residual", "name": name, "body": body, "shortcut": shortcut}, RELU]


def resnet(n_classes=10, widths=(16, 32, 64), blocks=2):
    """A small ResNet for 28x28 or 32x32 inputs.

    Stem: Conv3x3 (widths[0]) + batch norm + ReLU; then one stage per width of
    ``blocks`` basic blocks (the first block of each later stage halves the
    maps with stride 2 and a projection shortcut); global average pooling; FC.
    """
    layers, in_filters = [*_conv_bn("stem", widths[0]), RELU], widths[0]
    for stage, filters in enumerate(widths, start=1):
        for block in range(1, blocks + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            layers += basic_block(f"res{stage}{'abcdefgh'[block - 1]}", in_filters, filters, stride)
            in_filters = filters
    return [*layers, {"type": "global_avgpool"}, _fc("fc", n_classes)]


def separable_block(name, in_filters, filters, stride=1):
    """Depthwise-separable: a depthwise 3x3 (groups = channels), then a pointwise 1x1,
    each with batch norm and ReLU."""
    depthwise = _conv_bn(f"{name}_dw", in_filters, stride=stride, groups=in_filters)
    return [*depthwise, RELU, *_conv_bn(f"{name}_pw", filters, kernel=1), RELU]


def mobilenet(n_classes=10, stages=((32, 1), (64, 2), (64, 1), (128, 2), (128, 1))):
    """A small MobileNet: a 3x3 stem (16 filters), depthwise-separable blocks
    ((filters, stride) each), global average pooling and FC."""
    layers, in_filters = [*_conv_bn("stem", 16), RELU], 16
    for i, (filters, stride) in enumerate(stages, start=1):
        layers += separable_block(f"sep{i}", in_filters, filters, stride)
        in_filters = filters
    return [*layers, {"type": "global_avgpool"}, _fc("fc", n_classes)]


def mlp(n_classes=3, hidden=64):
    """A small multi-layer perceptron for 2-D toy data (input shape (2,))."""
    return [_fc("fc1", hidden), RELU, _fc("fc2", hidden), RELU, _fc("fc3", n_classes)]


def mlp_regression(n_outputs=1, hidden=64):
    """``mlp`` with one linear output per regression target, for "polynomial" (input (1,)).

    ReLU, not tanh: tanh units start near-linear here (one input, Glorot weights, zero
    biases) and took five times the epochs to bend the curve.
    """
    return mlp(n_outputs, hidden)


PRESETS = {
    "minivgg": minivgg,
    "minivgg_bn": minivgg_bn,
    "minivgg_bn_dropout": minivgg_bn_dropout,
    "lenet5": lenet5,
    "wide": wide,
    "resnet": resnet,
    "mobilenet": mobilenet,
    "mlp": mlp,
    "mlp_regression": mlp_regression,
}


NAME_RULE = "a non-empty string without '.' that does not start with '__'"


def _is_name(value):
    return (
        isinstance(value, str) and bool(value) and "." not in value and not value.startswith("__")
    )


def validate_blueprint(blueprint):
    """Check a blueprint and return a copy with every default hyper-parameter filled in.

    Every spec is checked against its kind's record (model/layer_kinds.py), and
    the blueprints inside composite specs (a residual node's body and shortcut)
    the same way. Raises UserError naming the layer for: an unknown type, a
    missing or unknown key, a hyper-parameter of the wrong type or range, a
    missing name on a layer with parameters or a composite, a name used twice
    anywhere in the blueprint.
    """
    if not isinstance(blueprint, list) or not blueprint:
        raise UserError("a blueprint must be a non-empty list of layer specs")
    return _validate_specs(blueprint, set(), "layer")


def _validate_specs(specs, names, where):
    checked = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
            raise UserError(
                f"{where} {i}: a layer spec must be a dict with a 'type', got {spec!r:.200}"
            )
        named = _is_name(spec.get("name"))
        label = f"{where} {spec['name'] if named else i} ({spec['type']!s:.40})"
        kind = KINDS.get(spec["type"])
        if kind is None:
            raise UserError(
                f"{where} {i}: unknown type {spec['type']!r:.80}; known: {', '.join(KINDS)}"
            )
        allowed = {"type", "name", *kind.hyper}
        if unknown := sorted(map(str, set(spec) - allowed)):
            raise UserError(
                f"{label}: unknown key(s) {unknown}; {spec['type']} takes {sorted(allowed)}"
            )
        if missing := [k for k, h in kind.hyper.items() if h.default is REQUIRED and k not in spec]:
            raise UserError(f"{label}: missing {missing}")
        if "name" in spec:
            if not _is_name(spec["name"]):
                raise UserError(f"{label}: 'name' must be {NAME_RULE}, got {spec['name']!r:.80}")
            if spec["name"] in names:
                raise UserError(f"layer name {spec['name']!r} is used twice")
            names.add(spec["name"])
        elif kind.params is not None or kind.nested:
            raise UserError(f"{label} has parameters and needs a unique 'name'")
        for key, value in spec.items():
            hyper = kind.hyper.get(key)
            if hyper is not None and hyper.check is not None and not hyper.check(value):
                raise UserError(f"{label}: '{key}' must be {hyper.wanted}, got {value!r:.80}")
        full = {k: h.default for k, h in kind.hyper.items() if h.default is not REQUIRED}
        full.update(spec)
        for key in kind.nested:
            full[key] = _validate_specs(full[key], names, f"{label} {key}: layer")
        checked.append(full)
    return checked


# The activation kinds: those whose record says how to scale the weights before them.
ACTIVATIONS = tuple(name for name, kind in KINDS.items() if kind.init_rule)


def swap_activations(blueprint, activation):
    """A copy of ``blueprint`` with every activation layer replaced by ``activation``.

    blueprint:  a list of layer specs (composites' nested blueprints are swapped too).
    activation: one of ``ACTIVATIONS``; the new layers take its default hyper-parameters
                (a swapped-in leaky_relu gets the default alpha, a swapped-out one loses its).
    The weights before each activation are initialized for the new kind (he or glorot),
    as ``initialize_parameters`` reads the activation that follows each layer.
    Raises UserError for an unknown activation or a blueprint without any.
    """
    if activation not in ACTIVATIONS:
        raise UserError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")
    swapped, count = _swap(blueprint, activation)
    if not count:
        raise UserError(f"the blueprint has no activation layer ({', '.join(ACTIVATIONS)}) to swap")
    return swapped


def _swap(specs, activation):
    """(specs with activations swapped, how many were), walking into composites."""
    out, count = [], 0
    for spec in specs:
        kind = KINDS[spec["type"]]
        if kind.init_rule:
            named = {"name": spec["name"]} if "name" in spec else {}  # a name may be referred to
            out.append({"type": activation, **named})
            count += 1
            continue
        spec = dict(spec)
        for key in kind.nested:
            spec[key], inner = _swap(spec.get(key) or [], activation)
            count += inner
        out.append(spec)
    return out, count


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
    blueprint = read_json_file(path)
    try:
        return path.stem, validate_blueprint(blueprint)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
