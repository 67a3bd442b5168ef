"""Transfer learning: start a run from another model's layers, and freeze some of them.

A layer is copied when the other model has a layer of the same name whose arrays have the
same keys and shapes (batch norm's running statistics come with it); every other layer keeps
its fresh initialization. Frozen layers are named on the command line (``--freeze
conv1,conv2``, or shell-style patterns such as ``conv*``); the optimizer then leaves their
arrays alone (core/learn/optim.py ``freezing``) and the training loop keeps their running
statistics.
"""

import fnmatch

from core.learn.model_file import load_float_model
from data.errors import UserError
from model.shapes import trace_shapes


def layer_shapes(blueprint, input_shape):
    """{layer name: {"<layer name>.<param>": shape}} for the layers that hold arrays, in order."""
    return {
        row.label: row.param_shapes
        for row in trace_shapes(blueprint, input_shape)
        if row.param_shapes
    }


def _x(shape):
    return "x".join(map(str, shape))


def why_not(name, ours, theirs):
    """Why layer ``name`` cannot be copied ("missing", "W (16, 1, 3, 3) vs (16, 3, 3, 3)"), or ""."""
    if theirs is None:
        return "missing"
    if ours.keys() != theirs.keys():
        local = lambda keys: ", ".join(k[len(name) + 1 :] for k in keys)  # noqa: E731
        return f"arrays {local(theirs)} vs {local(ours)}"
    return ", ".join(
        f"{key[len(name) + 1 :]} {theirs[key]} vs {ours[key]}"
        for key in ours
        if ours[key] != theirs[key]
    )


def init_from(params, blueprint, input_shape, path):
    """``params`` with every matching layer of the model file ``path`` copied in.

    params: the new run's initial {"<layer name>.<param>": array}; blueprint, input_shape:
    the new run's. Returns (params, copied, skipped): ``copied`` the names of the layers
    copied, ``skipped`` {layer name: reason} ("missing", or the shapes "in the file vs
    here"). Raises UserError when the file's inputs differ from the run's (naming the layers
    that could not be copied and why) or when no layer at all can be copied.
    """
    source = load_float_model(path, "--init-from")
    theirs = layer_shapes(source.blueprint, source.meta["input_shape"])
    copied, skipped = [], {}
    for name, ours in layer_shapes(blueprint, input_shape).items():
        reason = why_not(name, ours, theirs.get(name))
        if reason:
            skipped[name] = reason
        else:
            copied.append(name)
    if list(source.meta["input_shape"]) != list(input_shape):
        raise UserError(
            f"--init-from {path}: that model takes {_x(source.meta['input_shape'])} inputs, "
            f"this run's are {_x(input_shape)}; layers that could not be copied: "
            + "; ".join(f"{name} ({why})" for name, why in skipped.items())
        )
    if not copied:
        raise UserError(
            f"--init-from {path}: no layer of it matches this run's by name and shape "
            f"({', '.join(f'{name}: {why}' for name, why in skipped.items())})"
        )
    keys = [key for name in copied for key in layer_shapes(blueprint, input_shape)[name]]
    return {**params, **{key: source.params[key] for key in keys}}, copied, skipped


def frozen_layers(blueprint, input_shape, freeze):
    """The layer names that ``--freeze`` text names, in blueprint order.

    freeze: comma-separated layer names or shell-style patterns ("conv1,conv2", "conv*"),
    or None. Raises UserError for a name or pattern that matches no layer with arrays.
    """
    if not freeze:
        return []
    names = list(layer_shapes(blueprint, input_shape))
    wanted = [item.strip() for item in freeze.split(",")]
    if unknown := [w for w in wanted if not any(fnmatch.fnmatchcase(n, w) for n in names)]:
        raise UserError(
            f"--freeze {freeze}: no layer with parameters is named {', '.join(unknown)}; "
            f"the layers with parameters are {', '.join(names)}"
        )
    return [name for name in names if any(fnmatch.fnmatchcase(name, w) for w in wanted)]


def frozen_keys(blueprint, input_shape, layers):
    """Every array key of the ``layers`` (running statistics included)."""
    shapes = layer_shapes(blueprint, input_shape)
    return {key for name in layers for key in shapes[name]}


def start_from(params, blueprint, input_shape, path, frozen_names, say):
    """``params`` with the layers of the model file ``path`` (--init-from) copied in.

    frozen_names: the layers ``--freeze`` names; each must be among the copied ones (a
    UserError otherwise). say: where the lines go that tell which were and were not copied.
    """
    params, copied, skipped = init_from(params, blueprint, input_shape, path)
    if not_copied := [name for name in frozen_names if name not in copied]:
        raise UserError(
            f"--freeze: {', '.join(not_copied)} not copied from {path} "
            f"({', '.join(skipped[name] for name in not_copied)}): frozen, it would keep its "
            "random initial weights"
        )
    say(f"copied from {path}: {', '.join(copied)}")
    if skipped:
        say("not copied (initialized afresh): "
            + "; ".join(f"{name} ({why})" for name, why in skipped.items()))  # fmt: skip
    if frozen_names:
        say(f"frozen: {', '.join(frozen_names)}")
    return params
