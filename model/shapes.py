"""Thread an input shape through a blueprint, layer by layer.

Each layer's output shape is found by running its own forward pass on one
zero example, so no shape arithmetic is written twice and an impossible
blueprint fails with the layer's own message, prefixed by the layer's name.
"""

from typing import NamedTuple

import numpy as np

from data.errors import UserError
from model.blueprints import layer_label, validate_blueprint
from model.layer_kinds import LAYER_KINDS


class LayerShapes(NamedTuple):
    label: str  # the layer's name, or its type and position
    spec: dict  # the layer spec, defaults filled in
    in_shape: tuple  # one example, no batch axis
    out_shape: tuple
    param_shapes: dict  # {"<layer name>.<param>": shape}


def trace_shapes(blueprint, input_shape):
    """A LayerShapes for every layer of ``blueprint`` fed examples of ``input_shape``.

    input_shape: (C, H, W) for images, (D,) for vectors (no batch axis).
    Raises UserError naming the layer and the shapes when a layer cannot take its input.
    """
    shape, rows = tuple(int(s) for s in input_shape), []
    for i, spec in enumerate(validate_blueprint(blueprint)):
        kind, label = LAYER_KINDS[spec["type"]], layer_label(spec, i)
        try:
            local_shapes = kind.params(spec, shape)
            trial = {k: np.ones(s, dtype=np.float32) for k, s in local_shapes.items()}
            out, _, _ = kind.forward(spec, trial, np.zeros((1, *shape), np.float32), False, None)
        except (ValueError, IndexError) as e:
            raise UserError(
                f"layer {label} ({spec['type']}) cannot take input of shape {shape}: {e}"
            ) from None
        param_shapes = {f"{spec['name']}.{k}": s for k, s in local_shapes.items()}
        rows.append(LayerShapes(label, spec, shape, out.shape[1:], param_shapes))
        shape = out.shape[1:]
    return rows
